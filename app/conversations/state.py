"""execution_status transitions: conditional UPDATEs, each recorded as an event."""

import uuid
from collections.abc import Collection

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.events import service as events_service
from app.events.schemas import ConversationStateUpdateEvent
from app.models import Conversation, ExecutionStatus


async def transition(
    session: AsyncSession,
    conversation_id: uuid.UUID,
    to: ExecutionStatus,
    *,
    allowed_from: Collection[ExecutionStatus] | None = None,
) -> bool:
    """Move the conversation to `to` if its status is in `allowed_from` (any when None).

    The change is one conditional UPDATE; when it applies, a ConversationStateUpdateEvent is
    appended in the same transaction (which also bumps the version). Returns whether it did.
    """
    stmt = update(Conversation).where(Conversation.id == conversation_id)
    if allowed_from is not None:
        stmt = stmt.where(Conversation.execution_status.in_([s.value for s in allowed_from]))
    result = await session.execute(
        stmt.values(execution_status=to.value)
        .returning(Conversation.id)
        .execution_options(synchronize_session=False)
    )
    if result.first() is None:
        return False
    event = ConversationStateUpdateEvent(key="execution_status", value=to.value)
    await events_service.append(session, conversation_id, [event])
    return True
