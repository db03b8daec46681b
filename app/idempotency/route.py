"""Idempotency-Key on the POSTs that create or change something.

A route opts in with `dependencies=[IDEMPOTENT]` on a router whose `route_class` is
IdempotentRoute. A request without the header runs as before. With it, the route runs in a
write transaction this module opens and shares with the route's WriteSessionDep:

1. the key is taken for the transaction (a second request with it while the first is in
   flight gets 409 with Retry-After);
2. a stored outcome of the key answers at once: the same method, path, query and body get
   the stored status, headers and body again with `Idempotent-Replayed: true`; anything else
   under the same key gets 422;
3. otherwise the route runs, and its 2xx response is stored in the same transaction as its
   effect, so the commit that makes the effect durable makes its proof durable too. An error
   response (4xx, 5xx) rolls the effect back and stores nothing: a retry runs anew.

Keys are scoped by the session API key the request presented, so one client can never
replay another's, and last AGENT_SERVER_IDEMPOTENCY_TTL_SECONDS.
"""

import hashlib
import hmac
import re
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from fastapi.routing import APIRoute

from app.clock import utcnow
from app.config import Settings
from app.db.session import get_database, share_write_session
from app.errors import Conflict, Unprocessable, error_responses, header_objects
from app.idempotency import repository
from app.models import IdempotencyKey
from app.security import presented_key

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
_KEY = re.compile(KEY_PATTERN)
# How long a client should wait before retrying a key whose first request is in flight.
IN_FLIGHT_RETRY_AFTER = 1
# Response headers that describe the connection or this one answer, not the outcome.
_NOT_STORED = {"content-length", "date", "server", "x-request-id", "set-cookie"}


async def idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            pattern=KEY_PATTERN,
            description="Any unique string (a UUID is best), 1-255 visible ASCII characters."
            " A retry with the same key and the same request gets the first one's response"
            f" again (with `{REPLAYED}: true`) instead of doing it twice; with a different"
            " request, 422; while the first is still in flight, 409 with Retry-After. Keys"
            " last AGENT_SERVER_IDEMPOTENCY_TTL_SECONDS (24 h by default).",
        ),
    ] = None,
) -> None:
    """Declares the header (the OpenAPI document shows it); IdempotentRoute does the work."""


IDEMPOTENT = Depends(idempotency_key)


class IdempotentRoute(APIRoute):
    """A route that honours Idempotency-Key when it declares IDEMPOTENT (others as usual)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        # Known before APIRoute.__init__, which documents the responses and builds the handler.
        self.idempotent = any(
            getattr(dep, "dependency", None) is idempotency_key
            for dep in kwargs.get("dependencies") or []
        )
        if self.idempotent:
            kwargs["responses"] = _documented(kwargs.get("responses"), kwargs.get("status_code"))
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if not self.idempotent:
            return handler

        async def idempotent_handler(request: Request) -> Response:
            key = request.headers.get(HEADER)
            if key is None:
                return await handler(request)
            return await _run_once(request, key, handler)

        return idempotent_handler


async def _run_once(
    request: Request, key: str, handler: Callable[[Request], Coroutine[Any, Any, Response]]
) -> Response:
    if not _KEY.match(key):
        raise Unprocessable(f"{HEADER} must be 1 to 255 visible ASCII characters")
    settings: Settings = request.app.state.settings
    scope = key_scope(presented_key(request.headers))
    fingerprint = _fingerprint(settings, scope, request, await request.body())
    now = utcnow()
    async with get_database(request).session(write=True) as session:
        if not await repository.try_lock(session, scope, key):
            raise Conflict(
                f"a request with this {HEADER} is still in flight; retry after it ends",
                headers={"Retry-After": str(IN_FLIGHT_RETRY_AFTER)},
            )
        stored = await repository.find(session, scope, key, now)
        if stored is not None:
            if not hmac.compare_digest(stored.fingerprint, fingerprint):
                raise Unprocessable(
                    f"this {HEADER} was used for a different request (method, path, query or"
                    " body); use a new key for a new request"
                )
            return _replay(stored)
        with share_write_session(request, session):
            response = await handler(request)
        if 200 <= response.status_code < 300:
            await repository.store(
                session,
                IdempotencyKey(
                    scope=scope,
                    key=key,
                    fingerprint=fingerprint,
                    method=request.method,
                    path=request.url.path,
                    status_code=response.status_code,
                    response_headers=_kept_headers(response),
                    response_body=bytes(response.body),
                    created_at=now,
                    expires_at=now + timedelta(seconds=settings.idempotency_ttl_seconds),
                ),
            )
    return response


def key_scope(presented: str | None) -> str:
    """Whose key this is: a hash of the session API key presented (keys are only compared
    within one scope)."""
    return hashlib.sha256(f"agent-server session key\0{presented or ''}".encode()).hexdigest()


def _fingerprint(settings: Settings, scope: str, request: Request, body: bytes) -> str:
    """A keyed hash of what makes the request this request. Keyed by the newest
    AGENT_SERVER_SECRET_KEY when one is set, so a reader of the table cannot test guesses of
    a body's content (a credential in it) against it."""
    secret = settings.secret_key[0].get_secret_value().encode() if settings.secret_key else b""
    digest = hmac.new(secret or scope.encode(), digestmod=hashlib.sha256)
    for part in (
        request.method.encode(),
        request.url.path.encode(),
        request.url.query.encode(),
        request.headers.get("content-type", "").encode(),
        body,
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _kept_headers(response: Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name not in _NOT_STORED}


def _replay(stored: IdempotencyKey) -> Response:
    headers = {**stored.response_headers, REPLAYED: "true"}
    return Response(content=stored.response_body, status_code=stored.status_code, headers=headers)


def _documented(
    responses: dict[int | str, dict[str, Any]] | None, status_code: int | None
) -> dict[int | str, dict[str, Any]]:
    """A route's OpenAPI responses with what the key adds: the replay header on its success
    status, 409 (in flight, with Retry-After) and 422 (the key reused for another request)."""
    documented = {status: {**entry} for status, entry in (responses or {}).items()}
    success = documented.setdefault(status_code or 200, {})
    success["headers"] = {**success.get("headers", {}), **header_objects(REPLAYED, optional=True)}
    extra = error_responses(409, 422, extra={})
    for status, entry in extra.items():
        documented.setdefault(status, entry)
    in_flight = f"a request with this {HEADER} is still in flight: retry after Retry-After"
    conflict = documented[409]
    shown = conflict.get("description")
    documented[409] = {
        **conflict,
        "description": f"{shown}; or {in_flight}" if shown else in_flight.capitalize(),
        "headers": {**conflict.get("headers", {}), **header_objects("Retry-After", optional=True)},
    }
    return documented
