"""Engine creation and per-dialect connection setup."""

from typing import Any

import orjson
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

# Execution option that makes the SQLite begin hook emit BEGIN IMMEDIATE.
SQLITE_BEGIN_OPTION = "sqlite_begin"


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
    }
    if is_sqlite_url(url):
        kwargs["connect_args"] = {"timeout": sqlite_busy_timeout_ms / 1000}
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
    ROLLBACK) on every checkout: on a busy event loop each trip is another wait in the queue
    (search p99 in scripts/bench_runs.py fell by about a third without them). A connection that
    dies between this check and its first statement still fails that one request, and
    SQLAlchemy then invalidates the rest of the pool.
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
    writer waits for the lock up front (busy_timeout) instead of failing on upgrade.
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
        conn.exec_driver_sql(f"BEGIN {mode}")
