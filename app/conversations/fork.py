"""Forking a conversation: a new conversation holding a copy of another's rows.

The OpenHands SDK's `RemoteConversation.fork` calls it. The copy is a handful of
`INSERT ... SELECT` statements in the request's transaction (see fork_repository), so its
cost in round trips does not grow with the number of events.
"""

import uuid
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy.ext.asyncio import AsyncSession

from app.clock import utcnow
from app.conversations import fork_repository as repository
from app.conversations import repository as conversations
from app.conversations.schemas import Tags, Title
from app.errors import Conflict, NotFound
from app.models import Conversation, ExecutionStatus
from app.validators import reject_unstorable

# events.id is a String(64).
EventId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class ConversationFork(BaseModel):
    """The body of POST /api/conversations/{id}/fork, as the OpenHands SDK sends it."""

    model_config = ConfigDict(extra="forbid")
    _storable = model_validator(mode="before")(reject_unstorable)

    reset_metrics: bool = Field(
        default=True,
        description="true: the fork's stats start empty and the source's LLM call records are"
        " not copied; false: both are copied",
    )
    id: uuid.UUID | None = Field(default=None, description="The fork's id (409 if it exists)")
    title: Title | None = Field(
        default=None, description="Absent: the source's title; null: no title"
    )
    tags: Tags | None = Field(default=None, description="Absent: the source's tags; null: none")
    from_event_id: EventId | None = Field(
        default=None,
        description="Copy the events up to and including this one (404 if the source has no"
        " such event); absent: every event",
    )


async def fork(session: AsyncSession, source_id: uuid.UUID, data: ConversationFork) -> Conversation:
    """Create a conversation holding a copy of the source's committed rows.

    The fork has its own id (data.id, else a new one), is idle (waiting for confirmation
    when a whole copy of a waiting source: on the same actions) at version 1 and created now;
    it keeps the source's agent, sealed secrets (the cipher does not bind them to a
    conversation, so they open on the fork as they are), title and tags unless the body
    names them, and every column not named here. Its events are the source's, with their
    seq and SDK id (unique per conversation only), all of them or those up to
    `from_event_id`; its last_seq and last_event_at follow the copied events.

    Metrics: with `reset_metrics` (the default) stats start as {} and the llm_calls rows
    stay with the source; without it both are copied, so the fork's stats still add up to
    its llm_calls, as they do for any conversation. They are copied whole even with
    `from_event_id`, as the SDK's own fork copies its stats: they say what was spent to
    reach the source's state, which the fork inherits. Runs (and so leases and queued runs)
    are never copied.

    A running source is fine: the copy is what is committed when the source row is locked
    (see fork_repository.lock_source).
    """
    exists, cut_seq = await repository.lock_source(session, source_id, data.from_event_id)
    if not exists:
        raise NotFound(f"conversation {source_id} not found")
    if data.from_event_id is not None and cut_seq is None:
        raise NotFound(f"event {data.from_event_id} not found in conversation {source_id}")
    fork_id = data.id or uuid.uuid4()
    inserted = await repository.copy_conversation(
        session, source_id, fork_id, _replaced_columns(data), data.from_event_id
    )
    if not inserted:
        raise Conflict(f"conversation {fork_id} already exists")
    await repository.copy_events(session, source_id, fork_id, cut_seq)
    await repository.copy_event_counts(session, source_id, fork_id, recount=cut_seq is not None)
    if not data.reset_metrics:
        await repository.copy_llm_calls(session, source_id, fork_id)
    conversation = await conversations.get(session, fork_id)
    if conversation is None:  # inserted by this transaction: only a broken database loses it
        raise NotFound(f"conversation {fork_id} not found")
    return conversation


def _replaced_columns(data: ConversationFork) -> dict[str, Any]:
    """The fork's own values for the conversations columns it does not copy."""
    now = utcnow()
    values: dict[str, Any] = {
        "execution_status": ExecutionStatus.IDLE.value,
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    if data.reset_metrics:
        values["stats"] = {}
    if "title" in data.model_fields_set:
        values["title"] = data.title
    if "tags" in data.model_fields_set:
        values["tags"] = data.tags or {}
    return values
