"""The connection pool after the database closed its connections (a restart, a terminated
backend): no request fails on a dead pooled connection."""

import asyncio

import httpx
import pytest
from sqlalchemy import text

from app.db.engine import create_engine
from app.db.session import Database


async def test_requests_after_the_server_closed_every_pooled_connection(
    db: Database, client: httpx.AsyncClient
) -> None:
    """Postgres closes every connection the pool holds (pg_terminate_backend, as a restart
    does); the next requests all answer 2xx. Checked once against a broken variant (the
    checkout hook in app/db/engine.py removed, no pre-ping either): the first request after
    the kill answered 500 ("connection is closed") and this test failed."""
    if db.is_sqlite:
        pytest.skip("a Postgres scenario: a SQLite connection is a file handle, not a socket")
    created = await client.post("/api/conversations", json={"agent": {"llm": {"model": "m"}}})
    cid = created.json()["id"]
    # Fill the pool: several requests at once, so several connections are pooled.
    answers = await asyncio.gather(*(client.get(f"/api/conversations/{cid}") for _ in range(8)))
    assert [a.status_code for a in answers] == [200] * 8
    pool_size = db.engine.pool.checkedin()  # type: ignore[attr-defined]
    assert pool_size >= 2
    async with db.engine.connect() as admin:
        await admin.execute(text("SELECT 1"))
        killed = await admin.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND application_name = ''"
            )
        )
    assert killed is not None and killed >= pool_size - 1
    await asyncio.sleep(0.3)  # the sockets' close reaches asyncpg (a restart takes far longer)
    statuses = [(await client.get(f"/api/conversations/{cid}")).status_code for _ in range(10)]
    statuses += [(await client.get(f"/api/conversations/{cid}/events/count")).status_code]
    assert statuses == [200] * 11


async def test_queued_writers_never_leave_a_read_without_a_connection(db: Database) -> None:
    """Two pooled connections, one write slot: a write transaction is open and five more
    writers wait; a read still gets the second connection at once. Checked once against a
    broken variant (Postgres writers not gated: no semaphore in Database._write_gate): a
    waiting writer took the last connection and the read timed out."""
    url = db.engine.url.render_as_string(hide_password=False)
    engine = await asyncio.to_thread(
        create_engine, url, pool_size=2, max_overflow=0, pool_timeout=2
    )
    small = Database(engine, max_concurrent_writes=1)
    release = asyncio.Event()

    async def write() -> None:  # a write transaction that lasts until `release`
        async with small.session(write=True) as session:
            await session.execute(text("SELECT 1"))
            await release.wait()

    try:
        holder = asyncio.create_task(write())
        await asyncio.sleep(0.2)  # the holder has its slot and connection
        waiting = [asyncio.create_task(write()) for _ in range(5)]
        await asyncio.sleep(0.2)  # the five are queued
        started = asyncio.get_running_loop().time()
        async with small.session(write=False) as session:
            assert await session.scalar(text("SELECT 1")) == 1
        took = asyncio.get_running_loop().time() - started
        release.set()
        await asyncio.gather(holder, *waiting)
    finally:
        release.set()
        await small.dispose()
    assert took < 1.0, f"the read waited {took:.2f} s for a connection"
