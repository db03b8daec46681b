"""The runner's hot write: a fenced append in one trip to the database.

A running agent writes events twice per tool step (the action, then its observation). Through
the ORM session each of those transactions costs about ten round trips (and on SQLite about
forty hops to aiosqlite's thread), several milliseconds that grow without bound once the event
loop is busy. This module does the same write in one trip:

- Postgres: one statement, data-modifying CTEs, sent on a pooled connection in autocommit:
  the fence (UPDATE of the run row, so it stays locked against the sweeper), the seq
  reservation (UPDATE of the conversation row, its row lock serializes appends), the events,
  the event_counts upsert and the llm_calls rows. A data-modifying CTE always runs exactly
  once, and every part after the fence reads its output, so a lost lease writes nothing.
- SQLite: one hop to a dedicated writer thread with its own sqlite3 connection, which runs
  BEGIN IMMEDIATE ... COMMIT there; in-process writers still queue on the database's write
  lock, so there is one writer at a time. Values are bound with the SQLAlchemy column types'
  own processors, so rows are stored exactly as the ORM path stores them.

It writes the same rows as `Runner._fenced` + `events_service.append` (tests compare them).
"""

import asyncio
import logging
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

import asyncpg  # type: ignore[import-untyped]
import orjson
from sqlalchemy import FromClause
from sqlalchemy.engine import Dialect

from app.db.engine import asyncpg_connect_args
from app.db.session import Database
from app.models import Conversation, Event, EventCount, LLMCall, Run, RunStatus
from app.runs.repository import Lease

logger = logging.getLogger(__name__)
RUNNING = RunStatus.RUNNING.value


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


@dataclass
class Append:
    """One fenced write: events (each a dict of id, kind, source, search_text, payload), LLM
    call rows, and run/conversation values carried along."""

    lease: Lease
    now: datetime
    iterations: int
    events: list[dict[str, Any]]
    step_db_ms: list[list[float]] | None = None
    stats: dict[str, Any] | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)

    def tally(self) -> list[tuple[str, str, int]]:
        counts = Counter((event["kind"], event["source"]) for event in self.events)
        return [(kind, source, n) for (kind, source), n in counts.items()]


class Written(NamedTuple):
    last_seq: int
    timestamp: datetime  # the events'
    db_ms: float  # time the database spent on it (not the waits for a turn)


class Seen(NamedTuple):
    last_seq: int | None  # None: no such conversation
    db_ms: float


class HotWriter(Protocol):
    async def append(self, job: Append) -> Written | None:
        """None when the lease is no longer held (nothing was written)."""

    async def last_seq(self, conversation_id: uuid.UUID) -> Seen: ...

    async def open(self) -> None:
        """Connect ahead of the first run (a failure is logged; the first write retries)."""

    async def close(self) -> None: ...


def hot_writer(db: Database, max_connections: int) -> HotWriter:
    """SQLite: one writer thread. Postgres: up to `max_connections` connections."""
    if db.is_sqlite:
        return SQLiteHotWriter(db)
    return PostgresHotWriter(db, max_connections)


# ---- Postgres ------------------------------------------------------------------------------

PG_APPEND = """
WITH fence AS (
    UPDATE runs SET iterations = $3, step_db_ms = COALESCE($4::jsonb, step_db_ms)
    WHERE id = $1 AND status = 'running' AND lease_epoch = $2 AND lease_expires_at > $5
    RETURNING id
), conv AS (
    UPDATE conversations
    SET last_seq = last_seq + $7, version = version + 1, updated_at = $5,
        last_event_at = GREATEST(last_event_at, $5), stats = COALESCE($8::jsonb, stats)
    WHERE id = $6 AND EXISTS (SELECT 1 FROM fence)
    RETURNING last_seq, last_event_at
), new_events AS (
    INSERT INTO events (conversation_id, seq, id, "timestamp", kind, source, search_text, payload)
    SELECT $6, conv.last_seq - $7 + e.ord, e.id, conv.last_event_at, e.kind, e.source,
           e.search_text, e.payload::jsonb
    FROM conv, unnest($9::text[], $10::text[], $11::text[], $12::text[], $13::text[])
         WITH ORDINALITY AS e(id, kind, source, search_text, payload, ord)
), counts AS (
    INSERT INTO event_counts (conversation_id, kind, source, count)
    SELECT $6, c.kind, c.source, c.n
    FROM conv, unnest($14::text[], $15::text[], $16::bigint[]) AS c(kind, source, n)
    ON CONFLICT (conversation_id, kind, source)
    DO UPDATE SET count = event_counts.count + excluded.count
), calls AS (
    INSERT INTO llm_calls (id, conversation_id, run_id, model, prompt_tokens,
                           completion_tokens, cost_usd, latency_ms, error, created_at)
    SELECT l.id, $6, $1, l.model, l.prompt_tokens, l.completion_tokens, l.cost_usd,
           l.latency_ms, l.error, $5
    FROM conv, unnest($17::uuid[], $18::text[], $19::int[], $20::int[], $21::float8[],
                      $22::float8[], $23::text[])
         AS l(id, model, prompt_tokens, completion_tokens, cost_usd, latency_ms, error)
)
SELECT last_seq, last_event_at, pg_notify('agent_events', $6::text || ':' || last_seq),
       extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000
FROM conv
"""

PG_LAST_SEQ = (
    "SELECT last_seq, extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000"
    " FROM conversations WHERE id = $1"
)


async def _prepare(conn: Any) -> None:
    """Plan the statements once per connection, up front: both run against ids that match
    nothing, so they change nothing (asyncpg keeps the prepared statements by their text)."""
    nobody = uuid.uuid4()
    await conn.fetchrow(PG_LAST_SEQ, nobody)
    await conn.fetchrow(PG_APPEND, nobody, 0, 0, None, datetime.now(UTC), nobody, 0, None,
                        *([[]] * 15))  # fmt: skip


class PostgresHotWriter:
    """Statements sent straight through asyncpg on a small pool of its own: no ORM, no
    pre-ping, one round trip per call. A broken connection is dropped by the pool."""

    def __init__(self, db: Database, max_connections: int) -> None:
        self.db = db
        self.max_connections = max_connections
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def _open(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                args, kwargs = asyncpg_connect_args(self.db.engine)
                # Two connections up front (more as runs need them, each prepared as it opens):
                # idle processes must not eat into the server's max_connections.
                self._pool = await asyncpg.create_pool(
                    *args,
                    min_size=min(2, self.max_connections),
                    max_size=self.max_connections,
                    init=_prepare,
                    **kwargs,
                )
            return self._pool

    async def open(self) -> None:
        try:
            await self._open()
        except Exception as exc:
            logger.warning("runner connections not opened yet (%s); the first write retries", exc)

    async def _fetchrow(self, sql: str, *args: Any) -> Any:
        pool = self._pool or await self._open()
        return await pool.fetchrow(sql, *args)

    async def append(self, job: Append) -> Written | None:
        """db_ms: the statement's time in the server (clock_timestamp - statement_timestamp)."""
        events, calls, tally = job.events, job.calls, job.tally()
        row = await self._fetchrow(
            PG_APPEND,
            job.lease.run_id,
            job.lease.epoch,
            job.iterations,
            None if job.step_db_ms is None else _json(job.step_db_ms),
            job.now,
            job.lease.conversation_id,
            len(events),
            None if job.stats is None else _json(job.stats),
            [e["id"] for e in events],
            [e["kind"] for e in events],
            [e["source"] for e in events],
            [e["search_text"] for e in events],
            [_json(e["payload"]) for e in events],
            [t[0] for t in tally],
            [t[1] for t in tally],
            [t[2] for t in tally],
            [c["id"] for c in calls],
            [c["model"] for c in calls],
            [c["prompt_tokens"] for c in calls],
            [c["completion_tokens"] for c in calls],
            [c["cost_usd"] for c in calls],
            [c["latency_ms"] for c in calls],
            [c["error"] for c in calls],
        )
        if row is None:
            return None
        self.db.announce({job.lease.conversation_id: int(row[0])})
        return Written(int(row[0]), row[1].astimezone(UTC), float(row[3]))

    async def last_seq(self, conversation_id: uuid.UUID) -> Seen:
        row = await self._fetchrow(PG_LAST_SEQ, conversation_id)
        return Seen(None, 0.0) if row is None else Seen(int(row[0]), float(row[1]))

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


# ---- SQLite --------------------------------------------------------------------------------


def _binder(
    table: FromClause, dialect: Dialect, names: list[str]
) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """Bind a row's values as SQLAlchemy would for these columns of `table`."""
    processors = [
        (name, table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in names
    ]

    def bind(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(
            row[name] if proc is None or row[name] is None else proc(row[name])
            for name, proc in processors
        )

    return bind


EVENT_COLUMNS = [
    "conversation_id",
    "seq",
    "id",
    "timestamp",
    "kind",
    "source",
    "search_text",
    "payload",
]
COUNT_COLUMNS = ["conversation_id", "kind", "source", "count"]
CALL_COLUMNS = [
    "id", "conversation_id", "run_id", "model", "prompt_tokens", "completion_tokens",
    "cost_usd", "latency_ms", "error", "created_at",
]  # fmt: skip


def _processor(proc: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    return (lambda value: value) if proc is None else proc


def _placeholders(columns: list[str]) -> str:
    return ", ".join("?" for _ in columns)


SQLITE_FENCE = (
    "UPDATE runs SET iterations = ?, step_db_ms = COALESCE(?, step_db_ms) "
    "WHERE id = ? AND status = ? AND lease_epoch = ? AND lease_expires_at > ? RETURNING id"
)
SQLITE_RESERVE = (
    "UPDATE conversations SET last_seq = last_seq + ?, version = version + 1, updated_at = ?, "
    "last_event_at = CASE WHEN last_event_at > ? THEN last_event_at ELSE ? END, "
    "stats = COALESCE(?, stats) WHERE id = ? RETURNING last_seq, last_event_at"
)
_QUOTED_EVENT_COLUMNS = ", ".join('"' + c + '"' for c in EVENT_COLUMNS)  # "timestamp"
SQLITE_EVENTS = (
    f"INSERT INTO events ({_QUOTED_EVENT_COLUMNS}) VALUES ({_placeholders(EVENT_COLUMNS)})"
)
SQLITE_COUNTS = (
    f"INSERT INTO event_counts ({', '.join(COUNT_COLUMNS)}) "
    f"VALUES ({_placeholders(COUNT_COLUMNS)}) "
    "ON CONFLICT (conversation_id, kind, source) DO UPDATE SET count = count + excluded.count"
)
SQLITE_CALLS = (
    f"INSERT INTO llm_calls ({', '.join(CALL_COLUMNS)}) VALUES ({_placeholders(CALL_COLUMNS)})"
)
SQLITE_LAST_SEQ = "SELECT last_seq FROM conversations WHERE id = ?"


class SQLiteHotWriter:
    def __init__(self, db: Database) -> None:
        self.db = db
        dialect = db.engine.dialect
        self._path = db.engine.url.database or ""
        if self._path in ("", ":memory:"):
            raise ValueError("the runner needs a SQLite database file, not an in-memory one")
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._conn: sqlite3.Connection | None = None
        self._queue: list[tuple[Append, asyncio.Future[Written | None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._busy_ms = db.sqlite_busy_timeout_ms
        run, conv = Run.__table__, Conversation.__table__
        self._uuid = _processor(run.c.id.type.dialect_impl(dialect).bind_processor(dialect))
        self._time = _processor(
            run.c.lease_expires_at.type.dialect_impl(dialect).bind_processor(dialect)
        )
        self._json = _processor(conv.c.stats.type.dialect_impl(dialect).bind_processor(dialect))
        self._event = _binder(Event.__table__, dialect, EVENT_COLUMNS)
        self._count = _binder(EventCount.__table__, dialect, COUNT_COLUMNS)
        self._call = _binder(LLMCall.__table__, dialect, CALL_COLUMNS)
        self._result_time = _processor(
            conv.c.last_event_at.type.dialect_impl(dialect).result_processor(dialect, None)
        )

    async def open(self) -> None:
        await self._call_in_thread(self._connection)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, timeout=self._busy_ms / 1000)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_ms)}")
            self._conn = conn
        return self._conn

    async def _call_in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def append(self, job: Append) -> Written | None:
        future: asyncio.Future[Written | None] = asyncio.get_running_loop().create_future()
        self._queue.append((job, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="sqlite-group-commit")
        return await future

    async def _flush(self) -> None:
        """Group commit: whatever queued while the last batch was in the thread goes in the
        next one, so a busy event loop costs one hand-off per batch, not one per write."""
        lock = self.db.write_lock
        assert lock is not None
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                async with lock:
                    results = await self._call_in_thread(self._append_batch, [j for j, _ in batch])
            except BaseException as exc:  # the batch never ran (or the loop is closing)
                results = [exc] * len(batch)
                if isinstance(exc, asyncio.CancelledError):
                    for _, future in batch:
                        future.cancel()
                    raise
            self.db.announce(
                {
                    job.lease.conversation_id: result.last_seq
                    for (job, _), result in zip(batch, results, strict=True)
                    if isinstance(result, Written)
                }
            )
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _append_batch(self, jobs: list[Append]) -> list[Any]:
        """One transaction; each job in its own savepoint, so one failing job (its error is
        its result) does not undo the others. A job's db_ms is the CPU time this thread spent
        on its statements plus an equal share of BEGIN and COMMIT: the database's work, not
        the waits for the GIL or the CPU, which the runner's wall time shows."""
        conn = self._connection()
        results: list[Any] = []
        started = time.thread_time()
        conn.execute("BEGIN IMMEDIATE")
        shared = time.thread_time() - started
        try:
            for job in jobs:
                job_started = time.thread_time()
                conn.execute("SAVEPOINT job")
                try:
                    done = self._append(conn, job)
                    conn.execute("RELEASE job")
                    results.append((done, time.thread_time() - job_started))
                except Exception as exc:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    results.append(exc)
            commit_started = time.thread_time()
            conn.execute("COMMIT")
            shared += time.thread_time() - commit_started
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        share = shared / len(jobs)
        written: list[Any] = []
        for result in results:
            if isinstance(result, Exception) or result[0] is None:
                written.append(result if isinstance(result, Exception) else None)
            else:
                (last_seq, stamp), seconds = result
                written.append(Written(last_seq, stamp, (seconds + share) * 1000))
        return written

    def _append(self, conn: sqlite3.Connection, job: Append) -> tuple[int, datetime] | None:
        lease, now = job.lease, self._time(job.now)
        fence_args = (
            job.iterations,
            None if job.step_db_ms is None else self._json(job.step_db_ms),
            self._uuid(lease.run_id),
            RUNNING,
            lease.epoch,
            now,
        )
        if conn.execute(SQLITE_FENCE, fence_args).fetchone() is None:
            return None
        cid = lease.conversation_id
        n = len(job.events)
        stats = None if job.stats is None else self._json(job.stats)
        row = conn.execute(SQLITE_RESERVE, (n, now, now, now, stats, self._uuid(cid))).fetchone()
        if row is None:
            return None
        last_seq = int(row[0])
        stamp: datetime = self._result_time(row[1])
        first = last_seq - n + 1
        conn.executemany(
            SQLITE_EVENTS,
            [
                self._event({**e, "conversation_id": cid, "seq": first + i, "timestamp": stamp})
                for i, e in enumerate(job.events)
            ],
        )
        conn.executemany(
            SQLITE_COUNTS,
            [
                self._count({"conversation_id": cid, "kind": k, "source": s, "count": c})
                for k, s, c in job.tally()
            ],
        )
        if job.calls:
            extra = {"conversation_id": cid, "run_id": lease.run_id, "created_at": job.now}
            conn.executemany(SQLITE_CALLS, [self._call({**c, **extra}) for c in job.calls])
        return last_seq, stamp.astimezone(UTC)

    async def last_seq(self, conversation_id: uuid.UUID) -> Seen:
        result: Seen = await self._call_in_thread(self._last_seq, conversation_id)
        return result

    def _last_seq(self, conversation_id: uuid.UUID) -> Seen:
        started = time.thread_time()
        row = self._connection().execute(SQLITE_LAST_SEQ, (self._uuid(conversation_id),)).fetchone()
        db_ms = (time.thread_time() - started) * 1000
        return Seen(None if row is None else int(row[0]), db_ms)

    async def close(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            await asyncio.wait([self._flusher], timeout=5)

        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self._call_in_thread(close)
        self._pool.shutdown(wait=False)
