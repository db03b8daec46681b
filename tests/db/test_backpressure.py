"""Backpressure: a full run queue is 429, a write that cannot get its turn in time is 503,
and on SQLite the writers queued behind one stuck at the file lock give up with it.

Checked once against broken variants: without the busy-failure count in
Database._pass_write_gate, test_writers_queued_behind_a_locked_file_fail_together took about
about one busy timeout per queued writer (4.6 s for 8) and failed; without the wait bound,
test_a_write_that_cannot_get_its_turn_is_503 hung until the test's own timeout."""

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.engine import make_url

from app.config import Settings
from app.db.session import Database
from tests.conftest import AGENT, create_conversation, make_app, serve_app


async def test_a_full_run_queue_is_429_with_retry_after(db: Database) -> None:
    async with serve_app(make_app(db, max_queued_runs=2)) as client:
        ids = [(await create_conversation(client))["id"] for _ in range(3)]
        for cid in ids[:2]:
            assert (await client.post(f"/api/conversations/{cid}/run")).status_code == 202
        full = await client.post(f"/api/conversations/{ids[2]}/run")
        assert full.status_code == 429, full.text
        assert full.headers["Retry-After"] == "5"
        assert "AGENT_SERVER_MAX_QUEUED_RUNS" in full.json()["message"]
        message = {"content": [{"type": "text", "text": "hi"}], "run": True}
        refused = await client.post(f"/api/conversations/{ids[2]}/events", json=message)
        assert refused.status_code == 429  # the message is not stored either
        events = await client.get(f"/api/conversations/{ids[2]}/events/count")
        assert events.json() == 0
        created = await client.post(
            "/api/conversations",
            json={"agent": AGENT, "initial_message": {**message}},
        )
        assert created.status_code == 429
        # A queued run that stops frees its place.
        assert (await client.post(f"/api/conversations/{ids[0]}/pause")).status_code == 202
        assert (await client.post(f"/api/conversations/{ids[2]}/run")).status_code == 202


@pytest.fixture
async def one_writer(database_url: str) -> AsyncIterator[Database]:
    """A database handle whose writes wait at most 0.3 s for their turn, one at a time."""
    async with _handle(database_url, db_max_concurrent_writes=1, db_write_wait_seconds=0.3) as db:
        yield db


@contextlib.asynccontextmanager
async def _handle(database_url: str, **settings: object) -> AsyncIterator[Database]:
    config = Settings(_env_file=None, database_url=database_url, **settings)  # type: ignore[call-arg,arg-type]
    database = await asyncio.to_thread(Database.from_settings, config)  # resolves file paths
    try:
        yield database
    finally:
        await database.dispose()


async def test_a_write_that_cannot_get_its_turn_is_503(one_writer: Database) -> None:
    async with serve_app(make_app(one_writer)) as client:
        cid = (await create_conversation(client))["id"]
        url = f"/api/conversations/{cid}/events"
        message = {"content": [{"type": "text", "text": "hi"}]}
        async with one_writer.session(write=True):  # the one write slot, held
            started = time.monotonic()
            response = await client.post(url, json=message)
            waited = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "database_busy"
        assert response.headers["Retry-After"] == "1"
        assert 0.25 < waited < 5, waited
        assert (await client.post(url, json=message)).status_code == 201  # free again


async def test_writers_queued_behind_a_locked_file_fail_together(
    db: Database, database_url: str
) -> None:
    """SQLite: another process holds the file's write lock (here a plain sqlite3 connection
    in a thread). The first writer waits one busy timeout (0.5 s) at the file and fails;
    the seven queued behind it fail as soon as it does, not each after its own wait."""
    if not db.is_sqlite:
        pytest.skip("SQLite's file lock: Postgres writers wait on row locks, not the file")
    async with serve_app(make_app(db)) as client:
        cid = (await create_conversation(client))["id"]
    path = make_url(database_url).database
    holder = await asyncio.to_thread(
        lambda: sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    )
    await asyncio.to_thread(holder.execute, "BEGIN IMMEDIATE")
    try:
        async with (
            _handle(database_url, sqlite_busy_timeout_ms=500) as patient,
            serve_app(make_app(patient)) as client,
        ):
            message = {"content": [{"type": "text", "text": "hi"}]}
            started = time.monotonic()
            responses = await asyncio.gather(
                *(client.post(f"/api/conversations/{cid}/events", json=message) for _ in range(8))
            )
            took = time.monotonic() - started
    finally:
        await asyncio.to_thread(holder.execute, "ROLLBACK")
        await asyncio.to_thread(holder.close)
    assert [r.status_code for r in responses] == [503] * 8, [r.text for r in responses]
    assert took < 2.0, f"8 queued writers took {took:.2f} s behind one locked file"
