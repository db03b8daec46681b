"""execution_status transitions: conditional UPDATEs, each recorded as an event; and the
`full_state` snapshot that tells an OpenHands client a run has ended."""

import uuid
from collections.abc import Collection
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.agent.confirmation import waiting_actions
from app.conversations import repository
from app.conversations.schemas import ConversationRead
from app.events import service as events_service
from app.events.schemas import ConversationStateUpdateEvent, UserRejectObservation
from app.models import Conversation, ExecutionStatus


async def set_execution_status(
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
    if not await repository.set_status(session, conversation_id, to, allowed_from):
        return False
    event = ConversationStateUpdateEvent(key="execution_status", value=to.value)
    await events_service.append(session, conversation_id, [event])
    return True


def full_state(conversation: Conversation) -> ConversationStateUpdateEvent:
    """The conversation as GET shows it, as a `full_state` state update (OpenHands)."""
    value = ConversationRead.model_validate(conversation).model_dump(mode="json")
    return ConversationStateUpdateEvent(key="full_state", value=value)


async def record_full_state(session: AsyncSession, conversation_id: uuid.UUID) -> None:
    """Append the conversation's `full_state` as it is now in this transaction. An OpenHands
    client's `run()` returns when it sees one whose status is not `running`: every run's end
    records one, so it reaches every stream, in every process, once committed."""
    conversation = await repository.get(session, conversation_id, fresh=True)
    if conversation is not None:
        await events_service.append(session, conversation_id, [full_state(conversation)])


async def reject_waiting(
    session: AsyncSession, conversation_id: uuid.UUID, reason: str
) -> list[dict[str, Any]]:
    """Reject the actions a conversation waits on (confirmation mode): a
    UserRejectObservation for each, and the conversation `idle`. The conditional move out of
    `waiting_for_confirmation` is the guard (and takes the row lock): of two racing answers,
    one finds nothing waiting. Returns the rejections recorded (none when it was not
    waiting)."""
    if not await set_execution_status(
        session,
        conversation_id,
        ExecutionStatus.IDLE,
        allowed_from=(ExecutionStatus.WAITING_FOR_CONFIRMATION,),
    ):
        return []
    history = await events_service.read_after(session, conversation_id)
    rejections = [
        UserRejectObservation(
            tool_name=action["tool_name"],
            tool_call_id=action["tool_call_id"],
            action_id=action["id"],
            rejection_reason=reason,
        )
        for action in waiting_actions(history)
    ]
    stored = await events_service.append(session, conversation_id, rejections)
    await record_full_state(session, conversation_id)
    return stored
