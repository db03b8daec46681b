"""SQLite through aiosqlite: one trip to the connection's thread per statement, no COMMIT or
ROLLBACK where no transaction was begun, and the driver's results unchanged
(app/db/sqlite_driver.py, app/db/engine.py). Postgres has neither the thread nor the hops."""

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiosqlite
import httpx
import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from app.db.session import Database
from app.models import Conversation
from tests.conftest import create_conversation, send_message


@pytest.fixture
def trips(db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Every call queued to an aiosqlite connection's thread, by function name."""
    if not db.is_sqlite:
        pytest.skip("SQLite's driver: Postgres connections have no thread to hop to")
    counted: Counter[str] = Counter()
    original = aiosqlite.Connection._execute

    async def counting(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        counted[getattr(fn, "__name__", repr(fn))] += 1
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counting)
    yield counted


async def test_a_read_is_one_trip_per_statement(
    client: httpx.AsyncClient, trips: Counter[str]
) -> None:
    """A search, a count and a conversation read: one statement each, so one trip each, with
    no BEGIN, COMMIT or ROLLBACK. Checked once against the broken variants: SQLAlchemy's
    own aiosqlite cursor (4 trips per SELECT: cursor, execute, fetchall, close) and reads
    with BEGIN DEFERRED ... COMMIT plus the pool's ROLLBACK (9 trips for the search); this
    test failed on both."""
    cid = (await create_conversation(client))["id"]
    for text in ("one", "two", "three"):
        await send_message(client, cid, text)
    for url in (
        f"/api/conversations/{cid}/events/search",
        f"/api/conversations/{cid}/events/count?source=user",
        f"/api/conversations/{cid}",
    ):
        trips.clear()
        response = await client.get(url)
        assert response.status_code == 200, response.text
        assert dict(trips) == {"_run": 1}, url
    trips.clear()
    assert (await client.get(f"/api/conversations/{cid}/events/search")).json()["items"]


async def test_a_write_commits_once_and_skips_the_rollback_on_return(
    client: httpx.AsyncClient, trips: Counter[str]
) -> None:
    """BEGIN IMMEDIATE, the statements, COMMIT: the pool's ROLLBACK-on-return is not sent
    after a COMMIT that succeeded."""
    cid = (await create_conversation(client))["id"]
    trips.clear()
    await send_message(client, cid, "hello")
    assert trips["commit"] == 1 and trips["rollback"] == 0
    assert trips["_run"] >= 2  # BEGIN IMMEDIATE and at least the INSERT


async def test_a_failed_write_is_rolled_back_before_its_connection_is_reused(
    db: Database, trips: Counter[str]
) -> None:
    """A write transaction that fails mid-way is rolled back: nothing of it stays, and the
    connection goes back to the pool outside any transaction (a pooled connection left inside
    BEGIN IMMEDIATE would hold SQLite's write lock, and the next BEGIN on it would fail).
    Checked once against the broken variant (the ROLLBACK skipped whatever the state): the
    next writes failed and this test failed."""
    kept, lost = uuid.uuid4(), uuid.uuid4()
    row = {"agent": {"llm": {"model": "m"}}, "title": "t", "max_iterations": 5}
    async with db.session(write=True) as session:
        await session.execute(insert(Conversation).values(id=kept, **row))
    with pytest.raises(IntegrityError):
        async with db.session(write=True) as session:
            await session.execute(insert(Conversation).values(id=lost, **row))
            await session.execute(insert(Conversation).values(id=kept, **row))
    assert trips["rollback"] == 1
    # Every pooled connection in turn: none is still inside the failed transaction.
    async with asyncio.timeout(10):
        for _ in range(3):
            async with db.session(write=True) as session:
                changed = await session.execute(
                    update(Conversation).where(Conversation.id == kept).values(title="again")
                )
                assert changed.rowcount == 1  # type: ignore[attr-defined]
    async with db.session(write=False) as session:
        ids = set(await session.scalars(select(Conversation.id)))
    assert kept in ids and lost not in ids


async def test_rowcount_and_returning_come_back_with_the_rows(
    db: Database, trips: Counter[str]
) -> None:
    """The conditional UPDATE's rowcount (the version check rests on it) and INSERT ...
    RETURNING come back from the one trip."""
    cid = uuid.uuid4()
    row = {"agent": {"llm": {"model": "m"}}, "title": "t", "max_iterations": 5}
    async with db.session(write=True) as session:
        returned = await session.scalar(
            insert(Conversation).values(id=cid, **row).returning(Conversation.version)
        )
        assert returned == 1
        stale = await session.execute(
            update(Conversation)
            .where(Conversation.id == cid, Conversation.version == 7)
            .values(title="x")
        )
        fresh = await session.execute(
            update(Conversation)
            .where(Conversation.id == cid, Conversation.version == 1)
            .values(title="y", version=2)
        )
        assert (stale.rowcount, fresh.rowcount) == (0, 1)  # type: ignore[attr-defined]
