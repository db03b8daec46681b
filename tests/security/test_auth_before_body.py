"""A request without a valid key is refused before its body is read: FastAPI reads and parses
a body before any dependency (the key check among them) runs, so a stranger could make the
server parse a body of ordinary shape up to the size limit. Checked once with the gate
(app/security.py ApiKeyGate) removed: the app read 131,072 bytes of this body, until the
shape scan refused it, and answered 422 instead of 401."""

import json
from typing import Any

import pytest

from app.db.session import Database
from tests.conftest import make_app

MANY_VALUES = json.dumps({"content": [{"text": ""}] * 300_000}).encode()


async def _post(app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, int]:
    """POST MANY_VALUES to `path` through the ASGI app; (status, bytes of body read)."""
    chunks = [MANY_VALUES[i : i + 65536] for i in range(0, len(MANY_VALUES), 65536)]
    read = 0
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal read
        if chunks:
            chunk = chunks.pop(0)
            read += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    await app(scope, receive, send)
    return status, read


@pytest.mark.parametrize(
    "headers",
    [[], [(b"x-session-api-key", b"wrong")], [(b"authorization", b"Bearer wrong")]],
    ids=["none", "wrong-header", "wrong-bearer"],
)
async def test_no_valid_key_is_401_before_the_body_is_read(
    db: Database, headers: list[tuple[bytes, bytes]]
) -> None:
    app = make_app(db, session_api_keys=["right-key"])
    path = "/api/conversations/00000000-0000-0000-0000-000000000000/events"
    assert await _post(app, path, headers) == (401, 0)


async def test_with_the_key_the_body_is_read_and_judged(db: Database) -> None:
    app = make_app(db, session_api_keys=["right-key"])
    path = "/api/conversations/00000000-0000-0000-0000-000000000000/events"
    status, read = await _post(app, path, [(b"x-session-api-key", b"right-key")])
    assert status == 422 and read > 0  # too many values: refused as it arrived
