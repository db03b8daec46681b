"""Engine creation and per-dialect connection setup."""

from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from app.db import sqlite_driver

# Execution option that makes the SQLite begin hook emit BEGIN IMMEDIATE.
SQLITE_BEGIN_OPTION = "sqlite_begin"
# Its value for read sessions: no BEGIN at all (each statement is its own read transaction).
SQLITE_NO_BEGIN = "none"
# connection.info key: this SQLite connection is inside a BEGIN we emitted.
_TRANSACTION_OPEN = "sqlite_transaction_open"


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def is_sqlite_url(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 20,
    pool_timeout: float = 30.0,
    sqlite_busy_timeout_ms: int = 10_000,
) -> AsyncEngine:
    kwargs: dict[str, Any] = {
        "json_serializer": _json_dumps,
        "json_deserializer": orjson.loads,
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_timeout": pool_timeout,
        # Statement parameters hold user data and, before encryption, credentials: they stay
        # out of SQLAlchemy's log lines and error messages.
        "hide_parameters": True,
    }
    if is_sqlite_url(url):
        kwargs["connect_args"] = {"timeout": sqlite_busy_timeout_ms / 1000}
        # One thread hop per statement; raises UnsupportedDriverVersion on an untested
        # aiosqlite or SQLAlchemy, so the server stops at start rather than misbehave later.
        kwargs["module"] = sqlite_driver.dbapi()
        engine = create_async_engine(url, **kwargs)
        _setup_sqlite(engine, sqlite_busy_timeout_ms)
        return engine
    engine = create_async_engine(url, **kwargs)
    _setup_postgres(engine)
    return engine


def asyncpg_connect_args(engine: AsyncEngine) -> tuple[list[Any], dict[str, Any]]:
    """The arguments SQLAlchemy would pass to asyncpg.connect for this engine's URL, for the
    few connections made outside its pool (the LISTEN connection, the runner's pool)."""
    args, kwargs = engine.dialect.create_connect_args(engine.url)
    for sqlalchemy_only in ("prepared_statement_cache_size", "async_fallback"):
        kwargs.pop(sqlalchemy_only, None)
    return list(args), dict(kwargs)


def _setup_postgres(engine: AsyncEngine) -> None:
    """Skip pooled connections the server has closed, without a round trip.

    After a database restart (or pg_terminate_backend) every pooled connection is dead, and
    asyncpg has already seen its socket close. Checkout asks asyncpg (`is_closed()`, the check
    asyncpg's own pool makes); a closed one is discarded and the pool hands out another or
    connects anew. This replaces `pool_pre_ping`, which costs three round trips (BEGIN, `;`,
    ROLLBACK) on every checkout: on a busy event loop each trip is another wait in the queue.
    A connection that dies between this check and its first statement still fails that one
    request, and SQLAlchemy then invalidates the rest of the pool.
    """

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(_dbapi: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        driver = record.driver_connection
        if driver is None or driver.is_closed():
            raise exc.DisconnectionError("connection closed by the server")


def _setup_sqlite(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    """SQLAlchemy's documented recipe: the driver never begins; we emit BEGIN ourselves.

    Without it the sqlite3 driver skips BEGIN for SELECT and SAVEPOINT, so reads are not
    repeatable and savepoints do not nest. Write transactions use BEGIN IMMEDIATE so that a
    writer waits for the lock up front (busy_timeout) instead of failing on upgrade. Reads
    (SQLITE_BEGIN_OPTION = SQLITE_NO_BEGIN) emit no BEGIN: each statement reads its own
    snapshot, as Postgres reads do in autocommit.

    Every driver call is a hop to the connection's thread and back through the event loop, and
    on a busy loop each hop waits its turn. COMMIT and ROLLBACK of a connection that has no
    open transaction do nothing in the sqlite3 driver, so they are not sent: a transaction is
    open only from a BEGIN this hook emitted until a COMMIT or ROLLBACK succeeds (the driver
    never begins by itself, see above). That saves a read its COMMIT and the pool's
    ROLLBACK-on-return, and a write the latter. With no BEGIN either, and sqlite_driver's one
    trip per statement, an event search is 1 trip instead of 9.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")
        if mode == SQLITE_NO_BEGIN:
            return
        # Marked before BEGIN runs: if BEGIN fails or is cancelled, the ROLLBACK still goes.
        conn.connection.info[_TRANSACTION_OPEN] = True
        conn.exec_driver_sql(f"BEGIN {mode}")

    dialect = engine.sync_engine.dialect

    def ended_by(driver_call: Callable[[Any], None]) -> Callable[[Any], None]:
        def end(dbapi_connection: Any) -> None:
            try:
                info = dbapi_connection.info
            except NotImplementedError:  # the dialect's first-connect probe: no pool record
                driver_call(dbapi_connection)
                return
            if info.get(_TRANSACTION_OPEN):
                driver_call(dbapi_connection)
                info[_TRANSACTION_OPEN] = False  # only once it succeeded

        return end

    do_commit, do_rollback = ended_by(dialect.do_commit), ended_by(dialect.do_rollback)

    # Instance attributes: this engine's dialect only (the pool calls the same two methods).
    dialect.do_commit = do_commit  # type: ignore[method-assign, assignment]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign, assignment]
