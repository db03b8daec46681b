"""Live event streams: Server-Sent Events under /api, and the OpenHands-style WebSocket.

Both replay from the database, then follow the hub (app.streams.hub). Every event goes out
once, in seq order, with no gap: a replay/live overlap is skipped by seq, and a gap in the
live feed is filled from the database before going on.
"""

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, WebSocket
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

from app.clock import utcnow
from app.config import Settings
from app.conversations import repository as conversations
from app.conversations.state import full_state
from app.db.session import Database, DatabaseDep
from app.errors import AppError, BadRequest, NotFound, database_responses, error_responses
from app.events import service as events_service
from app.events.schemas import (
    UserMessageCreate,
)
from app.events.service import MAX_SEQ
from app.models import Conversation
from app.runs.messages import post_user_message
from app.security import key_accepted
from app.streams.hub import READ_LIMIT, EventHub, Subscription

logger = logging.getLogger(__name__)
router = APIRouter(tags=["streams"], responses=database_responses())
sockets_router = APIRouter(tags=["streams"])

_JSON = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS
WS_POLICY_VIOLATION = 4001  # authentication failed
WS_NOT_FOUND = 4004  # unknown conversation
WS_TRY_AGAIN = 1013  # the client fell too far behind: reconnect with after_seq
SSE_RETRY_MS = 1000  # the reconnection delay an EventSource client is told


async def _conversation(db: Database, conversation_id: uuid.UUID) -> Conversation | None:
    async with db.session(write=False) as session:
        return await conversations.get(session, conversation_id)


async def _page_after(db: Database, conversation_id: uuid.UUID, seq: int) -> list[dict[str, Any]]:
    """Up to READ_LIMIT events after `seq`, in a read transaction of their own."""
    async with db.session(write=False) as session:
        return await events_service.read_after(session, conversation_id, seq, limit=READ_LIMIT)


async def follow(
    db: Database, hub: EventHub, subscription: Subscription, after_seq: int, keepalive: float
) -> AsyncIterator[dict[str, Any] | None]:
    """Events after `after_seq`, in order, as they come; None when `keepalive` seconds pass
    without one. Ends when the subscription overflows or ends."""
    conversation_id = subscription.tail.conversation_id
    sent = after_seq

    async def catch_up() -> AsyncIterator[dict[str, Any]]:
        nonlocal sent
        while True:
            rows = await _page_after(db, conversation_id, sent)
            for row in rows:
                sent = int(row["seq"])
                yield row
            if len(rows) < READ_LIMIT:
                return

    try:
        async for row in catch_up():
            yield row
        while True:
            batch = await subscription.next(keepalive)
            if batch is None:
                yield None
                continue
            for row in batch:
                seq = int(row["seq"])
                if seq <= sent:
                    continue
                if seq != sent + 1:  # something in between was missed: read it
                    async for missed in catch_up():
                        yield missed
                    if seq <= sent:
                        continue
                sent = seq
                yield row
            if subscription.overflowed or subscription.closed:
                return
    finally:
        hub.unsubscribe(subscription)


def _last_event_id(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit() or int(text) > MAX_SEQ:
        raise BadRequest(f"Last-Event-ID must be an event seq (a whole number), not {value!r}")
    return int(text)


@dataclass(frozen=True)
class StreamStart:
    conversation_id: uuid.UUID
    last_seq: int  # the conversation's, as just read
    after_seq: int  # the stream sends the events after this one


async def stream_start(
    conversation_id: uuid.UUID,
    db: DatabaseDep,
    after_seq: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    replay: Annotated[Literal["all"] | None, Query()] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamStart:
    """Where a stream starts. A dependency, so that its 400 and 404 are JSON answers: the
    route's generator runs as the body of a 200 that has already begun."""
    resume = _last_event_id(last_event_id)
    conversation = await _conversation(db, conversation_id)
    if conversation is None:
        raise NotFound(f"conversation {conversation_id} not found")
    if resume is not None:
        start = resume
    elif after_seq is not None:
        start = after_seq
    else:
        start = 0 if replay == "all" else conversation.last_seq
    return StreamStart(conversation_id, conversation.last_seq, start)


@router.get(
    "/conversations/{conversation_id}/events/stream",
    response_class=EventSourceResponse,
    # Errors are answered before the stream starts, as JSON (app.openapi documents them so).
    responses=error_responses(
        400,
        401,
        404,
        422,
        extra={200: {"description": "SSE; each `id` is the event's seq, `data` the event as JSON"}},
    ),
)
async def stream_events(
    start: Annotated[StreamStart, Depends(stream_start)],
    request: Request,
    with_seq: Annotated[bool, Query(description="Add `seq` to each event's data")] = False,
) -> AsyncIterator[ServerSentEvent]:
    """Server-Sent Events: each event's `id:` is its seq. `Last-Event-ID` (or `after_seq`)
    resumes right after that seq; `replay=all` starts from the first event; otherwise only
    new events come. A `: keepalive` comment every 15 s (STREAM_KEEPALIVE_SECONDS) keeps the
    connection open. A client that falls more than the buffer behind gets a last comment and
    is disconnected: reconnect with Last-Event-ID."""
    db: Database = request.app.state.db
    hub: EventHub = request.app.state.hub
    settings: Settings = request.app.state.settings
    yield ServerSentEvent(retry=SSE_RETRY_MS)
    # Subscribed before follow() reads the database: nothing committed in between is missed.
    subscription = await hub.subscribe(start.conversation_id, start.last_seq)
    keepalive = settings.stream_keepalive_seconds
    async for row in follow(db, hub, subscription, start.after_seq, keepalive):
        if row is None:  # FastAPI sends its own `: ping` only after 15 s with nothing from here
            yield ServerSentEvent(comment="keepalive")
        else:
            data = orjson.dumps(events_service.shown(row, with_seq), option=_JSON).decode()
            yield ServerSentEvent(raw_data=data, id=str(row["seq"]))
    if subscription.overflowed:
        yield ServerSentEvent(comment="too far behind; reconnect with Last-Event-ID")


# ---- WebSocket ----------------------------------------------------------------------------


async def _authenticate(websocket: WebSocket, settings: Settings) -> bool:
    if not settings.session_api_keys:
        return True
    header = websocket.headers.get("x-session-api-key")
    if header is not None:
        return key_accepted(settings, header)
    try:
        frame = await asyncio.wait_for(
            websocket.receive_text(), settings.websocket_auth_timeout_seconds
        )
    except (TimeoutError, KeyError):
        return False
    data = _auth_frame(frame)
    key = None if data is None else data.get("session_api_key")
    return isinstance(key, str) and key_accepted(settings, key)


def _auth_frame(frame: str) -> dict[str, Any] | None:
    """The frame as an object when it is an auth frame ({"type": "auth", ...}), else None."""
    if '"auth"' not in frame:
        return None
    try:
        data = json.loads(frame)
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("type") == "auth" else None


async def _receive_messages(websocket: WebSocket, db: Database, conversation_id: uuid.UUID) -> None:
    """Each text frame holding a user message is appended, and the conversation runs."""
    worker = getattr(websocket.app.state, "worker", None)
    max_queued = websocket.app.state.settings.max_queued_runs
    while True:
        frame = await websocket.receive_text()
        if (
            _auth_frame(frame) is not None
        ):  # the OpenHands client sends one even to a server without keys
            continue
        try:
            body = UserMessageCreate.model_validate_json(frame)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False, include_input=False)
            error = {"type": "error", "message": "not a user message", "details": errors}
            await websocket.send_text(orjson.dumps(error).decode())
            continue
        try:
            async with db.session(write=True) as session:
                posted = await post_user_message(
                    session, conversation_id, body, run=True, max_queued=max_queued
                )
            run = posted.run
        except AppError as exc:
            error = {"type": "error", "message": exc.message}
            await websocket.send_text(orjson.dumps(error).decode())
            continue
        if worker is not None and run is not None:
            worker.run_changed(run.id)  # committed: this process's worker looks now, on the loop


@sockets_router.websocket("/sockets/events/{conversation_id}")
async def events_socket(
    websocket: WebSocket,
    conversation_id: str,
    resend_mode: str | None = None,
    after_seq: int | None = None,
    with_seq: bool = False,
) -> None:
    """OpenHands agent-server compatible: auth by X-Session-API-Key or a first frame
    {"type": "auth", "session_api_key": ...} (close 4001); unknown conversation: close 4004.
    First frame sent: a ConversationStateUpdateEvent with key `full_state`. `resend_mode=all`
    replays the history, `after_seq=N` resumes after N; then live events. A text frame
    holding a user message ({"role": "user", "content": [...]}) is appended and run."""
    await websocket.accept()
    app = websocket.app
    settings: Settings = app.state.settings
    db: Database = app.state.db
    hub: EventHub = app.state.hub
    if not await _authenticate(websocket, settings):
        await websocket.close(WS_POLICY_VIOLATION, "missing or invalid session API key")
        return
    try:
        cid = uuid.UUID(conversation_id)
    except ValueError:
        cid = None
    conversation = None if cid is None else await _conversation(db, cid)
    if cid is None or conversation is None:
        await websocket.close(WS_NOT_FOUND, f"conversation {conversation_id} not found")
        return
    if after_seq is not None and not 0 <= after_seq <= MAX_SEQ:
        await websocket.close(1008, "after_seq must be a seq")
        return
    subscription = await hub.subscribe(cid, conversation.last_seq)
    if after_seq is not None:
        start = after_seq
    else:
        start = 0 if resend_mode == "all" else conversation.last_seq
    state = full_state(conversation).model_dump(mode="json", exclude={"seq"})
    state["timestamp"] = events_service.stamp(utcnow())

    async def send() -> None:
        await websocket.send_text(orjson.dumps(state, option=_JSON).decode())
        async for row in follow(db, hub, subscription, start, settings.stream_keepalive_seconds):
            if row is not None:
                frame = orjson.dumps(events_service.shown(row, with_seq), option=_JSON)
                await websocket.send_text(frame.decode())
        if subscription.overflowed:
            await websocket.close(WS_TRY_AGAIN, "too far behind: reconnect with after_seq")
        else:
            await websocket.close(1000, "conversation deleted")

    tasks = {
        asyncio.create_task(send(), name="ws-send"),
        asyncio.create_task(_receive_messages(websocket, db, cid), name="ws-receive"),
    }
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            error = task.exception()
            if error is not None and not isinstance(error, WebSocketDisconnect):
                logger.warning("websocket %s ended: %r", cid, error)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        hub.unsubscribe(subscription)
