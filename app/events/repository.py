"""Event queries. Every search is a seek on an index that starts with conversation_id."""

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    String,
    Table,
    and_,
    case,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert, Update

from app.db.dialect import dialect_name, upsert_add
from app.db.notify import EVENTS_CHANNEL
from app.db.types import UTCDateTime
from app.events import text_search
from app.models import Conversation, Event, EventCount

CONVERSATIONS = cast(Table, Conversation.__table__)
EVENTS = cast(Table, Event.__table__)
EVENT_COUNTS = cast(Table, EventCount.__table__)
ROW_COLUMNS = (Event.kind, Event.id, Event.seq, Event.timestamp, Event.source, Event.payload)
_NO_UPPER_BOUND = 2**62


@dataclass(frozen=True)
class EventFilter:
    kind: str | None = None
    source: str | None = None
    body: str | None = None
    timestamp_gte: datetime | None = None
    timestamp_lt: datetime | None = None


def _first_seq_at_or_after(conversation_id: uuid.UUID, ts: datetime) -> Any:
    # Timestamps never decrease along seq, so the first event at or after `ts` in
    # (timestamp, seq) order has the smallest such seq: one seek on the timestamp index.
    return (
        select(Event.seq)
        .where(Event.conversation_id == conversation_id, Event.timestamp >= ts)
        .order_by(Event.timestamp, Event.seq)
        .limit(1)
        .scalar_subquery()
    )


def filter_conditions(
    conversation_id: uuid.UUID, f: EventFilter, *, fts: bool = False
) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [Event.conversation_id == conversation_id]
    if f.kind is not None:
        conds.append(Event.kind == f.kind)
    if f.source is not None:
        conds.append(Event.source == f.source)
    if f.body:
        conds.extend(text_search.body_conditions(f.body, fts=fts))
    if f.timestamp_gte is not None:
        conds.append(Event.seq >= _first_seq_at_or_after(conversation_id, f.timestamp_gte))
    if f.timestamp_lt is not None:
        upper = func.coalesce(
            _first_seq_at_or_after(conversation_id, f.timestamp_lt), literal(_NO_UPPER_BOUND)
        )
        conds.append(Event.seq < upper)
    return conds


async def search(
    session: AsyncSession,
    conversation_id: uuid.UUID,
    f: EventFilter,
    *,
    after_seq: int | None,
    descending: bool,
    limit: int,
    fts: bool = False,
    until_seq: int | None = None,
) -> Sequence[Row[Any]]:
    """Matching rows in seq order after `after_seq`, and up to `until_seq` when given."""
    conds = filter_conditions(conversation_id, f, fts=fts)
    if after_seq is not None:
        conds.append(Event.seq < after_seq if descending else Event.seq > after_seq)
    if until_seq is not None:
        conds.append(Event.seq >= until_seq if descending else Event.seq <= until_seq)
    stmt = (
        select(*ROW_COLUMNS)
        .where(and_(*conds))
        .order_by(Event.seq.desc() if descending else Event.seq)
        .limit(limit)
    )
    return (await session.execute(stmt)).all()


async def count(
    session: AsyncSession, conversation_id: uuid.UUID, f: EventFilter, *, fts: bool = False
) -> int:
    conds = filter_conditions(conversation_id, f, fts=fts)
    stmt = select(func.count()).select_from(Event).where(*conds)
    return int((await session.execute(stmt)).scalar_one())


async def get_by_ids(
    session: AsyncSession, conversation_id: uuid.UUID, event_ids: Sequence[str]
) -> Sequence[Row[Any]]:
    stmt = select(*ROW_COLUMNS).where(
        Event.conversation_id == conversation_id, Event.id.in_(list(event_ids))
    )
    return (await session.execute(stmt)).all()


async def conversation_exists(session: AsyncSession, conversation_id: uuid.UUID) -> bool:
    return await last_seq(session, conversation_id) is not None


def last_seq_statement(conversation_id: Any) -> Select[Any]:
    return select(CONVERSATIONS.c.last_seq).where(CONVERSATIONS.c.id == conversation_id)


async def last_seq(session: AsyncSession, conversation_id: uuid.UUID) -> int | None:
    """The conversation's last_seq, or None when there is no such conversation."""
    last: int | None = (await session.execute(last_seq_statement(conversation_id))).scalar()
    return last


def reserve_statement(
    dialect: str,
    conversation_id: Any,
    n: Any,
    now: Any,
    extra: dict[str, Any] | None = None,
) -> Update:
    """The seq reservation: one UPDATE ... RETURNING (new last_seq, the events' timestamp)
    under the conversation's row lock. Values may be bind parameters (the runner's fenced
    append compiles it once). On Postgres it also notifies the streams, delivered only if the
    transaction commits (see db.notify)."""
    table = CONVERSATIONS.c
    if not isinstance(now, ColumnElement):
        now = literal(now, UTCDateTime())
    # The previous event's time if the clock stepped back: time order and seq order agree.
    stamp = case((table.last_event_at > now, table.last_event_at), else_=now)
    stmt = (
        update(CONVERSATIONS)
        .where(table.id == conversation_id)
        .values(
            last_seq=table.last_seq + n,
            version=table.version + 1,
            updated_at=now,
            last_event_at=stamp,
            **(extra or {}),
        )
        .returning(table.last_seq, table.last_event_at)
    )
    if dialect == "postgresql":
        note = func.cast(table.id, String) + literal(":") + func.cast(table.last_seq, String)
        stmt = stmt.returning(func.pg_notify(EVENTS_CHANNEL, note))
    return stmt


async def reserve_seqs(
    session: AsyncSession,
    conversation_id: uuid.UUID,
    n: int,
    now: datetime,
    extra: dict[str, Any] | None = None,
) -> tuple[int, datetime] | None:
    """Take n seqs under the conversation's row lock: (new last_seq, the events' timestamp),
    or None for an unknown conversation.

    One UPDATE ... RETURNING holds the row lock until commit, so concurrent appends to one
    conversation are serialized and gapless on both databases.
    """
    stmt = reserve_statement(dialect_name(session), conversation_id, n, now, extra)
    row = (await session.execute(stmt)).first()
    return None if row is None else (int(row[0]), row[1] or now)


def count_upsert(dialect: str) -> Insert:
    """Add to the per-(kind, source) tallies that answer unfiltered counts."""
    return upsert_add(dialect, EVENT_COUNTS, ["conversation_id", "kind", "source"], "count")


def tally(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """event_counts rows for new event rows: one per (conversation, kind, source)."""
    counts = Counter((row["conversation_id"], row["kind"], row["source"]) for row in rows)
    return [
        {"conversation_id": cid, "kind": kind, "source": source, "count": n}
        for (cid, kind, source), n in counts.items()
    ]


async def insert_rows(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    await session.execute(insert(EVENTS), rows)
    await session.execute(count_upsert(dialect_name(session)), tally(rows))


def counts_only(f: EventFilter) -> bool:
    """True when the filter names at most a kind and a source: event_counts can answer it."""
    return f.body is None and f.timestamp_gte is None and f.timestamp_lt is None


async def count_from_tally(
    session: AsyncSession, conversation_id: uuid.UUID, f: EventFilter
) -> int:
    stmt = select(func.coalesce(func.sum(EventCount.count), 0)).where(
        EventCount.conversation_id == conversation_id
    )
    if f.kind is not None:
        stmt = stmt.where(EventCount.kind == f.kind)
    if f.source is not None:
        stmt = stmt.where(EventCount.source == f.source)
    return int((await session.execute(stmt)).scalar_one())


async def read_after(
    session: AsyncSession,
    conversation_id: uuid.UUID,
    after_seq: int,
    *,
    kinds: Sequence[str] | None = None,
    source: str | None = None,
    limit: int | None = None,
) -> Sequence[Row[Any]]:
    """Events after a seq, in order (a seek on the primary key or the kind/source index)."""
    stmt = select(*ROW_COLUMNS).where(
        Event.conversation_id == conversation_id, Event.seq > after_seq
    )
    if kinds is not None:
        stmt = stmt.where(Event.kind.in_(list(kinds)))
    if source is not None:
        stmt = stmt.where(Event.source == source)
    stmt = stmt.order_by(Event.seq)
    if limit is not None:
        stmt = stmt.limit(limit)
    return (await session.execute(stmt)).all()


async def ids_present(
    session: AsyncSession, conversation_id: uuid.UUID, ids: Sequence[str]
) -> set[str]:
    """Which of `ids` the conversation's events already use."""
    stmt = select(EVENTS.c.id).where(
        EVENTS.c.conversation_id == conversation_id, EVENTS.c.id.in_(ids)
    )
    return {row[0] for row in await session.execute(stmt)}
