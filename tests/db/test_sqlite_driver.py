"""SQLite through aiosqlite: one trip to the connection's thread per statement, no COMMIT or
ROLLBACK where no transaction was begun, and the driver's results unchanged
(app/db/sqlite_driver.py, app/db/engine.py). Postgres has neither the thread nor the hops.
The adapter leans on private parts of aiosqlite and SQLAlchemy: an engine refuses to start on
versions it was not tested with, and these tests are what to run before widening the range."""

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import httpx
import pytest
import sqlalchemy
from sqlalchemy import insert, select, update
from sqlalchemy.connectors.asyncio import AsyncAdapt_dbapi_connection, AsyncAdapt_dbapi_cursor
from sqlalchemy.exc import IntegrityError

from app.db import sqlite_driver
from app.db.engine import create_engine
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


def test_the_installed_versions_are_supported(tmp_path: Path) -> None:
    """The versions this suite runs on are inside the tested ranges (else widen them, after
    this file passes), and a SQLite engine gets the one-trip adapter."""
    sqlite_driver.check_supported()
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'guard.db'}")
    assert isinstance(engine.dialect.loaded_dbapi, sqlite_driver.OneHopDBAPI)


@pytest.mark.parametrize(
    ("module", "version"),
    [(aiosqlite, "0.19.0"), (aiosqlite, "0.23.0"), (aiosqlite, "1.0"),
     (sqlalchemy, "2.0.44"), (sqlalchemy, "2.2.0b1"), (sqlalchemy, "unknown")],
)  # fmt: skip
def test_an_untested_version_stops_the_engine_at_creation(
    module: Any, version: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of range on either side, either library: creating a SQLite engine fails with an
    error that names both installed versions, the tested ranges and what to do."""
    monkeypatch.setattr(module, "__version__", version)
    with pytest.raises(sqlite_driver.UnsupportedDriverVersion) as raised:
        create_engine(f"sqlite+aiosqlite:///{tmp_path / 'guard.db'}")
    message = str(raised.value)
    assert f"aiosqlite {aiosqlite.__version__}" in message
    assert f"SQLAlchemy {sqlalchemy.__version__}" in message
    assert f"{version} is outside" in message
    assert ">=0.20,<0.23" in message and ">=2.1,<2.2" in message
    assert "tests/db/test_sqlite_driver.py" in message


@pytest.mark.parametrize(
    ("owner", "name"),
    [(aiosqlite.Connection, "_execute"), (aiosqlite.Connection, "_conn"),
     (AsyncAdapt_dbapi_cursor, "_execute_async"), (AsyncAdapt_dbapi_cursor, "_cursor"),
     (AsyncAdapt_dbapi_cursor, "_soft_closed_memoized"),
     (AsyncAdapt_dbapi_connection, "_execute_mutex")],
)  # fmt: skip
def test_a_missing_private_attribute_stops_the_engine_at_creation(
    owner: type, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A release inside the range that moved what the adapter relies on fails as loudly, and
    names the attribute."""
    monkeypatch.delattr(owner, name)
    with pytest.raises(sqlite_driver.UnsupportedDriverVersion, match=rf"\.{name} is missing"):
        create_engine(f"sqlite+aiosqlite:///{tmp_path / 'guard.db'}")


def test_a_postgres_engine_does_not_check_aiosqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard is SQLite's: a Postgres deployment starts whatever aiosqlite is installed."""
    monkeypatch.setattr(aiosqlite, "__version__", "9.9")
    engine = create_engine("postgresql+asyncpg://user@127.0.0.1:1/none")
    assert engine.dialect.name == "postgresql"
