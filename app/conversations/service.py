"""Conversation rules. Services flush, never commit: the request boundary commits."""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.clock import utcnow
from app.conversations import repository
from app.conversations.schemas import (
    ConversationCreate,
    ConversationSortOrder,
    ConversationUpdate,
)
from app.errors import BadRequest, NotFound, PreconditionFailed
from app.events import service as events_service
from app.events.schemas import Message, MessageEvent
from app.models import Conversation, ExecutionStatus
from app.models.conversation import NEVER_CONFIRM
from app.pagination import decode_cursor, encode_cursor
from app.skills import service as skills_service
from app.vault.redact import REDACTOR
from app.vault.service import Vault


def etag(version: int) -> str:
    return f'"{version}"'


def _not_found(conversation_id: uuid.UUID) -> NotFound:
    return NotFound(f"conversation {conversation_id} not found")


async def create(
    session: AsyncSession, data: ConversationCreate, vault: Vault
) -> tuple[Conversation, bool]:
    """Create a conversation; an existing id returns the stored one (created=False). Its
    credentials are sealed by the vault; a refused LLM endpoint is 422."""
    agent, secrets, secret_values = vault.store(data.agent.to_storage())
    skills = getattr(data.agent, "skills", None)
    if skills:
        await skills_service.check_known(session, skills, field="agent.skills")
    conversation_id = data.id or uuid.uuid4()
    now = utcnow()
    with REDACTOR.hiding(secret_values):  # a driver's DEBUG line repeats the INSERT's values
        inserted = await repository.insert_if_absent(
            session,
            {
                "id": conversation_id,
                "title": data.title,
                "tags": data.tags,
                "agent": agent,
                "secrets": secrets,
                "execution_status": ExecutionStatus.IDLE.value,
                "max_iterations": data.max_iterations,
                "confirmation_policy": (
                    data.confirmation_policy.to_storage()
                    if data.confirmation_policy
                    else dict(NEVER_CONFIRM)
                ),
                "security_analyzer": (
                    data.security_analyzer.model_dump(mode="json")
                    if data.security_analyzer
                    else None
                ),
                "options": data.options(),
                "stats": {},
                "last_seq": 0,
                "version": 1,
                "created_at": now,
                "updated_at": now,
            },
        )
    if inserted and data.initial_message is not None:
        message = MessageEvent(
            source="user",
            llm_message=Message(role="user", content=data.initial_message.content),
            sender=data.initial_message.sender,
        )
        await events_service.append(session, conversation_id, [message])
    conversation = await repository.get(session, conversation_id)
    if conversation is None:  # deleted between our insert attempt and the read
        raise _not_found(conversation_id)
    return conversation, inserted


async def get(session: AsyncSession, conversation_id: uuid.UUID) -> Conversation:
    conversation = await repository.get(session, conversation_id)
    if conversation is None:
        raise _not_found(conversation_id)
    return conversation


async def get_batch(session: AsyncSession, ids: Sequence[uuid.UUID]) -> list[Conversation | None]:
    found = {c.id: c for c in await repository.get_many(session, ids)}
    return [found.get(conversation_id) for conversation_id in ids]


async def update(
    session: AsyncSession,
    conversation_id: uuid.UUID,
    data: ConversationUpdate,
    expected_versions: Sequence[int] | None,
) -> Conversation:
    """Apply the set fields in one conditional UPDATE that bumps the version by one.

    `expected_versions` (from If-Match) makes the update conditional; None means any version.
    A mismatch is 412 carrying the current ETag.
    """
    values = data.model_dump(exclude_unset=True)
    if not values:
        conversation = await get(session, conversation_id)
        if expected_versions is not None and conversation.version not in expected_versions:
            raise _stale(conversation)
        return conversation
    updated = await repository.update_fields(
        session, conversation_id, values, expected_versions, utcnow()
    )
    if updated is not None:
        return updated
    current = await repository.get(session, conversation_id)
    if current is None:
        raise _not_found(conversation_id)
    raise _stale(current)


def _stale(conversation: Conversation) -> PreconditionFailed:
    return PreconditionFailed(
        f"conversation {conversation.id} is at version {conversation.version}",
        details={"current_version": conversation.version},
        headers={"ETag": etag(conversation.version)},
    )


async def delete(session: AsyncSession, conversation_id: uuid.UUID) -> None:
    if not await repository.delete_one(session, conversation_id):
        raise _not_found(conversation_id)


_SORTS: dict[ConversationSortOrder, tuple[str, bool]] = {
    ConversationSortOrder.CREATED_AT: ("created_at", False),
    ConversationSortOrder.UPDATED_AT: ("updated_at", False),
    ConversationSortOrder.CREATED_AT_DESC: ("created_at", True),
    ConversationSortOrder.UPDATED_AT_DESC: ("updated_at", True),
}


async def search(
    session: AsyncSession,
    *,
    status: ExecutionStatus | None,
    sort_order: ConversationSortOrder,
    limit: int,
    page_id: str | None,
) -> tuple[list[Conversation], str | None]:
    column, descending = _SORTS[sort_order]
    after: tuple[datetime, uuid.UUID] | None = None
    if page_id:
        cursor = decode_cursor(page_id, scope="conversations", order=sort_order.value)
        try:
            at = datetime.fromisoformat(cursor["at"])
            if at.tzinfo is None:
                raise ValueError("naive time")
            after = (at.astimezone(UTC), uuid.UUID(cursor["id"]))
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise BadRequest("page_id is not a valid cursor") from exc
    rows = await repository.search(
        session,
        status=status.value if status else None,
        sort_column=column,
        descending=descending,
        after=after,
        limit=limit + 1,
    )
    items = list(rows[:limit])
    next_page_id = None
    if len(rows) > limit:
        last = items[-1]
        next_page_id = encode_cursor(
            {
                "scope": "conversations",
                "order": sort_order.value,
                "at": getattr(last, column).isoformat(),
                "id": str(last.id),
            }
        )
    return items, next_page_id


async def count(session: AsyncSession, status: ExecutionStatus | None) -> int:
    return await repository.count(session, status.value if status else None)
