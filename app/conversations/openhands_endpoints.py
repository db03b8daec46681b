"""OpenHands conversation routes: confirmation policy, security analyzer, ask_agent, condense,
and the routes whose behaviour this server does not have (501, with
the reason: never a 404 for a route the SDK calls)."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

from app.conversations import llm_calls, repository
from app.conversations import settings as settings_service
from app.conversations.sdk_schemas import ConfirmationPolicy, SecurityAnalyzer
from app.db.session import DatabaseDep, ReadSessionDep, WriteSessionDep
from app.errors import AppError, NotFound, database_responses, error_responses
from app.http import Success
from app.idempotency.route import IDEMPOTENT, IdempotentRoute
from app.validators import reject_unstorable
from app.vault.endpoints import VaultDep

router = APIRouter(
    prefix="/conversations",
    tags=["openhands"],
    responses=database_responses(),
    route_class=IdempotentRoute,
)


class PolicyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    _storable = model_validator(mode="before")(reject_unstorable)
    policy: ConfirmationPolicy


class AnalyzerUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    _storable = model_validator(mode="before")(reject_unstorable)
    security_analyzer: SecurityAnalyzer | None


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid")
    _storable = model_validator(mode="before")(reject_unstorable)
    question: Annotated[str, StringConstraints(min_length=1, max_length=100_000)]


class Answer(BaseModel):
    response: str


class NotImplementedHere(AppError):
    status_code = 501
    code = "not_implemented"


@router.post(
    "/{conversation_id}/confirmation_policy",
    dependencies=[IDEMPOTENT],
    response_model=Success,
    responses=error_responses(401, 404, 422),
)
async def set_confirmation_policy(
    conversation_id: uuid.UUID, body: PolicyUpdate, session: WriteSessionDep
) -> Success:
    """Set which actions wait for the user's confirmation; runs started later follow it."""
    value = body.policy.to_storage()
    await settings_service.set_field(session, conversation_id, "confirmation_policy", value)
    return Success()


@router.post(
    "/{conversation_id}/security_analyzer",
    dependencies=[IDEMPOTENT],
    response_model=Success,
    responses=error_responses(401, 404, 422),
)
async def set_security_analyzer(
    conversation_id: uuid.UUID, body: AnalyzerUpdate, session: WriteSessionDep
) -> Success:
    """Store the security analyzer (shown as set; this server rates no action's risk)."""
    analyzer = body.security_analyzer
    value = None if analyzer is None else analyzer.model_dump(mode="json")
    await settings_service.set_field(session, conversation_id, "security_analyzer", value)
    return Success()


@router.post(
    "/{conversation_id}/ask_agent",
    response_model=Answer,
    responses=error_responses(401, 404, 409, 422, 502),
)
async def ask_agent(
    conversation_id: uuid.UUID,
    body: Question,
    db: DatabaseDep,
    vault: VaultDep,
    request: Request,
) -> Answer:
    """One LLM call over the conversation's context and the question; no event is recorded
    and the conversation does not change. 502 when the LLM provider fails."""
    settings = request.app.state.settings
    answer = await llm_calls.ask(db, conversation_id, body.question, vault, settings)
    return Answer(response=answer)


@router.post(
    "/{conversation_id}/condense",
    response_model=Success,
    responses=error_responses(401, 404, 409, 422, 502),
)
async def condense(
    conversation_id: uuid.UUID, db: DatabaseDep, vault: VaultDep, request: Request
) -> Success:
    """Replace the older part of the agent's context by an LLM-written summary: a
    `Condensation` event, which later runs use instead of the events it names (they stay
    stored). Keeps the first user message and the last few events; nothing to condense is a
    no-op. 409 while a run is active or actions wait for confirmation, or when the
    conversation's credentials cannot be opened; 502 when the LLM provider fails."""
    settings = request.app.state.settings
    await llm_calls.condense(db, conversation_id, vault, settings)
    return Success()


_NOT_HERE: dict[str, str] = {
    "navigate": "event trees (navigating HEAD to an earlier event) are not implemented: a"
    " conversation here is one linear history; fork from_event_id copies a prefix instead",
    "load_plugin": "plugins are not run by this server",
}


def _not_implemented(route: str) -> Any:
    async def endpoint(conversation_id: uuid.UUID, session: ReadSessionDep) -> dict[str, Any]:
        if await repository.get(session, conversation_id) is None:
            raise NotFound(f"conversation {conversation_id} not found")
        raise NotImplementedHere(f"{route}: {_NOT_HERE[route]}")

    endpoint.__name__ = f"{route}_not_implemented"
    endpoint.__doc__ = f"501: {_NOT_HERE[route]}."
    return endpoint


for _route in _NOT_HERE:
    router.add_api_route(
        f"/{{conversation_id}}/{_route}",
        _not_implemented(_route),
        methods=["POST"],
        responses=error_responses(401, 404, 501),
        summary=f"{_route} (501)",
    )
