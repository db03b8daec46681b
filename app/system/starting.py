"""The server while it starts: listening, and answering /health, from the first moment.

`agent-server serve` hands uvicorn a Starting app. Its lifespan completes at once, so the
socket is bound within a second of the process starting; meanwhile a thread does the slow
part (the migrations, importing the application, building it), and then the application's
own lifespan runs on the loop. Until it has, GET /health answers 200 (the process is alive
and its loop is responsive), /ready and every other route 503 with Retry-After, and a
WebSocket is closed with 1013 (try again later). From then on every request goes to the
application, as if it had been served directly.

A start that fails (the database unreachable, the schema not at head with --no-migrate)
is kept in `failure` and `on_failure` is called: the command stops the server and exits
with that error, as it did when the same work ran before the server started.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "1"
WS_TRY_AGAIN_LATER = 1013


class Starting:
    def __init__(self, load: Callable[[], Starlette]) -> None:
        # Run in a thread: everything the application needs before its lifespan.
        self._load = load
        self._app: Starlette | None = None
        self._lifespan = contextlib.AsyncExitStack()
        self._loading: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None
        self.on_failure: Callable[[], None] = lambda: None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._serve_lifespan(receive, send)
        elif self._app is not None:
            await self._app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": WS_TRY_AGAIN_LATER})
        else:
            await _answer_starting(scope, send)

    async def _serve_lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        self._loading = asyncio.create_task(self._start_app(), name="app-start")
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        assert message["type"] == "lifespan.shutdown"
        try:
            await self._stop_app()
        except Exception as exc:
            logger.exception("shutting the application down failed")
            await send({"type": "lifespan.shutdown.failed", "message": repr(exc)})
            return
        await send({"type": "lifespan.shutdown.complete"})

    async def _start_app(self) -> None:
        try:
            app = await asyncio.to_thread(self._load)
            await self._lifespan.enter_async_context(app.router.lifespan_context(app))
        except Exception as exc:
            self.failure = exc
            self.on_failure()
            return
        self._app = app

    async def _stop_app(self) -> None:
        """Wait for a start still going (its thread cannot be stopped), then end the
        application's lifespan if it began."""
        if self._loading is not None:
            await asyncio.shield(self._loading)
        self._app = None
        await self._lifespan.aclose()


async def _answer_starting(scope: Scope, send: Send) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/health" and scope["method"] in ("GET", "HEAD"):
        await _send_json(send, 200, {"status": "ok"}, {})
        return
    error = {
        "status": 503,
        "code": "service_unavailable",
        "message": "the server is starting: try again shortly",
        "details": {"starting": True},
    }
    await _send_json(send, 503, error, {"retry-after": RETRY_AFTER_SECONDS})


async def _send_json(send: Send, status: int, body: Any, headers: dict[str, str]) -> None:
    content = orjson.dumps(body)
    raw = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(content))]
    raw += [(name.encode(), value.encode()) for name, value in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": content})
