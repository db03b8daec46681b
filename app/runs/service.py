"""Run rules for the API: start (or queue), pause, interrupt, read. Services never commit
(and never see HTTP: waking the worker after the response is app/runs/wake.py)."""

import uuid
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.clock import utcnow
from app.conversations import repository as conversations
from app.conversations.state import record_full_state, reject_waiting, set_execution_status
from app.errors import BadRequest, Conflict, NotFound, TooManyRequests
from app.events import service as events_service
from app.events.schemas import InterruptEvent, PauseEvent
from app.models import ExecutionStatus, LLMCall, Run, RunStatus
from app.pagination import decode_cursor, encode_cursor
from app.runs import calls_repository, repository
from app.runs.calls_repository import Usage


class _Keyed(Protocol):
    id: uuid.UUID
    created_at: datetime


T = TypeVar("T", bound=_Keyed)

# A conversation waiting for confirmation starts again: that accepts its waiting actions.
STARTABLE = (
    ExecutionStatus.IDLE,
    ExecutionStatus.WAITING_FOR_CONFIRMATION,
    ExecutionStatus.PAUSED,
    ExecutionStatus.FINISHED,
    ExecutionStatus.ERROR,
)


def _active_conflict(run: Run | None, conversation_id: uuid.UUID) -> Conflict:
    run_id = None if run is None else str(run.id)
    return Conflict(
        f"conversation {conversation_id} already has an active run {run_id}",
        details={"run_id": run_id, "status": None if run is None else run.status},
    )


# Seconds a client is told to wait when the run queue is full.
QUEUE_FULL_RETRY_AFTER = 5


async def start(
    session: AsyncSession, conversation_id: uuid.UUID, max_queued: int | None = None
) -> Run:
    """Queue a run; 429 when `max_queued` runs are queued already. The partial unique index
    on runs is what forbids a second active run; the status change keeps execution_status in
    step with it.

    The common case is two statements and the status change's event: the conditional UPDATE of
    the status (which also takes the conversation's row lock, so two starts of one
    conversation queue behind each other) and the INSERT of the run. Why a start was refused
    is looked up only when it was.
    """
    if max_queued is not None and await repository.queued_at_least(session, max_queued):
        raise TooManyRequests(
            f"{max_queued} runs are queued already (AGENT_SERVER_MAX_QUEUED_RUNS): try again"
            " when some have started",
            headers={"Retry-After": str(QUEUE_FULL_RETRY_AFTER)},
        )
    moved = await set_execution_status(
        session, conversation_id, ExecutionStatus.RUNNING, allowed_from=STARTABLE
    )
    if not moved:
        raise await _refusal(session, conversation_id)
    run = await repository.insert_unless_active(session, conversation_id, utcnow())
    if run is None:  # the status said startable but the index holds an active run: it wins
        raise await _refusal(session, conversation_id)
    return run


async def _refusal(session: AsyncSession, conversation_id: uuid.UUID) -> NotFound | Conflict:
    if await conversations.get(session, conversation_id) is None:
        return NotFound(f"conversation {conversation_id} not found")
    active = await repository.active_for(session, conversation_id)
    if active is not None:
        return _active_conflict(active, conversation_id)
    return Conflict(f"conversation {conversation_id} cannot start a run in its status")


async def start_unless_active(
    session: AsyncSession, conversation_id: uuid.UUID, max_queued: int | None = None
) -> Run:
    """Start a run, or leave the active one: it takes new user messages at its next step."""
    active = await repository.active_for(session, conversation_id)
    return active if active is not None else await start(session, conversation_id, max_queued)


async def answer_confirmation(
    session: AsyncSession,
    conversation_id: uuid.UUID,
    accept: bool,
    reason: str,
    max_queued: int | None = None,
) -> Run | None:
    """Confirmation mode: accepting starts a run that runs the waiting actions first (the run
    is returned); rejecting records a UserRejectObservation for each and leaves the
    conversation idle. Nothing waiting: nothing happens."""
    conversation = await conversations.get(session, conversation_id)
    if conversation is None:
        raise NotFound(f"conversation {conversation_id} not found")
    if not accept:
        await reject_waiting(session, conversation_id, reason)
        return None
    if conversation.execution_status != ExecutionStatus.WAITING_FOR_CONFIRMATION.value:
        return None
    return await start_unless_active(session, conversation_id, max_queued)


async def pause(session: AsyncSession, conversation_id: uuid.UUID) -> Run | None:
    """Stop after the current step (a queued run is cancelled at once). None when there is
    no active run: nothing to stop, and nothing changes (OpenHands answers that with 200)."""
    return await _stop(session, conversation_id, interrupt=False)


async def interrupt(session: AsyncSession, conversation_id: uuid.UUID) -> Run | None:
    """Cancel the in-flight LLM or tool call (a queued run is cancelled at once); None when
    there is no active run."""
    return await _stop(session, conversation_id, interrupt=True)


async def _stop(
    session: AsyncSession, conversation_id: uuid.UUID, *, interrupt: bool
) -> Run | None:
    if await conversations.get(session, conversation_id) is None:
        raise NotFound(f"conversation {conversation_id} not found")
    run = await repository.active_for(session, conversation_id)
    if run is None:
        return None
    event = InterruptEvent() if interrupt else PauseEvent()
    await events_service.append(session, conversation_id, [event])
    if run.status == RunStatus.QUEUED.value:
        stopped = await repository.finish(
            session,
            run.id,
            status=RunStatus.INTERRUPTED if interrupt else RunStatus.CANCELLED,
            stop_reason="interrupted" if interrupt else "paused",
            now=utcnow(),
            only_if_status=(RunStatus.QUEUED,),
        )
        if stopped and await set_execution_status(session, conversation_id, ExecutionStatus.PAUSED):
            await record_full_state(session, conversation_id)
    else:
        flag = "interrupt_requested" if interrupt else "pause_requested"
        await repository.set_flag(session, run.id, flag)
    await repository.reread(session, run)
    return run


async def get(session: AsyncSession, run_id: uuid.UUID) -> Run:
    run = await repository.get(session, run_id)
    if run is None:
        raise NotFound(f"run {run_id} not found")
    return run


def _key_after(page_id: str | None, scope: str) -> tuple[datetime, uuid.UUID] | None:
    """The (created_at, id) key a newest-first cursor of `scope` carries, or None."""
    if not page_id:
        return None
    cursor = decode_cursor(page_id, scope=scope, order="desc")
    try:
        return datetime.fromisoformat(cursor["at"]).astimezone(UTC), uuid.UUID(cursor["id"])
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise BadRequest("page_id is not a valid cursor") from exc


def _next_page(rows: list[T], limit: int, scope: str) -> tuple[list[T], str | None]:
    """The first `limit` rows (of limit + 1 read), and the cursor after them if more exist."""
    items = rows[:limit]
    if len(rows) <= limit:
        return items, None
    last = items[-1]
    key = {"at": last.created_at.isoformat(), "id": str(last.id)}
    return items, encode_cursor({"scope": scope, "order": "desc", **key})


async def list_for(
    session: AsyncSession, conversation_id: uuid.UUID, limit: int, page_id: str | None
) -> tuple[list[Run], str | None]:
    if await conversations.get(session, conversation_id) is None:
        raise NotFound(f"conversation {conversation_id} not found")
    scope = f"runs:{conversation_id}"
    after = _key_after(page_id, scope)
    rows = list(await repository.page(session, conversation_id, after, limit + 1))
    return _next_page(rows, limit, scope)


async def usage_of(session: AsyncSession, runs: list[Run]) -> dict[uuid.UUID, Usage]:
    """Each run's LLM usage (a run without a call has the zero Usage), in one query."""
    found = await calls_repository.usage_by_run(session, [run.id for run in runs])
    return {run.id: found.get(run.id, Usage()) for run in runs}


async def list_llm_calls(
    session: AsyncSession,
    conversation_id: uuid.UUID | None,
    run_id: uuid.UUID | None,
    limit: int,
    page_id: str | None,
) -> tuple[list[LLMCall], str | None]:
    """A conversation's LLM calls (or one run's: give `run_id` alone), newest first."""
    if run_id is not None:
        run = await get(session, run_id)
        if conversation_id is not None and run.conversation_id != conversation_id:
            raise NotFound(f"run {run_id} not found in conversation {conversation_id}")
        conversation_id = run.conversation_id
    elif conversation_id is None or await conversations.get(session, conversation_id) is None:
        raise NotFound(f"conversation {conversation_id} not found")
    scope = f"llm_calls:{conversation_id}:{run_id or ''}"
    after = _key_after(page_id, scope)
    rows = await calls_repository.page(session, conversation_id, run_id, limit + 1, after)
    return _next_page(rows, limit, scope)
