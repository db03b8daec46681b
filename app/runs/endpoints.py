"""Run routes: start, pause, interrupt, list and get."""

import uuid
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query, Request, status

from app.db.session import ReadSessionDep, WriteSessionDep
from app.errors import error_responses
from app.runs import service
from app.runs.schemas import RunPage, RunRead

router = APIRouter(tags=["runs"])


@router.post(
    "/conversations/{conversation_id}/run",
    response_model=RunRead,
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(404, 409, 422),
)
async def start_run(
    conversation_id: uuid.UUID,
    session: WriteSessionDep,
    request: Request,
    background: BackgroundTasks,
) -> RunRead:
    """Queue a run of the conversation; it starts when a worker has a free slot."""
    run = await service.start(session, conversation_id)
    service.wake_worker(request, background, run.id)
    return RunRead.model_validate(run)


@router.post(
    "/conversations/{conversation_id}/pause",
    response_model=RunRead,
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(404, 409, 422),
)
async def pause_run(
    conversation_id: uuid.UUID,
    session: WriteSessionDep,
    request: Request,
    background: BackgroundTasks,
) -> RunRead:
    """Stop the active run after its current step."""
    run = await service.pause(session, conversation_id)
    service.wake_worker(request, background, run.id)
    return RunRead.model_validate(run)


@router.post(
    "/conversations/{conversation_id}/interrupt",
    response_model=RunRead,
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(404, 409, 422),
)
async def interrupt_run(
    conversation_id: uuid.UUID,
    session: WriteSessionDep,
    request: Request,
    background: BackgroundTasks,
) -> RunRead:
    """Cancel the active run's in-flight LLM or tool call and stop it."""
    run = await service.interrupt(session, conversation_id)
    service.wake_worker(request, background, run.id)
    return RunRead.model_validate(run)


@router.get(
    "/conversations/{conversation_id}/runs",
    response_model=RunPage,
    responses=error_responses(404, 422),
)
async def list_runs(
    conversation_id: uuid.UUID,
    session: ReadSessionDep,
    page_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
) -> RunPage:
    """A conversation's runs, newest first, a keyset-paginated page at a time."""
    items, next_page_id = await service.list_for(session, conversation_id, limit, page_id)
    return RunPage(items=[RunRead.model_validate(r) for r in items], next_page_id=next_page_id)


@router.get("/runs/{run_id}", response_model=RunRead, responses=error_responses(404, 422))
async def get_run(run_id: uuid.UUID, session: ReadSessionDep) -> RunRead:
    """One run."""
    return RunRead.model_validate(await service.get(session, run_id))
