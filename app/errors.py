"""Application errors and the one JSON shape every error response has."""

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


class ServiceUnavailable(AppError):
    status_code = 503
    code = "service_unavailable"


def error_responses(
    *statuses: int, extra: dict[int | str, dict[str, Any]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the given error statuses, plus any `extra` ones."""
    responses: dict[int | str, dict[str, Any]] = {s: {"model": ErrorResponse} for s in statuses}
    return {**(extra or {}), **responses}
