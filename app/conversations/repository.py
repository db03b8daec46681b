"""Conversation queries."""

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, literal, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from app.db.dialect import insert_ignore_conflict
from app.db.types import UTCDateTime
from app.models import Conversation, ExecutionStatus


async def insert_if_absent(session: AsyncSession, values: dict[str, Any]) -> bool:
    stmt = insert_ignore_conflict(session, Conversation.__table__, ["id"]).values(**values)
    result = await session.execute(stmt.returning(Conversation.__table__.c.id))
    return result.first() is not None


async def get(
    session: AsyncSession,
    conversation_id: uuid.UUID,
    *,
    fresh: bool = False,
    with_secrets: bool = False,
) -> Conversation | None:
    """`fresh`: read the row again even if the session holds it (after a Core UPDATE);
    `with_secrets`: load the sealed secrets too (deferred otherwise)."""
    options = [undefer(Conversation.secrets)] if with_secrets else []
    return await session.get(
        Conversation, conversation_id, populate_existing=fresh, options=options
    )


async def reread(session: AsyncSession, conversation: Conversation) -> None:
    """Read the conversation's row again (after a Core UPDATE in this transaction)."""
    await session.refresh(conversation)


async def set_status(
    session: AsyncSession,
    conversation_id: uuid.UUID,
    to: ExecutionStatus,
    allowed_from: Collection[ExecutionStatus] | None,
) -> bool:
    """One conditional UPDATE of execution_status (any current status when `allowed_from` is
    None); whether it applied."""
    stmt = update(Conversation).where(Conversation.id == conversation_id)
    if allowed_from is not None:
        stmt = stmt.where(Conversation.execution_status.in_([s.value for s in allowed_from]))
    result = await session.execute(
        stmt.values(execution_status=to.value)
        .returning(Conversation.id)
        .execution_options(synchronize_session=False)
    )
    return result.first() is not None


async def get_many(session: AsyncSession, ids: Sequence[uuid.UUID]) -> Sequence[Conversation]:
    stmt = select(Conversation).where(Conversation.id.in_(list(ids)))
    return (await session.execute(stmt)).scalars().all()


async def update_fields(
    session: AsyncSession,
    conversation_id: uuid.UUID,
    values: dict[str, Any],
    expected_versions: Sequence[int] | None,
    now: datetime,
) -> Conversation | None:
    """One conditional UPDATE; None when the row is gone or its version did not match."""
    stmt = update(Conversation).where(Conversation.id == conversation_id)
    if expected_versions is not None:
        stmt = stmt.where(Conversation.version.in_(list(expected_versions)))
    stmt = stmt.values(**values, version=Conversation.version + 1, updated_at=now)
    result = await session.execute(
        stmt.returning(Conversation).execution_options(populate_existing=True)
    )
    return result.scalars().first()


async def delete_one(session: AsyncSession, conversation_id: uuid.UUID) -> bool:
    stmt = delete(Conversation).where(Conversation.id == conversation_id)
    result = await session.execute(stmt.returning(Conversation.id))
    return result.first() is not None


async def search(
    session: AsyncSession,
    *,
    status: str | None,
    sort_column: str,
    descending: bool,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[Conversation]:
    column = getattr(Conversation, sort_column)
    stmt = select(Conversation)
    if status is not None:
        stmt = stmt.where(Conversation.execution_status == status)
    if after is not None:
        key = tuple_(column, Conversation.id)
        bound = tuple_(literal(after[0], UTCDateTime()), literal(after[1], Conversation.id.type))
        stmt = stmt.where(key < bound if descending else key > bound)
    if descending:
        stmt = stmt.order_by(column.desc(), Conversation.id.desc())
    else:
        stmt = stmt.order_by(column, Conversation.id)
    return (await session.execute(stmt.limit(limit))).scalars().all()


async def count(session: AsyncSession, status: str | None) -> int:
    stmt = select(func.count()).select_from(Conversation)
    if status is not None:
        stmt = stmt.where(Conversation.execution_status == status)
    return int((await session.execute(stmt)).scalar_one())


async def lock_conversation(session: AsyncSession, conversation_id: uuid.UUID) -> None:
    """Take the conversation's row lock (Postgres) until commit, as appends do (SQLite: the
    write transaction already holds the database's one write lock)."""
    if session.get_bind().dialect.name == "postgresql":
        stmt = select(Conversation.id).where(Conversation.id == conversation_id).with_for_update()
        await session.execute(stmt)


async def last_seqs(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    """The last seq of each of these conversations that exists."""
    stmt = select(Conversation.id, Conversation.last_seq).where(Conversation.id.in_(list(ids)))
    return {row[0]: int(row[1]) for row in await session.execute(stmt)}
