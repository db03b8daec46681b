"""SQL of the vault: the sealed credentials of conversations."""

import uuid
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Conversation


async def sealed_after(
    session: AsyncSession, after: uuid.UUID | None, limit: int
) -> Sequence[tuple[uuid.UUID, str]]:
    """(id, secrets) of conversations holding credentials, in id order after `after`."""
    stmt = (
        select(Conversation.id, Conversation.secrets)
        .where(Conversation.secrets.is_not(None))
        .order_by(Conversation.id)
        .limit(limit)
    )
    if after is not None:
        stmt = stmt.where(Conversation.id > after)
    rows = (await session.execute(stmt)).all()
    return [(row.id, row.secrets) for row in rows]


async def replace_secrets(
    session: AsyncSession, conversation_id: uuid.UUID, old: str, new: str
) -> bool:
    """Swap the sealed text if it is still `old` (a concurrent change wins); True if swapped."""
    stmt = (
        update(Conversation)
        .where(Conversation.id == conversation_id, Conversation.secrets == old)
        .values(secrets=new)
        .execution_options(synchronize_session=False)
    )
    result = await session.execute(stmt)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def sealed_of(session: AsyncSession, conversation_id: uuid.UUID) -> tuple[str | None] | None:
    """(secrets,) of one conversation, None when there is no such conversation."""
    stmt = select(Conversation.secrets).where(Conversation.id == conversation_id)
    row = (await session.execute(stmt)).first()
    return None if row is None else (row.secrets,)
