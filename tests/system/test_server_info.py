"""GET /server_info: what the OpenHands client's RemoteWorkspace asks of a server."""

import httpx
from fastapi import FastAPI

from app.db.session import Database
from tests.conftest import make_app, serve_app


async def test_server_info_describes_the_server(client: httpx.AsyncClient, app: FastAPI) -> None:
    response = await client.get("/server_info")
    assert response.status_code == 200, response.text
    info = response.json()
    assert info["title"] == "agent-server"
    assert info["openhands_sdk_version"] == "1.58.2"
    # The terminal is off.
    assert info["usable_tools"] == ["finish", "think", "file_editor", "task_tracker"]
    assert info["database"] == ("sqlite" if app.state.settings.is_sqlite else "postgresql")
    assert info["uptime"] >= 0


async def test_server_info_needs_the_key_when_keys_are_set(db: Database) -> None:
    async with serve_app(make_app(db, session_api_keys=["k"], enable_terminal=True)) as client:
        refused = await client.get("/server_info")
        allowed = await client.get("/server_info", headers={"X-Session-API-Key": "k"})
    assert refused.status_code == 401
    assert allowed.status_code == 200 and "terminal" in allowed.json()["usable_tools"]
