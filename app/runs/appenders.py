"""Where the fenced append is sent: an asyncpg pool (Postgres) or a writer thread (SQLite).
The statements themselves are in runs.fenced_append."""

import asyncio
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson
from sqlalchemy import Uuid, bindparam

from app.clock import utcnow
from app.db.engine import asyncpg_connect_args
from app.db.prepared import Prepared
from app.db.session import Database
from app.events.repository import last_seq_statement
from app.runs.fenced_append import (
    Appended,
    Appender,
    FencedAppend,
    Seen,
    postgres_statement,
    postgres_values,
    sqlite_statements,
)
from app.runs.repository import Lease

logger = logging.getLogger(__name__)


def appender(db: Database, max_connections: int) -> Appender:
    """SQLite: one writer thread. Postgres: up to `max_connections` connections."""
    if db.is_sqlite:
        return SQLiteAppender(db)
    return PostgresAppender(db, max_connections)


def _last_seq_statement() -> Any:
    return last_seq_statement(bindparam("conversation_id", type_=Uuid))


# ---- Postgres ------------------------------------------------------------------------------


class PostgresAppender:
    """The statement sent straight through asyncpg on a small pool of its own: no ORM, no
    pre-ping, one round trip per call. A broken connection is dropped by the pool."""

    def __init__(self, db: Database, max_connections: int) -> None:
        self.db = db
        self.max_connections = max_connections
        dialect = db.engine.dialect
        self._append = postgres_statement(dialect)
        self._last_seq = Prepared(_last_seq_statement(), dialect)
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def _setup(self, conn: Any) -> None:
        """JSON as SQLAlchemy's asyncpg dialect sends it (serialized by the column type)."""
        for name in ("json", "jsonb"):
            await conn.set_type_codec(
                name, encoder=str, decoder=orjson.loads, schema="pg_catalog", format="text"
            )

    async def _prepare(self, conn: Any) -> None:
        """Plan the statements once per connection, up front: both run against ids that match
        nothing, so they change nothing (asyncpg keeps the prepared statements by text)."""
        nobody = uuid.uuid4()
        await conn.fetchrow(self._last_seq.sql, *self._last_seq.args({"conversation_id": nobody}))
        job = FencedAppend(lease=Lease(nobody, nobody, 0), now=utcnow(), iterations=0, events=[])
        await conn.fetchrow(self._append.sql, *self._append.args(postgres_values(job)))

    async def _open(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                args, kwargs = asyncpg_connect_args(self.db.engine)
                # Two connections up front (more as runs need them): idle processes must not
                # eat into the server's max_connections.
                self._pool = await asyncpg.create_pool(
                    *args,
                    min_size=min(2, self.max_connections),
                    max_size=self.max_connections,
                    init=self._init,
                    **kwargs,
                )
            return self._pool

    async def _init(self, conn: Any) -> None:
        await self._setup(conn)
        await self._prepare(conn)

    async def open(self) -> None:
        try:
            await self._open()
        except Exception as exc:
            logger.warning("runner connections not opened yet (%s); the first write retries", exc)

    async def _fetchrow(self, prepared: Prepared, values: dict[str, Any]) -> Any:
        pool = self._pool or await self._open()
        return prepared.row(await pool.fetchrow(prepared.sql, *prepared.args(values)))

    async def append(self, job: FencedAppend) -> Appended | None:
        """db_ms: the statement's time in the server (clock_timestamp - statement_timestamp)."""
        row = await self._fetchrow(self._append, postgres_values(job))
        if row is None:
            return None
        return Appended(int(row[0]), row[1].astimezone(UTC), float(row[-1]))

    async def last_seq(self, conversation_id: uuid.UUID) -> Seen:
        started = time.perf_counter()
        row = await self._fetchrow(self._last_seq, {"conversation_id": conversation_id})
        db_ms = (time.perf_counter() - started) * 1000
        return Seen(None if row is None else int(row[0]), db_ms)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


# ---- SQLite --------------------------------------------------------------------------------


class SQLiteAppender:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._path = db.engine.url.database or ""
        if self._path in ("", ":memory:"):
            raise ValueError("the runner needs a SQLite database file, not an in-memory one")
        self._statements = sqlite_statements(db.engine.dialect)
        self._last_seq_statement = Prepared(_last_seq_statement(), db.engine.dialect)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._conn: sqlite3.Connection | None = None
        self._queue: list[tuple[FencedAppend, asyncio.Future[Appended | None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._busy_ms = db.sqlite_busy_timeout_ms

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

    async def append(self, job: FencedAppend) -> Appended | None:
        future: asyncio.Future[Appended | None] = asyncio.get_running_loop().create_future()
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
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _append_batch(self, jobs: list[FencedAppend]) -> list[Any]:
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
                written.append(Appended(last_seq, stamp, (seconds + share) * 1000))
        return written

    def _append(self, conn: sqlite3.Connection, job: FencedAppend) -> tuple[int, datetime] | None:
        run = self._statements
        values = job.values()

        def one(name: str) -> tuple[Any, ...] | None:
            prepared = run[name]
            return prepared.row(conn.execute(prepared.sql, prepared.args(values)).fetchone())

        def many(name: str, rows: list[dict[str, Any]]) -> None:
            if rows:
                prepared = run[name]
                conn.executemany(prepared.sql, [prepared.args(row) for row in rows])

        if one("fence") is None:
            return None
        reserved = one("reserve")
        if reserved is None:
            return None
        last_seq, stamp = int(reserved[0]), reserved[1]
        many("events", job.event_rows(last_seq, stamp))
        many("counts", job.counts())
        many("calls", job.call_rows())
        return last_seq, stamp.astimezone(UTC)

    async def last_seq(self, conversation_id: uuid.UUID) -> Seen:
        result: Seen = await self._call_in_thread(self._read_last_seq, conversation_id)
        return result

    def _read_last_seq(self, conversation_id: uuid.UUID) -> Seen:
        started = time.thread_time()
        prepared = self._last_seq_statement
        args = prepared.args({"conversation_id": conversation_id})
        row = self._connection().execute(prepared.sql, args).fetchone()
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
