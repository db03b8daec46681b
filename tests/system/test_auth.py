from collections.abc import AsyncIterator

import httpx
import pytest

from app.db.session import Database
from tests.conftest import AGENT, make_app, serve_app

KEYS = ["key-one", "key-two"]


@pytest.fixture
async def secured(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_app(make_app(db, session_api_keys=KEYS)) as c:
        yield c


@pytest.mark.parametrize(
    "path",
    ["/api/conversations/search", "/api/conversations/count", "/api/conversations?ids=x"],
)
async def test_api_routes_need_a_key(secured: httpx.AsyncClient, path: str) -> None:
    response = await secured.get(path)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_wrong_key_is_401(secured: httpx.AsyncClient) -> None:
    response = await secured.get(
        "/api/conversations/count", headers={"X-Session-API-Key": "key-three"}
    )
    assert response.status_code == 401
    response = await secured.get(
        "/api/conversations/count", headers={"Authorization": "Basic key-one"}
    )
    assert response.status_code == 401


async def test_either_header_with_any_configured_key_is_accepted(
    secured: httpx.AsyncClient,
) -> None:
    ok = await secured.get("/api/conversations/count", headers={"X-Session-API-Key": "key-one"})
    assert ok.status_code == 200 and ok.json() == 0
    ok = await secured.get("/api/conversations/count", headers={"Authorization": "Bearer key-two"})
    assert ok.status_code == 200
    created = await secured.post(
        "/api/conversations", json={"agent": AGENT}, headers={"X-Session-API-Key": "key-two"}
    )
    assert created.status_code == 201


async def test_health_and_ready_need_no_key(secured: httpx.AsyncClient) -> None:
    assert (await secured.get("/health")).status_code == 200
    assert (await secured.get("/ready")).status_code == 200


def test_keys_are_read_comma_separated_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.config import Settings

    monkeypatch.setenv("AGENT_SERVER_SESSION_API_KEYS", " a, b ,,c ")
    keys = [k.get_secret_value() for k in Settings().session_api_keys]
    assert keys == ["a", "b", "c"]
    monkeypatch.setenv("AGENT_SERVER_SESSION_API_KEYS", "")
    assert Settings().session_api_keys == []
