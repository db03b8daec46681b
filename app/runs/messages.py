"""Posting a user message: the use case behind both POST .../events and the WebSocket.

It sits with runs, above events and conversations: it appends the message and, when asked,
starts a run (or leaves the active one, which takes the message at its next step), in the
caller's transaction. Waking this process's worker after the commit is the caller's part.
"""

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.events import service as events_service
from app.events.schemas import Message, MessageEvent, UserMessageCreate
from app.models import Run
from app.runs import service as runs_service


async def post_user_message(
    session: AsyncSession, conversation_id: uuid.UUID, body: UserMessageCreate, *, run: bool
) -> tuple[dict[str, Any], Run | None]:
    """The stored message (as events show it, with its seq) and the run that takes it, when
    `run`."""
    message = Message(role="user", content=body.content)
    event = MessageEvent(source="user", llm_message=message, sender=body.sender)
    (stored,) = await events_service.append(session, conversation_id, [event])
    if not run:
        return stored, None
    return stored, await runs_service.start_unless_active(session, conversation_id)
