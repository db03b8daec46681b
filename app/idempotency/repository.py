"""Idempotency key queries: claim a key for this transaction, find, store and prune."""

import hashlib
from datetime import datetime
from typing import cast

from sqlalchemy import Table, delete, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import IdempotencyKey

KEYS = cast(Table, IdempotencyKey.__table__)


async def try_lock(session: AsyncSession, scope: str, key: str) -> bool:
    """Take the key for this transaction, or False when another transaction holds it (its
    request is still in flight). Postgres: a transaction-level advisory lock on a 64-bit hash
    of the key, released by the commit that makes the key's row visible, so a request that
    takes the lock after it finds the row. SQLite: always True, since write transactions
    run one at a time and the first one's row is committed before the next begins."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    taken = await session.scalar(select(func.pg_try_advisory_xact_lock(lock_id(scope, key))))
    return bool(taken)


def lock_id(scope: str, key: str) -> int:
    """The Postgres advisory lock (a signed 64-bit number) that stands for the key."""
    digest = hashlib.sha256(f"{scope}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def find(session: AsyncSession, scope: str, key: str, now: datetime) -> IdempotencyKey | None:
    """The key's stored outcome, unless it has expired."""
    stmt = select(IdempotencyKey).where(
        IdempotencyKey.scope == scope,
        IdempotencyKey.key == key,
        IdempotencyKey.expires_at > now,
    )
    return cast(IdempotencyKey | None, await session.scalar(stmt))


async def store(session: AsyncSession, row: IdempotencyKey) -> None:
    """Store an outcome, in place of an expired row of the same key if there is one (a row
    that has not expired is never replaced: the caller found none under the key's lock)."""
    await session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.scope == row.scope, IdempotencyKey.key == row.key
        )
    )
    session.add(row)
    await session.flush()


async def delete_expired(session: AsyncSession, now: datetime, limit: int) -> int:
    """Delete up to `limit` expired rows, oldest first, in one statement; how many went."""
    oldest = (
        select(KEYS.c.scope, KEYS.c.key)
        .where(KEYS.c.expires_at <= now)
        .order_by(KEYS.c.expires_at)
        .limit(limit)
    )
    stmt = delete(KEYS).where(tuple_(KEYS.c.scope, KEYS.c.key).in_(oldest)).returning(KEYS.c.key)
    return len((await session.execute(stmt)).all())
