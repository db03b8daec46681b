"""Posting a user message: the use case behind both POST .../events and the WebSocket.

It sits with runs, above events and conversations: it appends the message and, when asked,
starts a run (or leaves the active one, which takes the message at its next step), in the
caller's transaction. Waking this process's worker after the commit is the caller's part.
"""

import uuid
from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession

from app.conversations.repository import lock_conversation
from app.errors import Conflict
from app.events import service as events_service
from app.events.schemas import Message, MessageEvent, UserMessageCreate
from app.models import Run
from app.runs import service as runs_service


class PostedMessage(NamedTuple):
    stored: dict[str, Any]  # the message as events show it, with its seq
    run: Run | None  # the run that takes it, when one was asked for
    replayed: bool  # its id was already in the conversation: `stored` is that event


async def post_user_message(
    session: AsyncSession,
    conversation_id: uuid.UUID,
    body: UserMessageCreate,
    *,
    run: bool,
    max_queued: int | None = None,
) -> PostedMessage:
    """Append the message (and start a run, when `run`). A message whose `id` the
    conversation already has is not appended again and starts no run: the stored event is
    the answer (409 when that event is not a user message)."""
    message = Message(role="user", content=body.content)
    event = MessageEvent(source="user", llm_message=message, sender=body.sender)
    if body.id is not None:
        event.id = body.id
        # Under the conversation's row lock, a concurrent post of the same id waits here and
        # then finds this one's event.
        await lock_conversation(session, conversation_id)
        existing = await events_service.get_many(session, conversation_id, [body.id])
        if existing[0] is not None:
            return PostedMessage(_same_message(existing[0]), None, replayed=True)
    (stored,) = await events_service.append(session, conversation_id, [event])
    if not run:
        return PostedMessage(stored, None, replayed=False)
    started = await runs_service.start_unless_active(session, conversation_id, max_queued)
    return PostedMessage(stored, started, replayed=False)


def _same_message(stored: dict[str, Any]) -> dict[str, Any]:
    if stored.get("kind") != "MessageEvent" or stored.get("source") != "user":
        raise Conflict(f"event {stored['id']} exists and is not a user message")
    return stored
