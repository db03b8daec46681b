"""Conversation routes."""

import uuid
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Header, Query, Request, Response, status

from app.conversations import repository, service
from app.conversations.schemas import (
    ConversationCreate,
    ConversationPage,
    ConversationRead,
    ConversationSortOrder,
    ConversationUpdate,
)
from app.db.session import ReadSessionDep, WriteSessionDep
from app.errors import database_responses, error_responses, header_objects, response_headers
from app.http import parse_if_match
from app.idempotency.route import IDEMPOTENT, IdempotentRoute
from app.models import ExecutionStatus
from app.runs import service as runs_service
from app.runs.wake import wake_worker
from app.vault.endpoints import VaultDep

router = APIRouter(
    prefix="/conversations",
    tags=["conversations"],
    responses=database_responses(),
    route_class=IdempotentRoute,
)
IfMatch = Annotated[
    str | None, Header(description='The conversation\'s ETag (e.g. "3"); a stale one is 412')
]

MAX_BATCH = 100


@router.post(
    "",
    dependencies=[IDEMPOTENT],
    response_model=ConversationRead,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(
        401,
        422,
        429,
        extra={
            200: {
                "model": ConversationRead,
                "description": "The id existed",
                "headers": header_objects("ETag"),
            },
            **response_headers(201, "ETag", "X-Run-Id"),
        },
    ),
)
async def create_conversation(
    body: ConversationCreate,
    session: WriteSessionDep,
    vault: VaultDep,
    request: Request,
    background: BackgroundTasks,
    response: Response,
) -> ConversationRead:
    """Create a conversation, or return the stored one when its id exists. An
    `initial_message` with `run: true` starts a run of the new conversation (X-Run-Id)."""
    conversation, created = await service.create(session, body, vault)
    if created and body.initial_message is not None and body.initial_message.run:
        run = await runs_service.start(
            session, conversation.id, request.app.state.settings.max_queued_runs
        )
        wake_worker(request, background, run.id)
        response.headers["X-Run-Id"] = str(run.id)
        await repository.reread(session, conversation)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    response.headers["ETag"] = service.etag(conversation.version)
    return ConversationRead.model_validate(conversation)


@router.get("/search", response_model=ConversationPage, responses=error_responses(400, 401, 422))
async def search_conversations(
    session: ReadSessionDep,
    page_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
    status: ExecutionStatus | None = None,
    sort_order: ConversationSortOrder = ConversationSortOrder.CREATED_AT_DESC,
) -> ConversationPage:
    """Search conversations, a keyset-paginated page at a time."""
    items, next_page_id = await service.search(
        session, status=status, sort_order=sort_order, limit=limit, page_id=page_id
    )
    return ConversationPage(
        items=[ConversationRead.model_validate(c) for c in items], next_page_id=next_page_id
    )


@router.get("/count", response_model=int, responses=error_responses(401, 422))
async def count_conversations(
    session: ReadSessionDep, status: ExecutionStatus | None = None
) -> int:
    """Count conversations, optionally with one status."""
    return await service.count(session, status)


@router.get("", response_model=list[ConversationRead | None], responses=error_responses(401, 422))
async def batch_get_conversations(
    session: ReadSessionDep,
    ids: Annotated[list[uuid.UUID], Query(min_length=1, max_length=MAX_BATCH)],
) -> list[ConversationRead | None]:
    """Get conversations by id, in the order asked, null for each one missing."""
    found = await service.get_batch(session, ids)
    return [None if c is None else ConversationRead.model_validate(c) for c in found]


@router.get(
    "/{conversation_id}",
    response_model=ConversationRead,
    responses=error_responses(401, 404, 422, extra=response_headers(200, "ETag")),
)
async def get_conversation(
    conversation_id: uuid.UUID, session: ReadSessionDep, response: Response
) -> ConversationRead:
    """Get one conversation; its ETag is its version."""
    conversation = await service.get(session, conversation_id)
    response.headers["ETag"] = service.etag(conversation.version)
    return ConversationRead.model_validate(conversation)


@router.patch(
    "/{conversation_id}",
    response_model=ConversationRead,
    responses=error_responses(400, 401, 404, 412, 422, extra=response_headers(200, "ETag")),
)
async def update_conversation(
    conversation_id: uuid.UUID,
    body: ConversationUpdate,
    session: WriteSessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> ConversationRead:
    """Change title or tags; with If-Match, only if the version still matches (else 412)."""
    conversation = await service.update(session, conversation_id, body, parse_if_match(if_match))
    response.headers["ETag"] = service.etag(conversation.version)
    return ConversationRead.model_validate(conversation)


@router.delete(
    "/{conversation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 404, 422),
)
async def delete_conversation(conversation_id: uuid.UUID, session: WriteSessionDep) -> Response:
    """Delete a conversation and all its events."""
    await service.delete(session, conversation_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
