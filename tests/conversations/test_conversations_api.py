import uuid

import httpx
import pytest

from tests.conftest import AGENT, WITH_SEQ, create_conversation


async def test_create_returns_201_with_defaults_and_etag(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/conversations", json={"agent": AGENT, "title": "hello"})
    assert response.status_code == 201
    body = response.json()
    uuid.UUID(body["id"])
    assert body["title"] == "hello"
    assert body["tags"] == {}
    assert body["execution_status"] == "idle"
    assert body["max_iterations"] == 500
    assert body["stats"] == {}
    assert body["last_seq"] == 0
    assert body["version"] == 1
    assert body["created_at"].endswith("Z")
    assert response.headers["etag"] == '"1"'


async def test_create_with_existing_id_returns_200_with_the_stored_one(
    client: httpx.AsyncClient,
) -> None:
    conversation_id = str(uuid.uuid4())
    first = await client.post(
        "/api/conversations", json={"id": conversation_id, "agent": AGENT, "title": "first"}
    )
    assert first.status_code == 201
    again = await client.post(
        "/api/conversations",
        json={
            "id": conversation_id,
            "agent": AGENT,
            "title": "second",
            "initial_message": {"content": [{"type": "text", "text": "ignored"}]},
        },
    )
    assert again.status_code == 200
    assert again.json() == first.json()
    count = await client.get(f"/api/conversations/{conversation_id}/events/count")
    assert count.json() == 0


async def test_api_key_is_stored_but_never_returned(client: httpx.AsyncClient) -> None:
    agent = {"llm": {"model": "m", "api_key": "sk-very-secret", "temperature": 0.2}}
    created = await client.post("/api/conversations", json={"agent": agent})
    assert created.status_code == 201
    assert "sk-very-secret" not in created.text
    assert created.json()["agent"]["llm"] == {
        "model": "m",
        "api_key": "**********",
        "temperature": 0.2,
    }
    conversation_id = created.json()["id"]
    for path in (
        f"/api/conversations/{conversation_id}",
        f"/api/conversations?ids={conversation_id}",
        "/api/conversations/search",
    ):
        response = await client.get(path)
        assert response.status_code == 200
        assert "sk-very-secret" not in response.text


async def test_initial_message_becomes_the_first_event(client: httpx.AsyncClient) -> None:
    message = {"role": "user", "content": [{"type": "text", "text": "Hi"}], "sender": "bot"}
    created = await create_conversation(client, initial_message=message)
    assert created["last_seq"] == 1
    url = f"/api/conversations/{created['id']}/events/search"
    (event,) = (await client.get(url, params=WITH_SEQ)).json()["items"]
    assert event["kind"] == "MessageEvent"
    assert event["seq"] == 1
    assert event["source"] == "user" and event["sender"] == "bot"
    assert event["llm_message"] == {"role": "user", "content": [{"type": "text", "text": "Hi"}]}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"agent": {}},
        {"agent": {"llm": {"model": ""}}},
        {"agent": AGENT, "max_iterations": 0},
        {"agent": AGENT, "id": "not-a-uuid"},
        {"agent": AGENT, "tags": ["a"]},
        {"agent": AGENT, "title": "x" * 513},
        {"agent": AGENT, "initial_message": {"role": "assistant", "content": []}},
    ],
)
async def test_create_rejects_bad_input_with_422(
    client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    response = await client.post("/api/conversations", json=body)
    assert response.status_code == 422
    error = response.json()
    assert error["status"] == 422 and error["code"] == "validation_error"
    assert isinstance(error["details"], list) and error["details"]


async def test_malformed_json_body_is_422_not_500(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/conversations", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


async def test_get_has_etag_and_unknown_is_404(client: httpx.AsyncClient) -> None:
    created = await create_conversation(client)
    response = await client.get(f"/api/conversations/{created['id']}")
    assert response.status_code == 200
    assert response.headers["etag"] == '"1"'
    assert response.json() == created
    missing = await client.get(f"/api/conversations/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    malformed = await client.get("/api/conversations/not-a-uuid")
    assert malformed.status_code == 422


async def test_patch_with_matching_if_match_bumps_version_once(client: httpx.AsyncClient) -> None:
    created = await create_conversation(client, title="a", tags={"k": "v"})
    url = f"/api/conversations/{created['id']}"
    response = await client.patch(url, json={"title": "b"}, headers={"If-Match": '"1"'})
    assert response.status_code == 200
    assert response.headers["etag"] == '"2"'
    assert response.json()["title"] == "b"
    assert response.json()["tags"] == {"k": "v"}
    assert response.json()["version"] == 2
    weak = await client.patch(url, json={"tags": {"x": "y"}}, headers={"If-Match": 'W/"2"'})
    assert weak.status_code == 200 and weak.json()["tags"] == {"x": "y"}
    any_version = await client.patch(url, json={"title": None}, headers={"If-Match": "*"})
    assert any_version.status_code == 200 and any_version.json()["title"] is None


async def test_patch_with_stale_if_match_is_412_with_current_etag(
    client: httpx.AsyncClient,
) -> None:
    created = await create_conversation(client, title="a")
    url = f"/api/conversations/{created['id']}"
    assert (await client.patch(url, json={"title": "b"})).status_code == 200
    stale = await client.patch(url, json={"title": "c"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.headers["etag"] == '"2"'
    assert stale.json()["code"] == "precondition_failed"
    assert (await client.get(url)).json()["title"] == "b"
    empty_stale = await client.patch(url, json={}, headers={"If-Match": '"1"'})
    assert empty_stale.status_code == 412


async def test_patch_errors(client: httpx.AsyncClient) -> None:
    created = await create_conversation(client)
    url = f"/api/conversations/{created['id']}"
    bad_header = await client.patch(url, json={"title": "x"}, headers={"If-Match": "1"})
    assert bad_header.status_code == 400
    assert (await client.patch(url, json={"tags": "nope"})).status_code == 422
    missing = await client.patch(f"/api/conversations/{uuid.uuid4()}", json={"title": "x"})
    assert missing.status_code == 404
    missing_if_match = await client.patch(
        f"/api/conversations/{uuid.uuid4()}", json={"title": "x"}, headers={"If-Match": '"1"'}
    )
    assert missing_if_match.status_code == 404


async def test_empty_patch_changes_nothing(client: httpx.AsyncClient) -> None:
    created = await create_conversation(client, title="same")
    response = await client.patch(f"/api/conversations/{created['id']}", json={})
    assert response.status_code == 200
    assert response.json()["version"] == 1


async def test_delete_removes_conversation_and_events(client: httpx.AsyncClient) -> None:
    created = await create_conversation(
        client, initial_message={"content": [{"type": "text", "text": "bye"}]}
    )
    url = f"/api/conversations/{created['id']}"
    response = await client.delete(url)
    assert response.status_code == 204
    assert (await client.get(url)).status_code == 404
    assert (await client.get(f"{url}/events/count")).status_code == 404
    assert (await client.delete(url)).status_code == 404


async def test_batch_get_keeps_input_order_with_null_for_missing(
    client: httpx.AsyncClient,
) -> None:
    a = await create_conversation(client, title="a")
    b = await create_conversation(client, title="b")
    missing = str(uuid.uuid4())
    response = await client.get(
        "/api/conversations", params=[("ids", b["id"]), ("ids", missing), ("ids", a["id"])]
    )
    assert response.status_code == 200
    titles = [None if item is None else item["title"] for item in response.json()]
    assert titles == ["b", None, "a"]


async def test_batch_get_limits(client: httpx.AsyncClient) -> None:
    too_many = [("ids", str(uuid.uuid4())) for _ in range(101)]
    assert (await client.get("/api/conversations", params=too_many)).status_code == 422
    exactly_100 = too_many[:100]
    response = await client.get("/api/conversations", params=exactly_100)
    assert response.status_code == 200 and response.json() == [None] * 100
    assert (await client.get("/api/conversations")).status_code == 422
    assert (await client.get("/api/conversations?ids=bad")).status_code == 422
