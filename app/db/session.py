"""Sessions: one AsyncSession per request or per unit of background work.

Readers never take locks. Writers run short transactions; on SQLite, which admits one writer
at a time, writers of this process also queue on an asyncio lock before BEGIN IMMEDIATE, so
they wait their turn on the event loop instead of spinning in SQLite's busy handler (the
busy_timeout still covers writers in other processes).
"""

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    AsyncSessionTransaction,
    async_sessionmaker,
)

from app.config import Settings
from app.db.availability import CommitOutcomeUnknown, WriteBusy, connection_lost, sqlite_busy
from app.db.engine import SQLITE_BEGIN_OPTION, SQLITE_NO_BEGIN, create_engine
from app.metrics import (
    DB_POOL_IN_USE,
    DB_POOL_OVERFLOW,
    DB_POOL_WAITING,
    WRITE_GATE_WAIT_SECONDS,
    WRITE_GATE_WAITING,
    WRITE_GATE_WAITS,
)

logger = logging.getLogger(__name__)

# session.info key: {conversation id: last seq} appended in the session's transaction.
APPENDED = "appended_events"


class Database:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        sqlite_busy_timeout_ms: int = 10_000,
        max_concurrent_writes: int = 4,
        write_wait_seconds: float = 30.0,
    ) -> None:
        self.engine = engine
        self.sqlite_busy_timeout_ms = sqlite_busy_timeout_ms
        # The longest a write transaction waits for its turn before it answers 503.
        self.write_wait_seconds = write_wait_seconds
        # SQLite: how many times a writer of this process found the file locked past the busy
        # timeout. A writer that queued before such a failure gives up when its turn comes,
        # instead of waiting a whole busy timeout again behind the same holder.
        self._busy_failures = 0
        self.is_sqlite = engine.dialect.name == "sqlite"
        # Reads run without BEGIN and COMMIT (Postgres: autocommit; SQLite: no BEGIN, see
        # engine._setup_sqlite): no round trips around a read. Each statement sees its own
        # snapshot; no read here relies on one shared by several.
        read_engine = (
            engine.execution_options(**{SQLITE_BEGIN_OPTION: SQLITE_NO_BEGIN})
            if self.is_sqlite
            else engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self._read_factory = async_sessionmaker(read_engine, expire_on_commit=False)
        write_engine = (
            engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            if self.is_sqlite
            else engine
        )
        self._write_factory = async_sessionmaker(write_engine, expire_on_commit=False)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        # What a write transaction waits on before it takes a pooled connection. SQLite: the
        # write lock. Postgres: one of max_concurrent_writes slots, so a burst of writes
        # waits here holding no connection and never leaves a read without one.
        self._write_gate: asyncio.Lock | asyncio.Semaphore = self._write_lock or asyncio.Semaphore(
            max_concurrent_writes
        )
        # Called after a write transaction commits with {conversation id: last seq} of the
        # events it appended (see events.service.append): the live streams' wake-up.
        self.commit_listeners: list[Callable[[Mapping[uuid.UUID, int]], None]] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> "Database":
        return cls(
            create_engine(
                settings.database_url,
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_max_overflow,
                pool_timeout=settings.db_pool_timeout_seconds,
                sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
            ),
            sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
            max_concurrent_writes=settings.db_max_concurrent_writes,
            write_wait_seconds=settings.db_write_wait_seconds,
        )

    @classmethod
    def from_url(cls, url: str) -> "Database":
        return cls(create_engine(url))

    @property
    def write_lock(self) -> asyncio.Lock | None:
        """SQLite: the lock this process's writers queue on (None on Postgres)."""
        return self._write_lock

    @contextlib.asynccontextmanager
    async def session(self, *, write: bool) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        async with contextlib.AsyncExitStack() as stack:
            if write:
                await self._pass_write_gate(stack)
            factory = self._write_factory if write else self._read_factory
            session = await stack.enter_async_context(factory())
            transaction = await session.begin()
            try:
                yield session
            except BaseException as exc:
                if write and self.is_sqlite and sqlite_busy(exc):
                    self._busy_failures += 1
                await transaction.rollback()
                raise
            await _commit(transaction)
            appended = session.info.pop(APPENDED, None)
        if appended:
            self.announce(appended)

    async def _pass_write_gate(self, stack: contextlib.AsyncExitStack) -> None:
        """Take the write gate (released with `stack`); a writer that finds it taken is
        counted and its wait timed (the free gate costs one check)."""
        gate = self._write_gate
        if not gate.locked():
            await stack.enter_async_context(gate)
            return
        WRITE_GATE_WAITS.inc()
        started = time.perf_counter()
        failures = self._busy_failures
        try:
            with WRITE_GATE_WAITING.track_inprogress():
                async with asyncio.timeout(self.write_wait_seconds):
                    await stack.enter_async_context(gate)
        except TimeoutError:
            raise WriteBusy(
                f"no write slot became free within {self.write_wait_seconds:g} s"
            ) from None
        finally:
            WRITE_GATE_WAIT_SECONDS.observe(time.perf_counter() - started)
        if self._busy_failures != failures:
            raise WriteBusy("the database is locked by another process's writer")

    def publish_pool_gauges(self) -> None:
        """Set the pool gauges from the engine's pool now (a scrape, or the multiprocess
        sampler, calls this: the pool itself is never instrumented)."""
        pool: Any = self.engine.pool
        if not hasattr(pool, "checkedout"):  # a pool that keeps no connections
            return
        DB_POOL_IN_USE.set(pool.checkedout())
        DB_POOL_OVERFLOW.set(max(0, pool.overflow()))
        DB_POOL_WAITING.set(_pool_waiters(pool))

    def announce(self, appended: Mapping[uuid.UUID, int]) -> None:
        """Committed appends: tell the listeners (after commit, never before)."""
        for listener in list(self.commit_listeners):
            try:
                listener(appended)
            except Exception:
                logger.exception("commit listener failed")

    async def dispose(self) -> None:
        await self.engine.dispose()


async def _commit(transaction: AsyncSessionTransaction) -> None:
    """Commit; a connection lost during the COMMIT leaves its outcome unknown (the database
    may have committed and the answer been lost), which is said as such."""
    try:
        await transaction.commit()
    except Exception as exc:
        if connection_lost(exc):
            raise CommitOutcomeUnknown() from exc
        raise


def _pool_waiters(pool: Any) -> int:
    """Tasks waiting for a connection of an async queue pool: the waiters of the asyncio
    queue inside SQLAlchemy's AsyncAdaptedQueue (no public API tells); 0 if it has none."""
    queue = getattr(getattr(pool, "_pool", None), "__dict__", {}).get("_queue")
    getters = getattr(queue, "_getters", None) or ()
    return sum(not waiter.done() for waiter in getters)


async def database_dep(request: Request) -> Database:
    """As a dependency: async, so FastAPI calls it on the loop, not on a worker thread."""
    return get_database(request)


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def _read_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with get_database(request).session(write=False) as session:
        yield session


# request.state attribute: a write session opened for the request by its caller (see
# share_write_session); the route's WriteSessionDep then works in it.
_SHARED = "shared_write_session"


@contextlib.contextmanager
def share_write_session(request: Request, session: AsyncSession) -> Iterator[None]:
    """While inside, the request's WriteSessionDep is `session`, a transaction its caller
    opened and will end (the idempotency keys store a response in the route's transaction)."""
    setattr(request.state, _SHARED, session)
    try:
        yield
    finally:
        delattr(request.state, _SHARED)


async def _write_session(request: Request) -> AsyncIterator[AsyncSession]:
    shared: AsyncSession | None = getattr(request.state, _SHARED, None)
    if shared is not None:
        yield shared  # its caller commits or rolls back
        return
    async with get_database(request).session(write=True) as session:
        yield session


# scope="function": the transaction ends (commit or rollback) before the response is sent, so a
# failed commit can never answer 2xx.
ReadSessionDep = Annotated[AsyncSession, Depends(_read_session, scope="function")]
WriteSessionDep = Annotated[AsyncSession, Depends(_write_session, scope="function")]
DatabaseDep = Annotated[Database, Depends(database_dep)]
