"""Application errors, the one JSON shape every error response has, and what the OpenAPI
document says about responses (error entries and the headers that come with them)."""

from typing import Any

from pydantic import BaseModel


class ErrorResponse(BaseModel):
    """Body of every error response."""

    status: int
    code: str
    message: str
    details: Any | None = None


class AppError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        details: Any | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}

    def to_response(self) -> ErrorResponse:
        return ErrorResponse(
            status=self.status_code, code=self.code, message=self.message, details=self.details
        )


class BadRequest(AppError):
    status_code = 400
    code = "bad_request"


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class PreconditionFailed(AppError):
    status_code = 412
    code = "precondition_failed"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


class Unprocessable(AppError):
    status_code = 422
    code = "validation_error"


class TooManyRequests(AppError):
    status_code = 429
    code = "too_many_requests"


class ServiceUnavailable(AppError):
    status_code = 503
    code = "service_unavailable"


# ---- The OpenAPI document's account of responses ------------------------------------------

# Response headers as OpenAPI header objects, by name. `required` means every response that
# documents the header carries it.
RESPONSE_HEADERS: dict[str, dict[str, Any]] = {
    "ETag": {
        "description": 'The version, as an ETag (`"3"`): send it back in If-Match to change'
        " that version only",
        "required": True,
        "schema": {"type": "string", "pattern": '^"[0-9]+"$'},
    },
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored response of an earlier request with the"
        " same Idempotency-Key (absent otherwise)",
        "required": True,
        "schema": {"type": "string", "const": "true"},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
    "WWW-Authenticate": {
        "description": "How to authenticate: a session API key (X-Session-API-Key or Bearer)",
        "required": True,
        "schema": {"type": "string", "const": "Bearer"},
    },
    "X-Event-Seq": {
        "description": "The appended event's seq, its place in the conversation",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    },
    "X-Request-ID": {
        "description": "The request's id: the client's X-Request-ID when it is a plain token"
        " (letters, digits, `-_.:@`, at most 128 characters), else a new one. It is on every"
        " log line written for the request.",
        "required": True,
        "schema": {"type": "string", "maxLength": 128},
    },
    "X-Run-Id": {
        "description": "The run this request started (absent when it started none)",
        "required": False,
        "schema": {"type": "string", "format": "uuid"},
    },
}


def header_objects(*names: str, optional: bool = False) -> dict[str, dict[str, Any]]:
    """The RESPONSE_HEADERS of these names; `optional`: documented as not always sent."""
    return {
        name: {**RESPONSE_HEADERS[name], "required": False} if optional else RESPONSE_HEADERS[name]
        for name in names
    }


def response_headers(status: int, *names: str) -> dict[int | str, dict[str, Any]]:
    """A `responses=` entry documenting headers of a route's `status` response."""
    return {status: {"headers": header_objects(*names)}}


# What an error status means wherever it is answered, and the headers it always carries.
_ERRORS: dict[int, dict[str, Any]] = {
    401: {
        "description": "Missing or invalid session API key",
        "headers": header_objects("WWW-Authenticate"),
    },
    412: {
        "description": "If-Match names a version that is no longer current; ETag is the"
        " current one",
        "headers": header_objects("ETag"),
    },
    422: {
        "description": "The request is not valid: `message` says why; when the body, query or"
        " path does not parse, `details` lists each error (`type`, `loc`, `msg`)",
    },
    429: {
        "description": "Too many at once: try again after Retry-After seconds",
        "headers": header_objects("Retry-After"),
    },
    503: {
        "description": "The server cannot serve this now; Retry-After says when to try again,"
        " when it is known",
        "headers": header_objects("Retry-After", optional=True),
    },
}


def error_responses(
    *statuses: int, extra: dict[int | str, dict[str, Any]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the given error statuses, plus any `extra` ones. Every
    error body is an ErrorResponse (app.openapi documents each as JSON whatever the route's
    media type)."""
    responses: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorResponse, **_ERRORS.get(status, {})} for status in statuses
    }
    return {**(extra or {}), **responses}


def database_responses() -> dict[int | str, dict[str, Any]]:
    """What any route that uses the database may answer besides its own: 503 with
    Retry-After when the database cannot serve now (busy, locked, unreachable; see
    app/db/availability.py). For the `responses=` of a router whose routes all use it."""
    return {
        503: {
            "model": ErrorResponse,
            "description": "The database cannot serve the request now (busy, locked or"
            " unreachable): try again after Retry-After seconds",
            "headers": header_objects("Retry-After"),
        }
    }
