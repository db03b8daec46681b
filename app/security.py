"""Session API key check for every /api route (and /server_info)."""

import hmac
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings
from app.errors import Unauthorized


def _presented_key(x_session_api_key: str | None, authorization: str | None) -> str | None:
    if x_session_api_key:
        return x_session_api_key
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


def presented_key(headers: Headers) -> str | None:
    """The session API key a request presents (X-Session-API-Key, else a Bearer token)."""
    return _presented_key(headers.get("x-session-api-key"), headers.get("authorization"))


def key_accepted(settings: Settings, presented: str | None) -> bool:
    """True when no keys are configured, or `presented` is one of them."""
    if not settings.session_api_keys:
        return True
    if not presented:
        return False
    candidate = presented.encode()
    # Compare against every key so the time taken does not tell which one matched.
    matched = False
    for key in settings.session_api_keys:
        matched |= hmac.compare_digest(candidate, key.get_secret_value().encode())
    return matched


UNAUTHORIZED = "missing or invalid session API key (X-Session-API-Key or Authorization: Bearer)"
# The HTTP routes that need the key (the WebSocket checks it itself, header or first frame).
GUARDED_PREFIXES = ("/api/", "/server_info")


def _unauthorized() -> Unauthorized:
    return Unauthorized(UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})


class ApiKeyGate:
    """Refuses an HTTP request to a route that needs the key, when it carries no valid one,
    before its body is read: FastAPI reads and parses a body before any dependency runs, so
    without this a stranger could make the server parse megabytes. The routes' own
    `require_api_key` still checks (and declares the security schemes in the OpenAPI)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and self.settings.session_api_keys
            and str(scope["path"]).startswith(GUARDED_PREFIXES)
        ):
            presented = presented_key(Headers(scope=scope))
            if not key_accepted(self.settings, presented):
                error = _unauthorized()
                response = JSONResponse(
                    error.to_response().model_dump(mode="json"),
                    status_code=error.status_code,
                    headers=error.headers,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# The two ways to present the key, as OpenAPI security schemes (either one will do). They
# refuse nothing (auto_error=False) and their values go unused: require_api_key reads the
# headers exactly as ApiKeyGate does, so that the two cannot disagree.
SESSION_API_KEY = APIKeyHeader(
    name="X-Session-API-Key",
    scheme_name="SessionApiKey",
    description="One of the server's session API keys (AGENT_SERVER_SESSION_API_KEYS); any"
    " key is accepted when none is configured.",
    auto_error=False,
)
BEARER = HTTPBearer(
    scheme_name="BearerAuth",
    description="The same session API key, as `Authorization: Bearer <key>`.",
    auto_error=False,
)


async def require_api_key(
    request: Request,
    _key: Annotated[str | None, Security(SESSION_API_KEY)],
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
) -> None:
    settings: Settings = request.app.state.settings
    if key_accepted(settings, presented_key(request.headers)):
        return
    raise _unauthorized()
