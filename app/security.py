"""Session API key check for every /api route."""

import hmac
from typing import Annotated

from fastapi import Header, Request

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


async def require_api_key(
    request: Request,
    x_session_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    settings: Settings = request.app.state.settings
    if key_accepted(settings, _presented_key(x_session_api_key, authorization)):
        return
    raise Unauthorized(
        "missing or invalid session API key (X-Session-API-Key or Authorization: Bearer)",
        headers={"WWW-Authenticate": "Bearer"},
    )
