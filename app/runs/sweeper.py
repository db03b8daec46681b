"""Recovery: runs whose lease expired are failed as worker_lost, never re-run silently."""

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from app.agent.context import OpenActions
from app.clock import utcnow
from app.conversations.state import set_execution_status
from app.db.session import Database
from app.events import service as events_service
from app.events.schemas import AgentErrorEvent, ConversationErrorEvent, EventBase
from app.metrics import RUNS_WORKER_LOST
from app.models import ExecutionStatus, Run, RunStatus
from app.runs import repository

logger = logging.getLogger(__name__)


async def sweep_once(db: Database) -> int:
    """Fail every run whose lease has expired; returns how many."""
    async with db.session(write=True) as session:
        now = utcnow()
        swept = 0
        for run in await repository.expired(session, now):
            if await _fail_lost(session, run):
                swept += 1
    if swept:  # committed
        RUNS_WORKER_LOST.inc(swept)
    return swept


async def _fail_lost(session: AsyncSession, run: Run) -> bool:
    now = utcnow()
    ended = await repository.finish(
        session,
        run.id,
        status=RunStatus.FAILED,
        stop_reason="worker_lost",
        error=f"the lease of worker {run.worker_id} expired",
        now=now,
        only_if_epoch=run.lease_epoch,
        only_if_expired=True,
    )
    if not ended:
        return False
    events: list[EventBase] = [
        AgentErrorEvent(
            error=(
                "no observation was recorded for this action: the worker running it was lost, "
                "and the tool call was not run again"
            ),
            tool_name=tool_name or "",
            tool_call_id=call_id,
        )
        for call_id, tool_name in await _unanswered_actions(session, run)
    ]
    events.append(
        ConversationErrorEvent(
            code="WorkerLost",
            detail=f"run {run.id} stopped: the worker holding it stopped renewing its lease",
        )
    )
    await events_service.append(session, run.conversation_id, events)
    await set_execution_status(session, run.conversation_id, ExecutionStatus.ERROR)
    logger.warning("run %s failed: worker %s lost its lease", run.id, run.worker_id)
    return True


async def _unanswered_actions(session: AsyncSession, run: Run) -> list[tuple[str, str]]:
    """(tool_call_id, tool_name) of actions since the run started that have no answer."""
    started = run.started_at or run.created_at
    since = events_service.EventFilter(timestamp_gte=started)
    open_calls = OpenActions()
    page_id = None
    while True:
        query = events_service.EventQuery(filter=since, limit=100, page_id=page_id)
        items, page_id = await events_service.search(session, run.conversation_id, query)
        for event in items:
            open_calls.see(event)
        if page_id is None:
            return list(open_calls.items())
