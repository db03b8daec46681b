"""The runner's fenced append: a step's events, its LLM calls and the run's counters written
in one trip to the database, only while the run's lease is held.

The statements are the repositories' own (the fence, the seq reservation, the event, tally
and llm_calls inserts), built from the `Table` objects with bind parameters and compiled
once (see db.prepared); only the way they are sent differs from the ORM session's:

- Postgres: one statement of data-modifying CTEs on a small asyncpg pool of its own, in
  autocommit. Every part after the fence reads its output, and a data-modifying CTE runs
  exactly once, so a lost lease writes nothing.
- SQLite: one hop to a dedicated writer thread with its own sqlite3 connection, which runs
  BEGIN IMMEDIATE ... COMMIT there; in-process writers still queue on the database's write
  lock. Appends queued meanwhile go in the same transaction (group commit), each in its own
  savepoint.

Both write the same rows as the ORM path (tests/runs/test_fenced_append.py compares them).
"""

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol, cast

from sqlalchemy import (
    BigInteger,
    Integer,
    Table,
    Uuid,
    bindparam,
    column,
    exists,
    func,
    insert,
    literal_column,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.elements import BindParameter

from app.db.prepared import Prepared
from app.db.types import JSONType, UTCDateTime
from app.events.repository import CONVERSATIONS, EVENTS, count_upsert, reserve_statement, tally
from app.models import EventCount
from app.runs.repository import LLM_CALLS, Lease, fence_statement
from app.runs.usage import placed

EVENT_COUNTS = cast(Table, EventCount.__table__)


@dataclass
class FencedAppend:
    """One fenced write: event rows (events.service.event_row), llm_calls rows
    (usage.call_row), and the run's and conversation's counters carried along."""

    lease: Lease
    now: datetime
    iterations: int
    events: list[dict[str, Any]]
    stats: dict[str, Any] | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)

    def values(self) -> dict[str, Any]:
        """The binds of the fence and the reservation."""
        return {
            "run_id": self.lease.run_id,
            "epoch": self.lease.epoch,
            "now": self.now,
            "iterations": self.iterations,
            "conversation_id": self.lease.conversation_id,
            "n": len(self.events),
            "stats": self.stats,
        }

    def event_rows(self, last_seq: int, stamp: datetime) -> list[dict[str, Any]]:
        first = last_seq - len(self.events) + 1
        cid = self.lease.conversation_id
        return [
            {**row, "conversation_id": cid, "seq": first + i, "timestamp": stamp}
            for i, row in enumerate(self.events)
        ]

    def call_rows(self) -> list[dict[str, Any]]:
        return placed(self.calls, self.lease, self.now)

    def counts(self) -> list[dict[str, Any]]:
        cid = self.lease.conversation_id
        return tally([{**row, "conversation_id": cid} for row in self.events])


class Appended(NamedTuple):
    last_seq: int
    timestamp: datetime  # the events'
    db_ms: float  # time the database spent on it (not the waits for a turn)


class Seen(NamedTuple):
    last_seq: int | None  # None: no such conversation
    db_ms: float


class Appender(Protocol):
    async def append(self, job: FencedAppend) -> Appended | None:
        """None when the lease is no longer held (nothing was written)."""

    async def last_seq(self, conversation_id: uuid.UUID) -> Seen: ...

    async def open(self) -> None:
        """Connect ahead of the first run (a failure is logged; the first write retries)."""

    async def close(self) -> None: ...


# ---- the statements, from the repositories' builders ----------------------------------------


def _bind(name: str, type_: Any) -> BindParameter[Any]:
    return bindparam(name, type_=type_)


def _reserve(dialect: Dialect) -> Any:
    stats = func.coalesce(_bind("stats", JSONType), CONVERSATIONS.c.stats)
    return reserve_statement(
        dialect.name,
        _bind("conversation_id", Uuid),
        _bind("n", Integer),
        _bind("now", UTCDateTime()),
        {"stats": stats},
    )


def _row_insert(statement: Any, table: Table) -> Any:
    return statement.values({c.name: _bind(c.name, c.type) for c in table.columns})


def _fence() -> Any:
    return fence_statement(
        _bind("run_id", Uuid),
        _bind("epoch", BigInteger),
        _bind("now", UTCDateTime()),
        _bind("iterations", Integer),
    )


def sqlite_statements(dialect: Dialect) -> dict[str, Prepared]:
    """The fence, the reservation, and the three executemany inserts."""
    statements: dict[str, ClauseElement] = {
        "fence": _fence(),
        "reserve": _reserve(dialect),
        "events": _row_insert(insert(EVENTS), EVENTS),
        "counts": _row_insert(count_upsert(dialect.name), EVENT_COUNTS),
        "calls": _row_insert(insert(LLM_CALLS), LLM_CALLS),
    }
    return {name: Prepared(stmt, dialect) for name, stmt in statements.items()}


def _unnest(prefix: str, table: Table, names: list[str], ordinality: bool = False) -> Any:
    """unnest($prefix_a::type[], ...) AS prefix_rows(a, ...): one array bind per column."""
    columns = [table.c[name] for name in names]
    arrays = [_bind(f"{prefix}_{c.name}", ARRAY(c.type)) for c in columns]
    valued = func.unnest(*arrays).table_valued(
        *[column(c.name, c.type) for c in columns],
        with_ordinality="ord" if ordinality else None,
    )
    return valued.render_derived(name=f"{prefix}_rows")


# Columns the append sets itself; every other column comes from the rows, in arrays.
_EVENT_OWN = ("conversation_id", "seq", "timestamp")
_CALL_OWN = ("conversation_id", "run_id", "created_at")


def postgres_statement(dialect: Dialect) -> Prepared:
    """The fence, the reservation (which notifies the streams) and the inserts as one
    statement of data-modifying CTEs; it returns the reservation's row and the time the
    statement took in the server."""
    conversation_id = _bind("conversation_id", Uuid)
    n = _bind("n", Integer)
    now = _bind("now", UTCDateTime())
    fenced = _fence().cte("fence")
    conv = _reserve(dialect).where(exists(select(fenced.c.id))).cte("conv")

    event_names = [c.name for c in EVENTS.columns if c.name not in _EVENT_OWN]
    ev = _unnest("events", EVENTS, event_names, ordinality=True)
    new_events = insert(EVENTS).from_select(
        [*_EVENT_OWN, *event_names],
        select(
            conversation_id,
            conv.c.last_seq - n + ev.c.ord,
            conv.c.last_event_at,
            *[ev.c[name] for name in event_names],
        ).select_from(conv.join(ev, true())),
    )
    count_names = [c.name for c in EVENT_COUNTS.columns if c.name != "conversation_id"]
    counted = _unnest("counts", EVENT_COUNTS, count_names)
    counts = count_upsert(dialect.name).from_select(
        ["conversation_id", *count_names],
        select(conversation_id, *[counted.c[name] for name in count_names]).select_from(
            conv.join(counted, true())
        ),
    )
    call_names = [c.name for c in LLM_CALLS.columns if c.name not in _CALL_OWN]
    called = _unnest("calls", LLM_CALLS, call_names)
    calls = insert(LLM_CALLS).from_select(
        [*_CALL_OWN, *call_names],
        select(
            conversation_id, _bind("run_id", Uuid), now, *[called.c[name] for name in call_names]
        ).select_from(conv.join(called, true())),
    )
    server_ms: Any = literal_column(
        "extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000"
    )
    statement = select(*conv.c, server_ms).add_cte(
        new_events.cte("new_events"), counts.cte("counts"), calls.cte("calls")
    )
    return Prepared(statement, dialect)


def postgres_values(job: FencedAppend) -> dict[str, Any]:
    """The binds of postgres_statement: the job's values and one array per column."""
    values = job.values()
    for prefix, rows, table, own in (
        ("events", job.events, EVENTS, _EVENT_OWN),
        ("calls", job.calls, LLM_CALLS, _CALL_OWN),
    ):
        for c in table.columns:
            if c.name not in own:
                values[f"{prefix}_{c.name}"] = [row[c.name] for row in rows]
    counts = job.counts()
    for name in ("kind", "source", "count"):
        values[f"counts_{name}"] = [row[name] for row in counts]
    return values
