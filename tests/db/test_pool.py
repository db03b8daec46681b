"""The connection pool after the database closed its connections (a restart, a terminated
backend): no request fails on a dead pooled connection."""

import asyncio

import httpx
import pytest
from sqlalchemy import text

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
