"""Times against ISO 8601 literals: the stored form (app/db/types.py) on both write paths,
and the literal idiom of docs/analytics.md, the same on both databases whatever the session's
time zone. Migration 0014 on old rows: test_migration_0014.py.

Checked once against a broken variant: with SQLITE_STORAGE_FORMAT back to SQLAlchemy's
default (a space for the `T`), test_stored_form_and_literal_windows fails on SQLite."""

import importlib.util
import uuid
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import text

from app.clock import utcnow
from app.db import migrations
from app.db.base import Base
from app.db.session import Database
from app.db.types import UTCDateTime
from app.events.schemas import MessageEvent
from app.events.service import event_row
from app.models import Conversation, Run
from app.runs import repository
from app.runs.appenders import appender
from app.runs.fenced_append import FencedAppend
from tests.analytics.dataset import T1, Seeded, at, seed
from tests.analytics.helpers import question, rows


def _migration(name: str) -> ModuleType:
    path = migrations.MIGRATIONS_DIR / "versions" / name
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


M0014 = _migration("0014_sqlite_iso_timestamps.py")
# Tables that later migrations create: their rows are written in the ISO form from the start.
CREATED_AFTER_0014 = {"idempotency_keys"}


def test_0014_rewrites_every_utc_datetime_column() -> None:
    modelled = {
        (table.name, column.name)
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, UTCDateTime) and table.name not in CREATED_AFTER_0014
    }
    listed = {(table, column) for table, columns in M0014.COLUMNS.items() for column in columns}
    assert listed == modelled


@pytest.fixture
async def data(db: Database) -> Seeded:
    return await seed(db)


async def test_stored_form_and_literal_windows(db: Database, data: Seeded) -> None:
    """SQLite holds fixed-width `...T05:00:00.000000Z` text; on both databases a literal
    with +00:00, or with Z and all six fraction digits, bounds a half-open window exactly."""
    if db.is_sqlite:
        raw = await rows(db, "SELECT DISTINCT length(timestamp) FROM events")
        assert raw == [(27,)]
        first = await rows(db, "SELECT min(timestamp) FROM events")
        assert first == [("2026-12-01T05:00:00.000000Z",)]
    for start, end in (
        ("2026-12-01T05:00:00+00:00", "2026-12-01T05:00:04+00:00"),
        ("2026-12-01T05:00:00.000000Z", "2026-12-01T05:00:04.000000Z"),
    ):
        sql = (
            f"SELECT seq FROM events WHERE timestamp >= '{start}' AND timestamp < '{end}'"
            " ORDER BY timestamp, seq"
        )
        assert await rows(db, sql) == [(1,), (2,), (3,), (4,)], (start, end)


@pytest.fixture
async def new_york(db: Database) -> AsyncIterator[Any]:
    """A session whose Postgres time zone is America/New_York (SET LOCAL: this transaction
    only). SQLite has no session time zone."""
    async with db.session(write=True) as session:
        if not db.is_sqlite:
            await session.execute(text("SET LOCAL TIME ZONE 'America/New_York'"))
        yield session


async def test_answers_do_not_depend_on_the_session_time_zone(
    db: Database, data: Seeded, new_york: Any
) -> None:
    """B's events are at 02:00 UTC on Dec 3, still Dec 2 in New York: the UTC day and the
    literal windows stay the same whatever the session's zone (checked once with the view's
    day computed without AT TIME ZONE 'UTC': this test fails on Postgres)."""
    days = await new_york.execute(question("EVENTS_PER_KIND_PER_DAY").statement())
    assert sorted({row[0] for row in days}) == ["2026-12-01", "2026-12-03"]
    window = await new_york.execute(
        text(
            "SELECT seq FROM events WHERE timestamp >= '2026-12-03T02:00:00+00:00'"
            " AND timestamp < '2026-12-03T02:00:02+00:00' ORDER BY seq"
        )
    )
    assert [row[0] for row in window] == [1, 2]
    found = await new_york.execute(
        question("EVENTS_IN_WINDOW_WITH_WORD").statement(),
        {"start": T1, "end": at(T1, 1), "word": "list"},
    )
    assert [row[1] for row in found] == [1]


async def test_both_write_paths_store_the_iso_form(db: Database, data: Seeded) -> None:
    """Rows written by the ORM and by the runner's fenced append (its own sqlite3 connection,
    binding through the same type processors) hold the same fixed-width form."""
    async with db.session(write=True) as session:
        cid = uuid.uuid4()
        session.add(Conversation(id=cid, title="w", agent={}, max_iterations=1, stats={}))
        await session.flush()
        session.add(Run(conversation_id=cid))
    async with db.session(write=True) as session:
        lease = next(
            lease
            for lease in await repository.claim(session, "w", 60, utcnow(), 10)
            if lease.conversation_id == cid
        )
    writer = appender(db, max_connections=2)
    try:
        message = MessageEvent(llm_message={"role": "user", "content": [{"text": "x"}]})
        job = FencedAppend(lease=lease, now=utcnow(), iterations=1, events=[event_row(message)])
        assert await writer.append(job) is not None
    finally:
        await writer.close()
    if not db.is_sqlite:
        return
    for table, columns in M0014.COLUMNS.items():
        for column in columns:
            bad = await rows(
                db,
                f'SELECT "{column}" FROM {table} WHERE "{column}" IS NOT NULL'
                f' AND NOT ("{column}" GLOB :new)',
                new=M0014.NEW,
            )
            assert bad == [], (table, column)
