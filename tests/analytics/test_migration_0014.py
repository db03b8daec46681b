"""Migration 0014 on a populated database: SQLite times in the old text form (and in other
ISO forms written by hand) become fixed-width ISO 8601 UTC, read the same through the models,
compare right against ISO literals, and go back with the downgrade. On Postgres it changes
nothing, and the same checks hold.

Checked once against a broken variant: with 0014's upgrade emptied, this test fails on
SQLite (the literal window finds nothing and the stored values keep their space)."""

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from app.db import migrations
from app.db.session import Database
from app.models import Conversation, Event, LLMCall, Run, Skill, SkillRevision
from tests.analytics.helpers import rows
from tests.conftest import BASE_URL
from tests.dbutil import create_database, drop_database

# The portable literal form: an explicit +00:00 offset (docs/analytics.md).
WINDOW = (
    "SELECT seq FROM events WHERE timestamp >= '2026-12-01T05:00:00+00:00'"
    " AND timestamp < '2026-12-01T06:00:00+00:00' ORDER BY timestamp, seq"
)

CID, RID, SID = uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=3)


def _utc(text_: str) -> datetime:
    return datetime.fromisoformat(text_).replace(tzinfo=UTC)


# seq: (what SQLite held before 0014, what it holds after)
EVENTS = {
    1: ("2026-12-01 05:00:00.000000", "2026-12-01T05:00:00.000000Z"),
    2: ("2026-12-01 05:00:00.500000", "2026-12-01T05:00:00.500000Z"),
    3: ("2026-12-01 07:00:01+02:00", "2026-12-01T05:00:01.000000Z"),  # another form
    4: ("2026-12-01 05:00:02", "2026-12-01T05:00:02.000000Z"),  # no fraction
    5: ("2026-12-01 06:00:00.000000", "2026-12-01T06:00:00.000000Z"),
}
OLD = "2026-12-01 04:59:01.250000"
NEW = "2026-12-01T04:59:01.250000Z"


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[None]:
    """Alembic runs its own event loop in a worker thread and reads its scripts there."""
    yield


async def _seed_old(db: Database) -> None:
    """Rows at revision 0013, every time column set: SQLite text as it was stored then."""

    def value(old: str) -> Any:
        """SQLite: the text itself; Postgres: the instant it names (naive text is UTC)."""
        if db.is_sqlite:
            return old
        moment = datetime.fromisoformat(old)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    ident = (lambda u: u.hex) if db.is_sqlite else (lambda u: u)
    t = value(OLD)
    statements = [
        ("INSERT INTO conversations (id, title, tags, agent, execution_status, max_iterations,"
         " stats, last_seq, version, created_at, updated_at, last_event_at) VALUES"
         " (:c, 't', '{}', '{}', 'idle', 5, '{}', 5, 1, :t, :t, :t)", {}),
        ("INSERT INTO runs (id, conversation_id, status, iterations, lease_epoch,"
         " pause_requested, interrupt_requested, created_at, started_at, finished_at,"
         " lease_expires_at) VALUES (:r, :c, 'completed', 1, 1, false, false, :t, :t, :t, NULL)",
         {}),
        ("INSERT INTO llm_calls (id, conversation_id, run_id, model, latency_ms, created_at)"
         " VALUES (:r, :c, :r, 'm', 1.0, :t)", {}),
        ("INSERT INTO skills (id, name, description, content, enabled, version, created_at,"
         " updated_at) VALUES (:s, 's', 'd', 'c', true, 1, :t, :t)", {}),
        ("INSERT INTO skill_revisions (skill_id, version, description, content, enabled,"
         " created_at) VALUES (:s, 1, 'd', 'c', true, :t)", {}),
    ]  # fmt: skip
    statements += [
        (
            "INSERT INTO events (conversation_id, seq, id, timestamp, kind, source, search_text,"
            " payload) VALUES (:c, :seq, :id, :ts, 'PauseEvent', 'user', '', '{}')",
            {"seq": seq, "id": f"e{seq}", "ts": value(old)},
        )
        for seq, (old, _) in EVENTS.items()
    ]
    async with db.session(write=True) as session:
        for sql, extra in statements:
            binds = {"c": ident(CID), "r": ident(RID), "s": ident(SID), "t": t, **extra}
            await session.execute(text(sql), binds)


async def _read_back(db: Database) -> list[Any]:
    """Every time column through the models (ids known)."""
    async with db.session(write=False) as session:
        events = [(e.seq, e.timestamp) for e in (await session.scalars(select(Event))).all()]
        conversation = await session.get(Conversation, CID)
        run = await session.get(Run, RID)
        call = (await session.scalars(select(LLMCall))).one()
        skill = await session.get(Skill, SID)
        revision = (await session.scalars(select(SkillRevision))).one()
    assert conversation and run and skill
    return [
        sorted(events),
        (conversation.created_at, conversation.updated_at, conversation.last_event_at),
        (run.created_at, run.started_at, run.finished_at, run.lease_expires_at),
        call.created_at,
        (skill.created_at, skill.updated_at),
        revision.created_at,
    ]


async def test_0014_rewrites_old_rows_and_back(tmp_dir: Path) -> None:
    url = await asyncio.to_thread(create_database, BASE_URL, tmp_dir, "mig_iso")
    db = await asyncio.to_thread(Database.from_url, url)
    try:
        await asyncio.to_thread(migrations.upgrade, url, "0013")
        await _seed_old(db)
        if db.is_sqlite:  # the bug: a space sorts before `T`, every row misses the window
            assert await rows(db, WINDOW) == []
        await asyncio.to_thread(migrations.upgrade, url, "head")

        t = _utc(OLD)
        assert await _read_back(db) == [
            [(seq, datetime.fromisoformat(new)) for seq, (_, new) in EVENTS.items()],
            (t, t, t), (t, t, t, None), t, (t, t), t,
        ]  # fmt: skip
        assert await rows(db, WINDOW) == [(1,), (2,), (3,), (4,)]
        # Time order is string order again (keyset pagination and ranges compare strings).
        assert await rows(db, "SELECT seq FROM events ORDER BY timestamp") == [(s,) for s in EVENTS]
        if db.is_sqlite:
            stored = await rows(db, "SELECT timestamp FROM events ORDER BY seq")
            assert stored == [(new,) for _, new in EVENTS.values()]
            assert await rows(db, "SELECT created_at, lease_expires_at FROM runs") == [(NEW, None)]

        await asyncio.to_thread(migrations.downgrade, url, "0013")
        if db.is_sqlite:  # back to the old form (the other forms come back as the old one)
            stored = await rows(db, "SELECT timestamp FROM events ORDER BY seq")
            assert stored == [(new[:10] + " " + new[11:26],) for _, new in EVENTS.values()]
            assert await rows(db, "SELECT updated_at FROM skills") == [(OLD,)]
        await asyncio.to_thread(migrations.upgrade, url, "head")
        assert await rows(db, WINDOW) == [(1,), (2,), (3,), (4,)]
        # A day later than any row: nothing (the literal is compared as a time, not a prefix).
        later = WINDOW.replace("2026-12-01T05", "2026-12-02T05").replace("-01T06", "-02T06")
        assert await rows(db, later) == []
    finally:
        await db.dispose()
        await asyncio.to_thread(drop_database, BASE_URL, url)


async def test_alembic_check_passes_with_the_views(database_url: str) -> None:
    """Models and migrations agree at head: the views (not tables) are not compared."""
    await asyncio.to_thread(migrations.check, database_url)
