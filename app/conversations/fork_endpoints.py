"""The fork route (OpenHands SDK: `RemoteConversation.fork`)."""

import uuid

from fastapi import APIRouter, Response, status

from app.conversations import fork as fork_service
from app.conversations.fork import ConversationFork
from app.conversations.schemas import ConversationRead
from app.conversations.service import etag
from app.db.session import WriteSessionDep
from app.errors import database_responses, error_responses, response_headers
from app.idempotency.route import IDEMPOTENT, IdempotentRoute

router = APIRouter(
    prefix="/conversations",
    tags=["conversations"],
    responses=database_responses(),
    route_class=IdempotentRoute,
)


@router.post(
    "/{conversation_id}/fork",
    dependencies=[IDEMPOTENT],
    response_model=ConversationRead,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 404, 409, 422, extra=response_headers(201, "ETag")),
)
async def fork_conversation(
    conversation_id: uuid.UUID, body: ConversationFork, session: WriteSessionDep, response: Response
) -> ConversationRead:
    """Create a conversation holding a copy of this one's events (all, or up to one)."""
    conversation = await fork_service.fork(session, conversation_id, body)
    response.headers["ETag"] = etag(conversation.version)
    return ConversationRead.model_validate(conversation)
