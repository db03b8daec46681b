"""Conversation secrets routes (the OpenHands agent-server's `POST .../secrets`)."""

import uuid

from fastapi import APIRouter

from app.conversations import secrets
from app.conversations.secrets_schemas import ConversationSecretsUpdate, SecretsUpdated
from app.db.session import WriteSessionDep
from app.errors import database_responses, error_responses
from app.idempotency.route import IDEMPOTENT, IdempotentRoute
from app.vault.endpoints import VaultDep

router = APIRouter(
    prefix="/conversations",
    tags=["conversations"],
    responses=database_responses(),
    route_class=IdempotentRoute,
)


@router.post(
    "/{conversation_id}/secrets",
    dependencies=[IDEMPOTENT],
    response_model=SecretsUpdated,
    responses=error_responses(401, 404, 409, 422),
)
async def update_conversation_secrets(
    conversation_id: uuid.UUID,
    body: ConversationSecretsUpdate,
    session: WriteSessionDep,
    vault: VaultDep,
) -> SecretsUpdated:
    """Set secrets that the conversation's terminal commands see as environment variables."""
    await secrets.set_env(session, conversation_id, body.plain_values(), vault)
    return SecretsUpdated()
