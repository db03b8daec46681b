"""The runner's one-trip fenced append (app/runs/fenced_append.py, appenders.py) against the
ORM path: the same rows, column for column, on both databases."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text

from app.agent.base import LLMCallRecord
from app.clock import utcnow
from app.db.session import Database
from app.events import service as events_service
from app.events.repository import EventFilter
from app.events.schemas import MessageEvent
from app.events.service import event_row
from app.models import Conversation, Event, EventCount, LLMCall, Run
from app.runs import repository
from app.runs.appenders import appender
from app.runs.fenced_append import Appender, FencedAppend
from app.runs.repository import Lease
from app.runs.usage import call_row


@pytest.fixture
async def hot(db: Database) -> AsyncIterator[Appender]:
    writer = appender(db, max_connections=4)
    yield writer
    await writer.close()


async def _claimed(db: Database) -> Lease:
    cid = uuid.uuid4()
    async with db.session(write=True) as session:
        session.add(Conversation(id=cid, title="hot", agent={}, max_iterations=10, stats={}))
        await session.flush()
        session.add(Run(id=uuid.uuid4(), conversation_id=cid, status="queued"))
    async with db.session(write=True) as session:
        leases = await repository.claim(session, "w", 60, utcnow(), 10)
    return next(lease for lease in leases if lease.conversation_id == cid)


def _event(text_: str, kind: str = "MessageEvent", event_id: str | None = None) -> dict[str, Any]:
    message = MessageEvent(
        source="agent",
        llm_message={"role": "assistant", "content": [{"type": "text", "text": text_}]},
    )
    return {
        "id": event_id or message.id,
        "kind": kind,
        "source": "agent",
        "search_text": message.search_text(),
        "payload": message.payload(),
    }


def _call(model: str = "m") -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "model": model,
        "prompt_tokens": 11,
        "completion_tokens": 7,
        "cost_usd": None,
        "latency_ms": 12.5,
        "error": None,
    }


async def test_rows_match_the_orm_path(db: Database, hot: Appender) -> None:
    lease = await _claimed(db)
    cid = lease.conversation_id
    async with db.session(write=True) as session:
        orm = await events_service.append(
            session,
            cid,
            [
                MessageEvent(
                    source="agent",
                    llm_message={"role": "assistant", "content": [{"type": "text", "text": "one"}]},
                )
            ],
        )
    job = FencedAppend(
        lease=lease,
        now=utcnow(),
        iterations=3,
        events=[_event("two"), _event("three")],
        stats={"llm_calls": 1},
        calls=[_call()],
    )
    written = await hot.append(job)
    assert written is not None
    last_seq, stamp, db_ms = written
    assert 0 < db_ms < 1000
    # Event timestamps are fixed-width UTC strings: they compare in time order.
    shown = events_service.stamp(stamp)
    assert last_seq == 3 and stamp.tzinfo is not None and shown >= orm[0]["timestamp"]

    async with db.session(write=False) as session:
        history = await events_service.read_after(session, cid)
        conversation = await session.get(Conversation, cid)
        run = await session.get(Run, lease.run_id)
        calls = list((await session.execute(select(LLMCall))).scalars())
        tally = await session.scalar(
            select(func.sum(EventCount.count)).where(EventCount.conversation_id == cid)
        )
        found = await events_service.count(session, cid, EventFilter(body="three"))
        if db.is_sqlite:  # stored byte for byte as the ORM stores them
            raw = (
                await session.execute(
                    text(
                        "SELECT typeof(conversation_id), length(conversation_id),"
                        " length(timestamp), typeof(payload) FROM events ORDER BY seq"
                    )
                )
            ).all()
            assert raw[0] == raw[1] == raw[2], raw
    assert [e["seq"] for e in history] == [1, 2, 3]
    assert history[0] == orm[0]
    assert [e["llm_message"]["content"][0]["text"] for e in history] == ["one", "two", "three"]
    assert history[1]["timestamp"] == history[2]["timestamp"] == shown
    assert conversation is not None and conversation.last_seq == 3
    assert conversation.stats == {"llm_calls": 1} and conversation.last_event_at == stamp
    assert run is not None and run.iterations == 3
    assert [(c.model, c.prompt_tokens, c.run_id, c.conversation_id) for c in calls] == [
        ("m", 11, lease.run_id, cid)
    ]
    assert tally == 3 and found == 1


async def test_a_lost_lease_writes_nothing(db: Database, hot: Appender) -> None:
    lease = await _claimed(db)
    stale = Lease(lease.run_id, lease.conversation_id, lease.epoch + 1)
    assert (
        await hot.append(
            FencedAppend(
                lease=stale, now=utcnow(), iterations=1, events=[_event("x")], calls=[_call()]
            )
        )
        is None
    )
    later = utcnow() + timedelta(minutes=5)  # past the lease's expiry
    assert (
        await hot.append(FencedAppend(lease=lease, now=later, iterations=1, events=[_event("y")]))
        is None
    )
    async with db.session(write=False) as session:
        assert await session.scalar(select(func.count()).select_from(Event)) == 0
        assert await session.scalar(select(func.count()).select_from(LLMCall)) == 0
        conversation = await session.get(Conversation, lease.conversation_id)
        run = await session.get(Run, lease.run_id)
    assert conversation is not None and conversation.last_seq == 0
    assert run is not None and run.iterations == 0
    assert (await hot.last_seq(lease.conversation_id)).last_seq == 0


async def test_a_failing_append_does_not_undo_the_others(db: Database, hot: Appender) -> None:
    """Sent together, so on SQLite they share one group-commit transaction: the failing one
    (a duplicate event id) is rolled back to its savepoint, the others land whole. Checked once
    against a variant without the rollback to the savepoint: this test fails there."""
    leases = [await _claimed(db) for _ in range(3)]
    first = _event("first")
    assert await hot.append(
        FencedAppend(lease=leases[1], now=utcnow(), iterations=0, events=[first])
    )
    jobs = [
        FencedAppend(
            lease=leases[0], now=utcnow(), iterations=1, events=[_event("a"), _event("b")]
        ),
        FencedAppend(
            lease=leases[1],
            now=utcnow(),
            iterations=1,
            events=[_event("dup", event_id=first["id"])],
            calls=[_call("lost")],
        ),
        FencedAppend(
            lease=leases[2], now=utcnow(), iterations=1, events=[_event("c")], calls=[_call("kept")]
        ),
    ]
    results = await asyncio.gather(*(hot.append(job) for job in jobs), return_exceptions=True)
    assert isinstance(results[1], Exception), results
    assert [r[0] for r in (results[0], results[2]) if isinstance(r, tuple)] == [2, 1]
    assert [(await hot.last_seq(lease.conversation_id)).last_seq for lease in leases] == [2, 1, 1]
    async with db.session(write=False) as session:
        models = list((await session.execute(select(LLMCall.model))).scalars())
        run = await session.get(Run, leases[1].run_id)
    assert models == ["kept"]
    assert run is not None and run.iterations == 0


def _stored(table: str, db: Database) -> str:
    """Every column of a conversation's rows as the database holds them."""
    if db.is_sqlite:
        return f"SELECT * FROM {table} WHERE conversation_id = :cid"
    return f"SELECT to_jsonb(t.*) FROM {table} t WHERE conversation_id = :cid"


async def _raw_rows(db: Database, table: str, conversation_id: uuid.UUID) -> list[dict[str, Any]]:
    cid: Any = conversation_id.hex if db.is_sqlite else conversation_id
    async with db.session(write=False) as session:
        result = await session.execute(text(_stored(table, db)), {"cid": cid})
        if db.is_sqlite:
            return [dict(row._mapping) for row in result]
        return [row[0] for row in result]


async def test_both_paths_store_every_column_alike(db: Database, hot: Appender) -> None:
    """The same event and LLM call written through the ORM path (events.service.append,
    repository.insert_calls) into one conversation and through the fenced append into
    another: every column of events, event_counts and llm_calls is stored the same (SQLite:
    the same text), except those that name the conversation, the run, the time or the call.
    A column added to a table and missed by one path fails here."""
    orm_lease, fast_lease = await _claimed(db), await _claimed(db)
    message = MessageEvent(
        source="agent",
        llm_message={"role": "assistant", "content": [{"type": "text", "text": "same \u00e9"}]},
    )
    record = LLMCallRecord(
        model="m", prompt_tokens=3, completion_tokens=None, cost_usd=0.25, latency_ms=1.5,
        error="boom",
    )  # fmt: skip
    call = call_row(record)
    now = utcnow()
    async with db.session(write=True) as session:
        await events_service.append(session, orm_lease.conversation_id, [message])
        ids = {"conversation_id": orm_lease.conversation_id, "run_id": orm_lease.run_id}
        await repository.insert_calls(session, [{**call, **ids, "created_at": now}])
    job = FencedAppend(
        lease=fast_lease,
        now=now,
        iterations=1,
        events=[event_row(message)],
        calls=[{**call, "id": uuid.uuid4()}],
    )
    assert await hot.append(job) is not None
    vary = {
        "events": {"conversation_id", "timestamp"},
        "event_counts": {"conversation_id"},
        "llm_calls": {"conversation_id", "run_id", "created_at", "id"},
    }
    for table, differ in vary.items():
        orm = await _raw_rows(db, table, orm_lease.conversation_id)
        fast = await _raw_rows(db, table, fast_lease.conversation_id)
        assert len(orm) == len(fast) == 1, (table, orm, fast)
        assert set(orm[0]) == set(fast[0]) and len(orm[0]) > len(differ), table
        for column in set(orm[0]) - differ:
            assert orm[0][column] == fast[0][column], (table, column)
    if db.is_sqlite:  # the columns that differ in value still have the same storage class
        async with db.session(write=False) as session:
            classes = (await session.execute(text(
                "SELECT DISTINCT typeof(conversation_id) || length(conversation_id)"
                " || typeof(timestamp) || length(timestamp) FROM events"
            ))).all()  # fmt: skip
        assert len(classes) == 1, classes
