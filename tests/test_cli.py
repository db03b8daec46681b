"""The `agent-server` command, run as a real process."""

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from sqlalchemy import func, insert, select, table, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.db import migrations
from app.db.engine import create_engine
from app.models.skill import Skill
from tests.conftest import BASE_URL
from tests.dbutil import create_database, drop_database, insert_raw_conversation, is_postgres
from tests.procs import free_port, start_server, stop, wait_ready

pytestmark = pytest.mark.slow  # `agent-server` processes

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
# Unreachable on every machine: a directory that does not exist, a port nothing listens on.
# The Postgres one carries a password that must never be printed.
PASSWORD = "pw-that-must-not-show"
UNREACHABLE_URLS = [
    "sqlite+aiosqlite:////nonexistent-dir/x.db",
    f"postgresql+asyncpg://postgres:{PASSWORD}@127.0.0.1:1/test",
]
# 0006 creates `skills` and `skill_revisions`: downgrading to 0005 drops them.
BEFORE_SKILLS = "0005"


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[None]:
    """These tests drive processes from plain sync code; the loop gate does not apply."""
    yield


@pytest.fixture
def scratch_url(tmp_path: Path) -> Iterator[str]:
    url = create_database(BASE_URL, tmp_path, "cli")
    yield url
    drop_database(BASE_URL, url)


def cli(url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENT_SERVER_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def on_database(url: str, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run `work` in one committed transaction on the database at `url`."""

    async def run() -> T:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                return await work(conn)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def set_revision(url: str, revision: str) -> None:
    """Stamp alembic_version directly, as a newer server's migration would have."""

    async def work(conn: AsyncConnection) -> None:
        await conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})

    on_database(url, work)


def add_skill(url: str) -> None:
    async def work(conn: AsyncConnection) -> None:
        await conn.execute(insert(Skill).values(name="s", description="d", content="c"))

    on_database(url, work)


def count_rows(url: str, name: str) -> int:
    async def work(conn: AsyncConnection) -> int:
        query = select(func.count()).select_from(table(name))
        return int((await conn.execute(query)).scalar_one())

    return on_database(url, work)


def add_conversation(url: str) -> None:
    async def work(conn: AsyncConnection) -> None:
        async with AsyncSession(bind=conn) as session:
            await insert_raw_conversation(session, url.startswith("sqlite"), uuid.uuid4())

    on_database(url, work)


def revision_of(url: str) -> str:
    shown = cli(url, "db", "current")
    assert shown.returncode == 0, shown.stderr
    return shown.stdout.split()[1]


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single `agent-server: ...` line a failure prints on stderr."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("agent-server: "), lines[0]
    return lines[0]


def test_db_commands_round_trip(scratch_url: str) -> None:
    head = migrations.head_revision()
    current = cli(scratch_url, "db", "current")
    assert current.returncode == 0, current.stderr
    assert current.stdout.strip() == f"database: none  code head: {head}  (NOT at head)"
    assert cli(scratch_url, "db", "check").returncode == 1
    upgraded = cli(scratch_url, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    # One line per step on stderr (then a summary); stdout stays empty.
    steps = [line for line in upgraded.stderr.splitlines() if line.startswith("upgrade ")]
    assert len(steps) == len(migrations.known_revisions()), upgraded.stderr
    assert steps[0].startswith("upgrade base -> 0001  "), steps[0]
    assert f"-> {head}  " in steps[-1], steps[-1]
    assert upgraded.stdout == ""
    checked = cli(scratch_url, "db", "check")
    assert checked.returncode == 0, checked.stderr
    assert "agree" in checked.stdout
    assert f"database: {head}" in cli(scratch_url, "db", "current").stdout
    assert cli(scratch_url, "db", "downgrade", "base").returncode == 0
    assert "database: none" in cli(scratch_url, "db", "current").stdout
    assert cli(scratch_url, "db", "upgrade", head).returncode == 0
    assert f"database: {head}" in cli(scratch_url, "db", "current").stdout


def test_serve_no_migrate_refuses_a_database_that_is_behind(scratch_url: str) -> None:
    result = cli(scratch_url, "serve", "--no-migrate", "--port", "1")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    head = migrations.head_revision()
    assert "revision: none" in lines[0] and f"expects revision {head}" in lines[0]


def test_serve_no_migrate_refuses_a_database_that_is_ahead(scratch_url: str) -> None:
    migrations.upgrade(scratch_url, "head")
    set_revision(scratch_url, "9999_from_the_future")
    result = cli(scratch_url, "serve", "--no-migrate", "--port", "1")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "9999_from_the_future" in lines[0]
    assert migrations.head_revision() in lines[0]
    assert "ahead" in lines[0]


def test_serve_migrates_then_serves(scratch_url: str) -> None:
    port = free_port()
    # No run worker: this is about migrations and serving, and without one no agents (litellm)
    # load, which saves seconds of CPU per start.
    env = {"AGENT_SERVER_DATABASE_URL": scratch_url, "AGENT_SERVER_RUN_WORKER_ENABLED": "false"}
    proc = start_server(port, env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2)
        assert ready.status_code == 200, ready.text
        created = httpx.post(
            f"http://127.0.0.1:{port}/api/conversations",
            json={"agent": {"llm": {"model": "m"}}},
            timeout=5,
        )
        assert created.status_code == 201
    finally:
        stop(proc, timeout=15)
    log = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    # uvicorn re-raises SIGTERM after a graceful shutdown, so -15 is a clean exit too.
    assert proc.returncode in (0, -signal.SIGTERM), log
    assert "Application shutdown complete" in log


def test_an_unknown_revision_is_one_line_and_status_1(scratch_url: str) -> None:
    for command in (("db", "upgrade", "nosuchrev"), ("db", "downgrade", "nosuchrev")):
        result = cli(scratch_url, *command)
        assert result.returncode == 1, result.stderr
        assert "nosuchrev" in one_line(result)
    assert "database: none" in cli(scratch_url, "db", "current").stdout


# These name their own unreachable URLs (both dialects), not the database under test: the
# suite's two passes would run them twice alike, so only the SQLite pass does.
ONCE = pytest.mark.skipif(
    is_postgres(BASE_URL), reason="fixed URLs, not the database under test: the SQLite pass runs it"
)


@ONCE
@pytest.mark.parametrize("url", UNREACHABLE_URLS, ids=["sqlite", "postgresql"])
def test_an_unreachable_database_is_one_line_and_status_3(url: str) -> None:
    for command in (("db", "current"), ("db", "upgrade"), ("db", "downgrade", "base")):
        result = cli(url, *command)
        assert result.returncode == 3, result.stderr
        line = one_line(result)
        assert "cannot reach the database" in line
        assert PASSWORD not in result.stderr + result.stdout
    if "@" in url:
        assert "postgres:***@127.0.0.1:1/test" in line  # the URL, its password hidden


@ONCE
def test_verbose_prints_the_traceback_and_the_line(scratch_url: str) -> None:
    url = UNREACHABLE_URLS[1]
    result = cli(url, "--verbose", "db", "upgrade")
    assert result.returncode == 3
    assert "Traceback (most recent call last):" in result.stderr, result.stderr
    assert "ConnectionRefusedError" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("agent-server: cannot reach the database")
    assert PASSWORD not in result.stderr
    quiet = cli(scratch_url, "db", "upgrade", "nosuchrev")
    assert "Traceback" not in quiet.stderr
    loud = cli(scratch_url, "-v", "db", "upgrade", "nosuchrev")
    assert loud.returncode == 1 and "Traceback (most recent call last):" in loud.stderr


def test_a_downgrade_that_would_drop_rows_is_refused(scratch_url: str) -> None:
    head = migrations.head_revision()
    assert cli(scratch_url, "db", "upgrade").returncode == 0
    add_skill(scratch_url)
    for target in (BEFORE_SKILLS, "base"):
        refused = cli(scratch_url, "db", "downgrade", target)
        assert refused.returncode == 4, refused.stderr
        line = one_line(refused)
        assert "skills (1 row)" in line, line
        assert "skill_revisions" not in line  # empty: it does not block
        assert revision_of(scratch_url) == head
        assert count_rows(scratch_url, "skills") == 1

    done = cli(scratch_url, "db", "downgrade", BEFORE_SKILLS, "--yes")
    assert done.returncode == 0, done.stderr
    assert revision_of(scratch_url) == BEFORE_SKILLS
    assert f"database at revision {BEFORE_SKILLS}" in done.stderr


def test_a_downgrade_over_empty_tables_needs_no_yes(scratch_url: str) -> None:
    """Rows in a table the downgrade keeps (conversations) do not block it either."""
    assert cli(scratch_url, "db", "upgrade").returncode == 0
    add_conversation(scratch_url)
    assert count_rows(scratch_url, "conversations") == 1
    done = cli(scratch_url, "db", "downgrade", BEFORE_SKILLS)
    assert done.returncode == 0, done.stderr
    assert count_rows(scratch_url, "conversations") == 1
    assert revision_of(scratch_url) == BEFORE_SKILLS
    downgrades = [line for line in done.stderr.splitlines() if line.startswith("downgrade ")]
    assert downgrades[-1].startswith("downgrade 0006 -> 0005  "), done.stderr
    assert done.stdout == ""
