"""Migrations on a populated database: 0002 backfills event_counts, 0005 last_event_at."""

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from app.db import migrations
from app.db.session import Database
from tests.conftest import BASE_URL
from tests.dbutil import create_database, drop_database, insert_raw_conversation


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[None]:
    """Alembic runs its own event loop in a worker thread and reads its scripts from disk
    there; that is start-up work, not the request path the gate is for."""
    yield


async def test_0002_backfills_event_counts(tmp_dir: Path) -> None:
    url = await asyncio.to_thread(create_database, BASE_URL, tmp_dir, "mig")
    db = await asyncio.to_thread(Database.from_url, url)
    try:
        await asyncio.to_thread(migrations.upgrade, url, "0001")
        cid = uuid.uuid4()
        now = datetime.now(UTC)
        async with db.session(write=True) as session:
            await insert_raw_conversation(session, db.is_sqlite, cid, last_seq=3)
            for seq, kind, source in (
                (1, "MessageEvent", "user"),
                (2, "MessageEvent", "user"),
                (3, "ActionEvent", "agent"),
            ):
                await session.execute(
                    text(
                        "INSERT INTO events (conversation_id, seq, id, timestamp, kind, source, "
                        "search_text, payload) VALUES (:c, :s, :i, :now, :k, :src, '', '{}')"
                    ).bindparams(
                        c=cid if not db.is_sqlite else cid.hex,
                        s=seq,
                        i=f"e{seq}",
                        now=now,
                        k=kind,
                        src=source,
                    )
                )
        await asyncio.to_thread(migrations.upgrade, url, "0002")
        async with db.session(write=False) as session:
            rows = (
                await session.execute(
                    text("SELECT kind, source, count FROM event_counts ORDER BY kind")
                )
            ).all()
        assert [tuple(r) for r in rows] == [
            ("ActionEvent", "agent", 1),
            ("MessageEvent", "user", 2),
        ]
        await asyncio.to_thread(migrations.upgrade, url, "0005")
        async with db.session(write=False) as session:
            last = (
                await session.execute(text("SELECT last_seq, last_event_at FROM conversations"))
            ).one()
        assert last[0] == 3 and last[1] is not None, "0005 backfills last_event_at"
        await asyncio.to_thread(migrations.downgrade, url, "0001")
        await asyncio.to_thread(migrations.upgrade, url, "head")
    finally:
        await db.dispose()
        await asyncio.to_thread(drop_database, BASE_URL, url)


async def test_0008_cuts_long_search_text_and_the_index_follows(tmp_dir: Path) -> None:
    url = await asyncio.to_thread(create_database, BASE_URL, tmp_dir, "mig_cut")
    db = await asyncio.to_thread(Database.from_url, url)
    try:
        await asyncio.to_thread(migrations.upgrade, url, "0007")
        cid = uuid.uuid4()
        key = cid if not db.is_sqlite else cid.hex
        now = datetime.now(UTC)
        long_text = "a" * 65_536 + "tailword" + "b" * 10_000
        async with db.session(write=True) as session:
            await insert_raw_conversation(session, db.is_sqlite, cid, last_seq=2)
            for seq, search_text in ((1, long_text), (2, "short tailword")):
                await session.execute(
                    text(
                        "INSERT INTO events (conversation_id, seq, id, timestamp, kind, source, "
                        "search_text, payload) VALUES (:c, :s, :i, :now, 'MessageEvent', "
                        "'user', :t, '{}')"
                    ).bindparams(c=key, s=seq, i=f"e{seq}", now=now, t=search_text)
                )
        await asyncio.to_thread(migrations.upgrade, url, "0008")
        async with db.session(write=False) as session:
            lengths = (
                await session.execute(
                    text("SELECT seq, length(search_text) FROM events ORDER BY seq")
                )
            ).all()
            assert [tuple(r) for r in lengths] == [(1, 65_536), (2, 14)]
            if db.is_sqlite:  # the FTS table followed the UPDATE through its trigger
                found = (
                    await session.execute(
                        text(
                            "SELECT e.seq FROM events_fts f JOIN events e ON e.rowid = f.rowid "
                            "WHERE events_fts MATCH '\"tailword\"' ORDER BY e.seq"
                        )
                    )
                ).all()
                assert [r[0] for r in found] == [2]
        await asyncio.to_thread(migrations.downgrade, url, "0007")
    finally:
        await db.dispose()
        await asyncio.to_thread(drop_database, BASE_URL, url)


async def test_0010_a_queued_conversation_becomes_running_and_back(tmp_dir: Path) -> None:
    url = await asyncio.to_thread(create_database, BASE_URL, tmp_dir, "mig_queued")
    db = await asyncio.to_thread(Database.from_url, url)
    try:
        await asyncio.to_thread(migrations.upgrade, url, "0009")
        now = datetime.now(UTC)
        ids = {status: uuid.uuid4() for status in ("queued", "idle", "running")}
        async with db.session(write=True) as session:
            for status, cid in ids.items():
                await insert_raw_conversation(session, db.is_sqlite, cid, status=status)
            queued = ids["queued"] if not db.is_sqlite else ids["queued"].hex
            await session.execute(
                text(
                    "INSERT INTO runs (id, conversation_id, status, iterations, lease_epoch, "
                    "pause_requested, interrupt_requested, step_db_ms, created_at) VALUES "
                    "(:id, :c, 'queued', 0, 0, false, false, '[]', :now)"
                ).bindparams(
                    id=uuid.uuid4() if not db.is_sqlite else uuid.uuid4().hex, c=queued, now=now
                )
            )

        async def statuses() -> list[str]:
            async with db.session(write=False) as session:
                rows = await session.execute(text("SELECT id, execution_status FROM conversations"))
                found = {uuid.UUID(str(r[0])): r[1] for r in rows}
            return [found[ids[s]] for s in ("queued", "idle", "running")]

        await asyncio.to_thread(migrations.upgrade, url, "0010")
        assert await statuses() == ["running", "idle", "running"]
        await asyncio.to_thread(migrations.downgrade, url, "0009")
        assert await statuses() == ["queued", "idle", "running"]  # only the one with a queued run
    finally:
        await db.dispose()
        await asyncio.to_thread(drop_database, BASE_URL, url)
