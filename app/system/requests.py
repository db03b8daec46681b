"""Every HTTP request and WebSocket gets a request id, an access-log line and a latency sample.

The id is the client's `X-Request-ID` when it is a plain token (letters, digits, `-_.:@`, at
most 128 characters), else a new one; it is returned in the response's `X-Request-ID` and is
on every log line written while the request runs (`app.logging_config` adds it). The access
line names the method, the path (without its query string: it may carry user text), the
status and the time taken. Latency goes to `agent_server_http_request_seconds` by route
template, so that ids in paths do not make one series per conversation.
"""

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logging_config import REQUEST_ID
from app.metrics import HTTP_REQUEST_SECONDS

HEADER = b"x-request-id"
_ACCEPTED = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
access_log = logging.getLogger("agent_server.access")


def _client_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == HEADER:
            text = value.decode("latin-1")
            return text if _ACCEPTED.fullmatch(text) else None
    return None


def _route_template(scope: Scope, prefix: str) -> str:
    """The matched route's path template (`/api/conversations/{conversation_id}`); one label
    for every path no route matched. FastAPI gives the route as its router declared it, so
    the prefix the API router adds (`/api`) is put back."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return "unmatched"
    if str(scope.get("path", "")).startswith(f"{prefix}/") and not path.startswith(prefix):
        return prefix + path
    return path


class RequestContext:
    """Outermost middleware: the id, the access line and the latency of each request."""

    def __init__(self, app: ASGIApp, api_prefix: str, access_log_enabled: bool = True) -> None:
        self.app = app
        self.api_prefix = api_prefix
        self.access_log_enabled = access_log_enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = _client_id(scope) or uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        http = scope["type"] == "http"
        # HTTP: if the app fails before it answers, the server answers 500. WebSocket: 101
        # once accepted; closed (or ended) before that, the handshake was refused (403).
        status = 500 if http else 403

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] in ("http.response.start", "websocket.accept"):
                status = int(message.get("status", 101))
                headers = [
                    (name, value) for name, value in message.get("headers", ()) if name != HEADER
                ]
                headers.append((HEADER, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            method = scope.get("method", "WEBSOCKET")
            if http:  # a WebSocket's time is its whole session: not a latency
                route = _route_template(scope, self.api_prefix)
                HTTP_REQUEST_SECONDS.labels(method, route, str(status)).observe(seconds)
            if self.access_log_enabled:
                access_log.info(
                    "%s %s %d %.1f ms", method, scope.get("path", ""), status, seconds * 1000
                )
            REQUEST_ID.reset(token)
