"""Run routes: start, pause, interrupt, list and get; and posting a user message, which may
start a run."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.session import ReadSessionDep, WriteSessionDep
from app.errors import database_responses, error_responses, header_objects, response_headers
from app.events import service as events_service
from app.events.schemas import MessageEvent, UserMessageCreate
from app.http import JSONBytes, Success, WithSeq
from app.idempotency.route import IDEMPOTENT, REPLAYED, IdempotentRoute
from app.models import Run
from app.runs import service
from app.runs.messages import post_user_message
from app.runs.schemas import ConfirmationAnswer, LLMCallPage, RunPage, RunRead
from app.runs.wake import wake_worker

router = APIRouter(
    tags=["runs"],
    responses=database_responses(),
    route_class=IdempotentRoute,
)


@router.post(
    "/conversations/{conversation_id}/run",
    dependencies=[IDEMPOTENT],
    response_model=RunRead,
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(404, 409, 422, 429),
)
async def start_run(
    conversation_id: uuid.UUID,
    session: WriteSessionDep,
    request: Request,
    background: BackgroundTasks,
) -> RunRead:
    """Queue a run of the conversation; it starts when a worker has a free slot."""
    run = await service.start(session, conversation_id, _max_queued(request))
    wake_worker(request, background, run.id)
    return RunRead.model_validate(run)


@router.post(
    "/conversations/{conversation_id}/events/respond_to_confirmation",
    dependencies=[IDEMPOTENT],
    response_model=Success,
    responses=error_responses(401, 404, 409, 422, 429),
)
async def respond_to_confirmation(
    conversation_id: uuid.UUID,
    body: ConfirmationAnswer,
    session: WriteSessionDep,
    request: Request,
    background: BackgroundTasks,
) -> Success:
    """Accept the actions the conversation waits on (a run starts and runs them first) or
    reject them (a UserRejectObservation each; the conversation goes idle). Nothing
    waiting: nothing happens (OpenHands answers that with success too)."""
    run = await service.answer_confirmation(
        session, conversation_id, body.accept, body.reason, _max_queued(request)
    )
    if run is not None:
        wake_worker(request, background, run.id)
    return Success()


def _max_queued(request: Request) -> int:
    return int(request.app.state.settings.max_queued_runs)


_NO_ACTIVE_RUN: dict[int | str, dict[str, Any]] = {
    200: {"description": "No active run: nothing to stop (body null)"}
}


async def _read(session: AsyncSession, run: Run) -> RunRead:
    """The run as shown, with its LLM usage."""
    usage = await service.usage_of(session, [run])
    return RunRead.with_usage(run, usage[run.id])


async def _stopping(
    session: AsyncSession,
    run: Run | None,
    request: Request,
    background: BackgroundTasks,
    response: Response,
) -> RunRead | None:
    if run is None:
        response.status_code = status.HTTP_200_OK
        return None
    wake_worker(request, background, run.id)
    return await _read(session, run)


@router.post(
    "/conversations/{conversation_id}/pause",
    dependencies=[IDEMPOTENT],
    response_model=RunRead | None,
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(404, 422, extra=_NO_ACTIVE_RUN),
)
async def pause_run(
    conversation_id: uuid.UUID,
    session: WriteSessionDep,
    request: Request,
    background: BackgroundTasks,
    response: Response,
) -> RunRead | None:
    """Stop the active run after its current step (202); 200 and null when none is active."""
    run = await service.pause(session, conversation_id)
    return await _stopping(session, run, request, background, response)


@router.post(
    "/conversations/{conversation_id}/interrupt",
    dependencies=[IDEMPOTENT],
    response_model=RunRead | None,
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(404, 422, extra=_NO_ACTIVE_RUN),
)
async def interrupt_run(
    conversation_id: uuid.UUID,
    session: WriteSessionDep,
    request: Request,
    background: BackgroundTasks,
    response: Response,
) -> RunRead | None:
    """Cancel the active run's in-flight LLM or tool call and stop it (202); 200 and null
    when none is active."""
    run = await service.interrupt(session, conversation_id)
    return await _stopping(session, run, request, background, response)


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
    usage = await service.usage_of(session, items)  # one query for the page
    runs = [RunRead.with_usage(run, usage[run.id]) for run in items]
    return RunPage(items=runs, next_page_id=next_page_id)


@router.get("/runs/{run_id}", response_model=RunRead, responses=error_responses(404, 422))
async def get_run(run_id: uuid.UUID, session: ReadSessionDep) -> RunRead:
    """One run, with its LLM usage."""
    return await _read(session, await service.get(session, run_id))


@router.get(
    "/conversations/{conversation_id}/llm_calls",
    response_model=LLMCallPage,
    responses=error_responses(400, 404, 422),
)
async def list_conversation_llm_calls(
    conversation_id: uuid.UUID,
    session: ReadSessionDep,
    run_id: uuid.UUID | None = None,
    page_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
) -> LLMCallPage:
    """The conversation's LLM calls (of one of its runs, with `run_id`), newest first."""
    calls, next_page_id = await service.list_llm_calls(
        session, conversation_id, run_id, limit, page_id
    )
    return LLMCallPage.of(calls, next_page_id)


@router.get(
    "/runs/{run_id}/llm_calls",
    response_model=LLMCallPage,
    responses=error_responses(400, 404, 422),
)
async def list_run_llm_calls(
    run_id: uuid.UUID,
    session: ReadSessionDep,
    page_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
) -> LLMCallPage:
    """The run's LLM calls, newest first."""
    calls, next_page_id = await service.list_llm_calls(session, None, run_id, limit, page_id)
    return LLMCallPage.of(calls, next_page_id)


@router.post(
    "/conversations/{conversation_id}/events",
    dependencies=[IDEMPOTENT],
    tags=["events"],
    response_model=MessageEvent,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(
        401,
        404,
        409,
        422,
        429,
        extra={
            **response_headers(201, "X-Event-Seq", "X-Run-Id"),
            200: {
                "description": "The conversation already has an event with this `id`: that"
                " event, appended earlier (nothing is appended, no run is started)",
                "headers": header_objects("X-Event-Seq", "Idempotent-Replayed"),
            },
        },
    ),
)
async def send_message(
    conversation_id: uuid.UUID,
    body: UserMessageCreate,
    session: WriteSessionDep,
    request: Request,
    background: BackgroundTasks,
    with_seq: WithSeq = False,
) -> JSONBytes:
    """Append a user message; its seq is in the X-Event-Seq header. With `run`, start a run
    (an active run takes the message at its next step); the run's id is in X-Run-Id. With an
    `id` the conversation already has, nothing is appended or started: 200 with that event
    (and `Idempotent-Replayed: true`)."""
    stored, run, replayed = await post_user_message(
        session, conversation_id, body, run=body.run, max_queued=_max_queued(request)
    )
    headers = {"X-Event-Seq": str(stored["seq"])}
    if replayed:
        headers[REPLAYED] = "true"
    if run is not None:
        wake_worker(request, background, run.id)
        headers["X-Run-Id"] = str(run.id)
    code = status.HTTP_200_OK if replayed else status.HTTP_201_CREATED
    return JSONBytes(events_service.shown(stored, with_seq), status_code=code, headers=headers)
