"""Settings an OpenHands client changes on a conversation: its confirmation policy and its
security analyzer. Each change is one UPDATE that bumps the version, and a
ConversationStateUpdateEvent under the field's name, which tells every stream (the SDK
client updates its cached state from it). Services flush, never commit."""

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.clock import utcnow
from app.conversations import repository
from app.errors import NotFound
from app.events import service as events_service
from app.events.schemas import ConversationStateUpdateEvent
from app.models import Conversation


async def set_field(
    session: AsyncSession, conversation_id: uuid.UUID, field: str, value: Any
) -> Conversation:
    """Set `confirmation_policy` or `security_analyzer` and record the change."""
    updated = await repository.update_fields(
        session, conversation_id, {field: value}, None, utcnow()
    )
    if updated is None:
        raise NotFound(f"conversation {conversation_id} not found")
    event = ConversationStateUpdateEvent(key=field, value=value)
    await events_service.append(session, conversation_id, [event])
    return updated
