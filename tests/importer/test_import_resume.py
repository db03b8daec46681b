"""An import killed mid-way (SIGKILL, by PID) and started again completes without a
duplicate or a gap, on both databases. Checked once against a broken variant (the next file
to read not saved with each batch, so a resumed import starts over): the second run then
reported every event of the first batches as an id seen before, and the test failed on its
report."""

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from app.db.session import Database
from tests.conftest import wait_for
from tests.procs import ROOT, stop

pytestmark = pytest.mark.slow  # `agent-server import` processes

CONVERSATIONS, EVENTS = 4, 3000


def _generate(out: Path) -> tuple[Path, str]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_openhands_store.py"), str(out),
         "-n", str(CONVERSATIONS), "-m", str(EVENTS)],
        capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    summary = json.loads(done.stdout)
    return Path(summary["conversations_dir"]), summary["oh_secret_key"]


def _command(store: Path, key: str, database_url: str) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "AGENT_SERVER_DATABASE_URL": database_url, "OH_SECRET_KEY": key}
    return [sys.executable, "-m", "app.cli", "import", "openhands", str(store)], env


async def _imported(db: Database) -> int:
    async with db.session(write=False) as session:
        return int((await session.execute(text("SELECT count(*) FROM events"))).scalar_one())


async def test_a_killed_import_resumes_without_duplicates(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    store, key = await asyncio.to_thread(_generate, tmp_path / "store")
    command, env = _command(store, key, database_url)
    proc = await asyncio.to_thread(
        subprocess.Popen, command, env=env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    async def well_into_the_first_conversation() -> bool:
        assert proc.poll() is None, "the import ended before it could be killed"
        return await _imported(db) >= EVENTS // 2

    await wait_for(well_into_the_first_conversation, "the import's progress", limit=60, every=0.01)
    os.kill(proc.pid, signal.SIGKILL)  # a process this test started
    await asyncio.to_thread(stop, proc, 10)
    partly = await _imported(db)
    assert 0 < partly < CONVERSATIONS * EVENTS
    done = await asyncio.to_thread(
        subprocess.run, command, env=env, cwd=ROOT, capture_output=True, timeout=300
    )
    output = done.stdout.decode(errors="replace")
    assert done.returncode == 0, output + done.stderr.decode(errors="replace")[-2000:]
    assert "resumed" in output  # and exit status 0: no problem found
    async with db.session(write=False) as session:
        rows = (
            await session.execute(
                text("SELECT conversation_id, count(*), count(DISTINCT id), max(seq) FROM events"
                     " GROUP BY conversation_id")
            )
        ).all()  # fmt: skip
    assert len(rows) == CONVERSATIONS
    assert all(count == distinct == last == EVENTS for _, count, distinct, last in rows), rows
