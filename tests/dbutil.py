"""Creating and dropping throwaway test databases (SQLite files or Postgres databases)."""

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")


def run_in_thread(fn: Callable[[], T]) -> T:
    """Run blocking or asyncio.run-based code away from the test's event loop thread."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # re-raised in the caller
            error.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def run_async_in_thread(fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await fn()

    return run_in_thread(lambda: asyncio.run(main()))


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql")


async def pg_connect(url: str, connect_timeout: float = 10) -> asyncpg.Connection:
    """A plain asyncpg connection to the database a SQLAlchemy URL names."""
    u = make_url(url)
    return await asyncpg.connect(
        host=u.host or "127.0.0.1",
        port=u.port or 5432,
        user=u.username or "postgres",
        password=u.password,
        database=u.database or "postgres",
        timeout=connect_timeout,
    )


async def _pg_admin(url: str, sql: str) -> None:
    conn = await pg_connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(base_url: str, tmp_dir: Path, label: str = "t") -> str:
    """A new empty database next to base_url (Postgres) or in tmp_dir (SQLite); its URL."""
    if not is_postgres(base_url):
        return f"sqlite+aiosqlite:///{tmp_dir / f'{label}_{uuid.uuid4().hex[:8]}.db'}"
    name = f"agent_server_{label}_{uuid.uuid4().hex[:10]}"
    run_async_in_thread(lambda: _pg_admin(base_url, f'CREATE DATABASE "{name}"'))
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def drop_database(base_url: str, url: str) -> None:
    if not is_postgres(url):
        return
    name = make_url(url).database
    run_async_in_thread(
        lambda: _pg_admin(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    )


async def insert_raw_conversation(
    session: AsyncSession,
    is_sqlite: bool,
    conversation_id: uuid.UUID,
    *,
    status: str = "idle",
    last_seq: int = 0,
) -> None:
    """A conversations row written in SQL, columns as the early revisions have them (for
    migration tests that seed rows at an older revision)."""
    await session.execute(
        text(
            "INSERT INTO conversations (id, title, tags, agent, execution_status, "
            "max_iterations, stats, last_seq, version, created_at, updated_at) VALUES "
            "(:id, 't', '{}', '{}', :status, 5, '{}', :last_seq, 1, :now, :now)"
        ).bindparams(
            id=conversation_id.hex if is_sqlite else conversation_id,
            status=status,
            last_seq=last_seq,
            now=datetime.now(UTC),
        )
    )
