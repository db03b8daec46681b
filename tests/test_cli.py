"""The `agent-server` command, run as a real process."""

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from app.db import migrations
from tests.conftest import BASE_URL
from tests.dbutil import create_database, drop_database
from tests.procs import free_port, start_server, stop, wait_ready

pytestmark = pytest.mark.slow  # `agent-server` processes

ROOT = Path(__file__).resolve().parents[1]


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


def set_revision(url: str, revision: str) -> None:
    """Stamp alembic_version directly, as a newer server's migration would have."""
    import asyncio

    from sqlalchemy.ext.asyncio import create_async_engine

    async def run() -> None:
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
        await engine.dispose()

    asyncio.run(run())


def test_db_commands_round_trip(scratch_url: str) -> None:
    head = migrations.head_revision()
    current = cli(scratch_url, "db", "current")
    assert current.returncode == 0, current.stderr
    assert current.stdout.strip() == f"database: none  code head: {head}  (NOT at head)"
    assert cli(scratch_url, "db", "check").returncode == 1
    assert cli(scratch_url, "db", "upgrade").returncode == 0
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
    env = {"AGENT_SERVER_DATABASE_URL": scratch_url}
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
