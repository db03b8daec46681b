"""Fork queries: a conversation's rows copied in SQL, `INSERT ... SELECT` per table.

Every statement is generated from the `Table` objects: each column is copied as it is unless
the fork names a replacement for it, so a column added to a model is copied by the next
fork without a change here. The number of statements is the same whatever the number of
events. Tables keyed by conversation and what a fork does with them:

- conversations: one row, copied with the replacements the service names.
- events: copied with their seq and their SDK `id` (unique per conversation only:
  `uq_events_conversation_id_id`). SQLite's FTS5 table over search_text follows through its
  insert trigger and Postgres's trigram index by itself, so neither needs a statement.
- event_counts: copied; after a cut, each count is recounted over the fork's events.
- llm_calls: copied only when the service asks (metrics kept), with new ids (the primary key
  is global) and no run.
- runs: never copied (nor, with them, leases and queued runs).
"""

import uuid
from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Table,
    Uuid,
    case,
    func,
    insert,
    literal,
    null,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.functions import FunctionElement

from app.db.dialect import insert_ignore_conflict
from app.models import Conversation, Event, EventCount, ExecutionStatus, LLMCall

CONVERSATIONS = cast(Table, Conversation.__table__)
EVENTS = cast(Table, Event.__table__)
EVENT_COUNTS = cast(Table, EventCount.__table__)
LLM_CALLS = cast(Table, LLMCall.__table__)
# The column that ties a row of the tables above to its conversation.
KEY = "conversation_id"


class NewUuid(FunctionElement[uuid.UUID]):
    """A random version-4 UUID made by the database, a new one per row."""

    type = Uuid()
    inherit_cache = True


@compiles(NewUuid, "postgresql")
def _new_uuid_postgresql(element: NewUuid, compiler: SQLCompiler, **kw: Any) -> str:
    return "gen_random_uuid()"  # core since Postgres 13


@compiles(NewUuid, "sqlite")
def _new_uuid_sqlite(element: NewUuid, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLAlchemy stores a Uuid on SQLite as 32 lowercase hex digits without dashes; the
    # version nibble is 4 and the variant nibble one of 8, 9, a, b.
    return (
        "lower(hex(randomblob(4)) || hex(randomblob(2)) || '4' || substr(hex(randomblob(2)), 2)"
        " || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2)"
        " || hex(randomblob(6)))"
    )


def value(table: Table, column: str, given: Any) -> ColumnElement[Any]:
    """A bound value for one column of `table`, typed as that column."""
    return literal(given, table.c[column].type)


def _copy(
    table: Table,
    replace: Mapping[str, ColumnElement[Any]],
    where: list[ColumnElement[bool]],
    *,
    source: FromClause | None = None,
    into: Insert | None = None,
) -> Insert:
    """INSERT INTO table (every column) SELECT every column, or its replacement, FROM
    `source` (the table itself unless an alias of it is given) WHERE `where`."""
    unknown = set(replace) - set(table.c.keys())
    if unknown:
        raise ValueError(f"{table.name} has no columns {sorted(unknown)}")
    rows_of = table if source is None else source
    columns = [replace.get(c.key, rows_of.c[c.key]).label(c.key) for c in table.c]
    rows = select(*columns).where(*where)
    return (insert(table) if into is None else into).from_select(list(table.c.keys()), rows)


async def lock_source(
    session: AsyncSession, source_id: uuid.UUID, from_event_id: str | None
) -> tuple[bool, int | None]:
    """(the source exists, the seq of `from_event_id` in it or None).

    Postgres: FOR SHARE on the source row, held until commit. Appends reserve their seqs
    with an UPDATE of that row, so none commits between this and the copies: every
    statement of the fork sees the same events, counts and last_seq. SQLite: the write
    transaction (BEGIN IMMEDIATE) already excludes every other writer.
    """
    c = CONVERSATIONS.c
    cut = (
        select(EVENTS.c.seq)
        .where(EVENTS.c[KEY] == source_id, EVENTS.c.id == from_event_id)
        .scalar_subquery()
    )
    stmt = select(c.id, cut if from_event_id is not None else null()).where(c.id == source_id)
    row = (await session.execute(stmt.with_for_update(read=True, of=CONVERSATIONS))).first()
    if row is None:
        return False, None
    return True, None if row[1] is None else int(row[1])


async def copy_conversation(
    session: AsyncSession,
    source_id: uuid.UUID,
    fork_id: uuid.UUID,
    replace: Mapping[str, Any],
    cut_event_id: str | None,
) -> bool:
    """Insert the fork's row from the source's, `replace` holding new column values; with a
    cut, last_seq and last_event_at are those of the cut event (timestamps never decrease
    along seq). False when a conversation with fork_id exists."""
    c = CONVERSATIONS.c
    columns = {name: value(CONVERSATIONS, name, v) for name, v in replace.items()}
    columns["id"] = value(CONVERSATIONS, "id", fork_id)
    if cut_event_id is None:
        # A conversation waiting for confirmation forks waiting on the same actions: idle,
        # its next run would run them unasked.
        waiting = ExecutionStatus.WAITING_FOR_CONFIRMATION.value
        columns["execution_status"] = case(
            (c.execution_status == waiting, value(CONVERSATIONS, "execution_status", waiting)),
            else_=columns["execution_status"],
        )
    else:
        cut = [EVENTS.c[KEY] == source_id, EVENTS.c.id == cut_event_id]
        columns["last_seq"] = select(EVENTS.c.seq).where(*cut).scalar_subquery()
        columns["last_event_at"] = select(EVENTS.c.timestamp).where(*cut).scalar_subquery()
    into = insert_ignore_conflict(session, CONVERSATIONS, ["id"])
    stmt = _copy(CONVERSATIONS, columns, [c.id == source_id], into=into)
    return (await session.execute(stmt.returning(c.id))).first() is not None


async def copy_events(
    session: AsyncSession, source_id: uuid.UUID, fork_id: uuid.UUID, until_seq: int | None
) -> None:
    """The source's events (up to until_seq when given) under the fork's id."""
    where = [EVENTS.c[KEY] == source_id]
    if until_seq is not None:
        where.append(EVENTS.c.seq <= until_seq)
    await session.execute(_copy(EVENTS, {KEY: value(EVENTS, KEY, fork_id)}, where))


async def copy_event_counts(
    session: AsyncSession, source_id: uuid.UUID, fork_id: uuid.UUID, *, recount: bool
) -> None:
    """The source's counts under the fork's id. `recount` (after a cut): each count is
    counted again over the fork's events (already copied), and kinds left without events
    get no row."""
    counts = EVENT_COUNTS.alias("source_counts")
    replace: dict[str, ColumnElement[Any]] = {KEY: value(EVENT_COUNTS, KEY, fork_id)}
    where = [counts.c[KEY] == source_id]
    if recount:
        same_key = [
            EVENTS.c[column.key] == counts.c[column.key]
            for column in EVENT_COUNTS.primary_key.columns
            if column.key != KEY
        ]
        recounted = (
            select(func.count())
            .select_from(EVENTS)
            .where(EVENTS.c[KEY] == fork_id, *same_key)
            .scalar_subquery()
        )
        replace["count"] = recounted
        where.append(recounted > 0)
    await session.execute(_copy(EVENT_COUNTS, replace, where, source=counts))


async def copy_llm_calls(session: AsyncSession, source_id: uuid.UUID, fork_id: uuid.UUID) -> None:
    """The source's LLM calls under the fork's id, each with a new id and no run (the runs
    are not copied; keeping theirs would let deleting the source delete these rows)."""
    replace = {
        "id": NewUuid(),
        KEY: value(LLM_CALLS, KEY, fork_id),
        "run_id": value(LLM_CALLS, "run_id", None),
    }
    await session.execute(_copy(LLM_CALLS, replace, [LLM_CALLS.c[KEY] == source_id]))
