"""NUL characters cannot be stored in Postgres text or JSONB: they are refused up front, on
both databases alike, as 422 (bodies) or 400 (URLs), never a 500."""

import httpx
import pytest

from tests.conftest import AGENT, create_conversation


@pytest.mark.parametrize(
    "body",
    [
        {"agent": {"llm": {"model": "m\u0000"}}},
        {"agent": AGENT, "title": "a\u0000b"},
        {"agent": AGENT, "tags": {"k\u0000": "v"}},
        {"agent": {"llm": {"model": "m", "extra": ["x\u0000"]}}},
        {"agent": AGENT, "initial_message": {"content": [{"type": "text", "text": "\u0000"}]}},
    ],
)
async def test_nul_in_a_conversation_body_is_422(
    client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    response = await client.post("/api/conversations", json=body)
    assert response.status_code == 422, response.text
    assert "NUL" in response.text


async def test_nul_in_patch_and_message_bodies_is_422(client: httpx.AsyncClient) -> None:
    conversation = await create_conversation(client)
    url = f"/api/conversations/{conversation['id']}"
    assert (await client.patch(url, json={"title": "x\u0000"})).status_code == 422
    message = {"content": [{"type": "text", "text": "a\u0000b"}]}
    assert (await client.post(f"{url}/events", json=message)).status_code == 422
    assert (await client.get(f"{url}/events/count")).json() == 0


async def test_nul_in_the_url_is_400(client: httpx.AsyncClient) -> None:
    conversation = await create_conversation(client)
    base = f"/api/conversations/{conversation['id']}/events"
    for url in (f"{base}/search?body=a%00b", f"{base}/x%00y", f"{base}?event_ids=%00"):
        response = await client.get(url)
        assert response.status_code == 400, url
        assert response.json()["code"] == "bad_request"
