"""LLM calls about a conversation outside its runs (OpenHands): `ask_agent` answers a
question over its context, `condense` replaces the older part of its context by a summary.
Both use the conversation's own agent and LLM endpoint (its credentials unsealed only for
the call, and hidden from logs while it lasts)."""

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.agent.base import AgentBase, agent_class
from app.agent.context import render, to_forget
from app.agent.loader import AGENTS
from app.config import Settings
from app.conversations import repository
from app.conversations.repository import lock_conversation
from app.db.session import Database
from app.errors import AppError, Conflict, NotFound, Unprocessable
from app.events import service as events_service
from app.events.schemas import Condensation
from app.models import Conversation, ExecutionStatus
from app.vault.cipher import UnreadableSecrets
from app.vault.redact import REDACTOR
from app.vault.service import Vault

KEEP_LAST = 4  # events the LLM still sees in full after a condensation (besides the first)
MAX_EVENT_CHARS = 4_000  # of each condensed event, in the summariser's prompt
MAX_PROMPT_CHARS = 200_000


class LLMFailed(AppError):
    """The conversation's LLM provider failed the call (502)."""

    status_code = 502
    code = "llm_failed"


async def _conversation(session: AsyncSession, conversation_id: uuid.UUID) -> Conversation:
    conversation = await repository.get(session, conversation_id, with_secrets=True)
    if conversation is None:
        raise NotFound(f"conversation {conversation_id} not found")
    return conversation


async def _agent(
    conversation: Conversation, vault: Vault, settings: Settings, method: str
) -> tuple[Any, list[str]]:
    """The conversation's agent with its credentials, and their values (to hide); 422 when
    its kind cannot make the call."""
    kind = str(conversation.agent.get("kind") or "LLMAgent")
    if agent_class(kind) is None:
        await AGENTS.wait()  # still loading, or a process without a run worker
    cls: type[AgentBase] | None = agent_class(kind)
    if cls is None or not hasattr(cls, method):
        raise Unprocessable(f"agent kind {kind!r} cannot {method.replace('_', ' ')}")
    try:
        spec, values = vault.unseal(conversation.agent, conversation.secrets)
    except UnreadableSecrets as exc:
        raise Conflict(f"the conversation's credentials cannot be opened: {exc}") from None
    return cls(spec, settings), values


async def _read(
    db: Database, conversation_id: uuid.UUID
) -> tuple[Conversation, list[dict[str, Any]]]:
    """The conversation and its events, in a read transaction that ends before the LLM call
    (a pooled connection is never held while a provider answers)."""
    async with db.session(write=False) as session:
        conversation = await _conversation(session, conversation_id)
        history = await events_service.read_after(session, conversation_id)
    return conversation, history


async def ask(
    db: Database, conversation_id: uuid.UUID, question: str, vault: Vault, settings: Settings
) -> str:
    """The answer to a question over the conversation's context; nothing is recorded."""
    conversation, history = await _read(db, conversation_id)
    agent, values = await _agent(conversation, vault, settings, "ask")
    with REDACTOR.hiding(values):
        try:
            answer: str = await agent.ask(history, question)
        except Exception as exc:
            raise LLMFailed(REDACTOR.redact(f"{type(exc).__name__}: {exc}")[:2000]) from None
    return answer


async def condense(
    db: Database, conversation_id: uuid.UUID, vault: Vault, settings: Settings
) -> dict[str, Any] | None:
    """Summarise all but the first user message and the last few events the LLM sees, and
    record that as a Condensation; None when there is nothing to condense. The LLM call is
    made between two short transactions, never inside one; a conversation with an active
    run is 409 (its runner holds the context in memory), checked again under the row lock
    before the append."""
    conversation, history = await _read(db, conversation_id)
    if conversation.execution_status in BUSY:
        raise _busy(conversation_id)
    forget, offset = to_forget(history, KEEP_LAST)
    if not forget:
        return None
    previous = next(
        (e.get("summary") for e in reversed(history) if e["kind"] == "Condensation"), None
    )
    agent, values = await _agent(conversation, vault, settings, "summarize")
    with REDACTOR.hiding(values):
        try:
            summary, response_id = await agent.summarize(
                render(forget, MAX_EVENT_CHARS)[:MAX_PROMPT_CHARS], previous
            )
        except Exception as exc:
            raise LLMFailed(REDACTOR.redact(f"{type(exc).__name__}: {exc}")[:2000]) from None
    event = Condensation(
        forgotten_event_ids=[e["id"] for e in forget],
        summary=summary,
        summary_offset=offset,
        llm_response_id=response_id,
    )
    async with db.session(write=True) as session:
        await lock_conversation(session, conversation_id)
        current = await repository.get(session, conversation_id, fresh=True)
        if current is None:
            raise NotFound(f"conversation {conversation_id} not found")
        if current.execution_status in BUSY:
            raise _busy(conversation_id)
        stored = await events_service.append(session, conversation_id, [event])
    return stored[0]


# A run holds the context in memory; actions waiting for confirmation must stay in it.
BUSY = frozenset({ExecutionStatus.RUNNING.value, ExecutionStatus.WAITING_FOR_CONFIRMATION.value})


def _busy(conversation_id: uuid.UUID) -> Conflict:
    return Conflict(
        f"conversation {conversation_id} has an active run or actions waiting for"
        " confirmation: condense it after"
    )
