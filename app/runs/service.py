"""Run rules for the API: start (or queue), pause, interrupt, read. Services never commit
(and never see HTTP: waking the worker after the response is app/runs/wake.py)."""

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.clock import utcnow
from app.conversations import repository as conversations
from app.conversations.state import record_full_state, reject_waiting, set_execution_status
from app.errors import BadRequest, Conflict, NotFound
from app.events import service as events_service
from app.events.schemas import InterruptEvent, PauseEvent
from app.models import ExecutionStatus, Run, RunStatus
from app.pagination import decode_cursor, encode_cursor
from app.runs import repository

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


async def start(session: AsyncSession, conversation_id: uuid.UUID) -> Run:
    """Queue a run. The partial unique index on runs is what forbids a second active run;
    the status change keeps execution_status in step with it.

    The common case is two statements and the status change's event: the conditional UPDATE of
    the status (which also takes the conversation's row lock, so two starts of one
    conversation queue behind each other) and the INSERT of the run. Why a start was refused
    is looked up only when it was.
    """
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


async def start_unless_active(session: AsyncSession, conversation_id: uuid.UUID) -> Run:
    """Start a run, or leave the active one: it takes new user messages at its next step."""
    active = await repository.active_for(session, conversation_id)
    return active if active is not None else await start(session, conversation_id)


async def answer_confirmation(
    session: AsyncSession, conversation_id: uuid.UUID, accept: bool, reason: str
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
    return await start_unless_active(session, conversation_id)


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


async def list_for(
    session: AsyncSession, conversation_id: uuid.UUID, limit: int, page_id: str | None
) -> tuple[list[Run], str | None]:
    if await conversations.get(session, conversation_id) is None:
        raise NotFound(f"conversation {conversation_id} not found")
    scope = f"runs:{conversation_id}"
    after = None
    if page_id:
        cursor = decode_cursor(page_id, scope=scope, order="desc")
        try:
            at = datetime.fromisoformat(cursor["at"]).astimezone(UTC)
            after = (at, uuid.UUID(cursor["id"]))
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise BadRequest("page_id is not a valid cursor") from exc
    rows = list(await repository.page(session, conversation_id, after, limit + 1))
    items = rows[:limit]
    next_page_id = None
    if len(rows) > limit:
        last = items[-1]
        next_page_id = encode_cursor(
            {"scope": scope, "order": "desc", "at": last.created_at.isoformat(), "id": str(last.id)}
        )
    return items, next_page_id
