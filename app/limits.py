"""Request body limits: a pure ASGI middleware in front of every HTTP route.

Size: a body declared (Content-Length) larger than the limit is answered 413 at once, before
any of it is read. Any other body (chunked, or longer than declared) is counted as it
arrives, and the read that passes the limit raises HTTPException(413).

Shape, for JSON bodies: FastAPI parses a body whole, on the event loop, before any validator
(or the API key check) runs, and parsing a body of many small values (`[[],[],...]`) stalls
every other request for as long. So the bytes are scanned as they arrive, and the read that
shows nesting deeper than MAX_JSON_DEPTH, or surely more than MAX_JSON_VALUES values and keys,
raises JSONShapeError (422, as reject_unstorable's own error would be). The scan counts the
structure outside strings: commas, colons and opening brackets, of which a body has at most
2 x values + 1, so it never refuses what reject_unstorable accepts; reject_unstorable then
counts exactly on the parsed body.

FastAPI's body parsing lets an HTTPException raised by `receive` through to the app's
exception handlers. A refused body is never held whole: the server keeps the connection and
discards what the client still sends.
"""

import re

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ErrorResponse, Unprocessable
from app.validators import MAX_JSON_DEPTH, MAX_JSON_VALUES, TOO_DEEP, TOO_MANY_VALUES

TOO_LARGE = 413
CODE = "payload_too_large"


def too_large_message(max_bytes: int) -> str:
    return f"request body larger than the limit of {max_bytes} bytes"


# Outside strings: what the scan counts, and the quote that opens a string.
_STRUCTURE = re.compile(rb'["\[\]{},:]')
_OPENING = frozenset(b"[{")
_CLOSING = frozenset(b"]}")
_QUOTE = ord('"')
_BACKSLASH = b"\\"
_MAX_TOKENS = 2 * MAX_JSON_VALUES + 1


class JSONShape:
    """Depth and structure count of a JSON text fed in chunks; tolerant of invalid JSON
    (the parser refuses that later)."""

    def __init__(self) -> None:
        self.depth = 0
        self.tokens = 0
        self.in_string = False
        self._carry = b""  # a backslash that escapes the next chunk's first byte

    def _unescaped(self, chunk: bytes) -> bytes:
        # Escapes are all that can hide a quote: drop escaped backslashes, then escaped
        # quotes. A run of backslashes keeps at most one, so the order is exact.
        text = (self._carry + chunk).replace(_BACKSLASH * 2, b"").replace(b'\\"', b"")
        self._carry = b""
        if text.endswith(_BACKSLASH):
            self._carry, text = _BACKSLASH, text[:-1]
        return text

    def feed(self, chunk: bytes) -> str | None:
        """Take the next chunk; the problem with the JSON so far, if any."""
        text = self._unescaped(chunk)
        pos, end = 0, len(text)
        while pos < end:
            if self.in_string:
                close = text.find(b'"', pos)
                if close < 0:
                    return None
                self.in_string, pos = False, close + 1
                continue
            found = _STRUCTURE.search(text, pos)
            if found is None:
                return None
            pos = found.end()
            char = text[pos - 1]
            if char == _QUOTE:
                self.in_string = True
            elif char in _CLOSING:
                self.depth = max(self.depth - 1, 0)
            else:
                self.tokens += 1
                if char in _OPENING:
                    self.depth += 1
                    if self.depth > MAX_JSON_DEPTH:
                        return TOO_DEEP
                if self.tokens > _MAX_TOKENS:
                    return TOO_MANY_VALUES
        return None


class JSONShapeError(Unprocessable, HTTPException):
    """A 422 raised from `receive`, shown as a request validation error of the body.

    An HTTPException, so FastAPI's body parsing passes it on; an AppError first, so the app's
    AppError handler renders it, with the details a failing validator would have given.
    """

    def __init__(self, problem: str) -> None:
        Exception.__init__(self, problem)
        self.status_code = Unprocessable.status_code
        self.detail = problem
        self.message = "request validation failed"
        error = {"type": "value_error", "loc": ["body"], "msg": f"Value error, {problem}"}
        self.details = [{**error, "ctx": {"error": problem}}]
        self.headers: dict[str, str] = {}


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _is_json(content_type: bytes | None) -> bool:
    """As FastAPI decides to parse a body as JSON: application/json or application/*+json."""
    if content_type is None:
        return False
    mime = content_type.split(b";", 1)[0].strip().lower()
    return mime == b"application/json" or (
        mime.startswith(b"application/") and mime.endswith(b"+json")
    )


def _too_large_response(max_bytes: int) -> Response:
    body = ErrorResponse(status=TOO_LARGE, code=CODE, message=too_large_message(max_bytes))
    return Response(body.model_dump_json(), status_code=TOO_LARGE, media_type="application/json")


class BodyLimits:
    """Refuse HTTP request bodies larger than `max_bytes` (413) and JSON bodies nested too
    deep or holding too many values (422), as their bytes arrive."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        # The HTTP parser has refused malformed and conflicting lengths already.
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large_response(self.max_bytes)(scope, receive, send)
            return
        shape = JSONShape() if _is_json(_header(scope, b"content-type")) else None
        received = 0

        async def checked_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > self.max_bytes:
                    raise HTTPException(TOO_LARGE, too_large_message(self.max_bytes))
                problem = shape.feed(chunk) if shape is not None and chunk else None
                if problem is not None:
                    raise JSONShapeError(problem)
            return message

        await self.app(scope, checked_receive, send)
