"""Events read back exactly as they were appended, by every read path (search both ways and
paged, the body filter, get, batch get, each with and without `with_seq`; history): payload
text, numbers, nulls and timestamps survive the round trip through either database's JSON
column."""

import uuid
from typing import Any

import httpx
import orjson

from app.db.session import Database
from app.events import service
from app.events.schemas import (
    ActionEvent,
    ConversationStateUpdateEvent,
    EventBase,
    TextContent,
    ToolCall,
)
from app.http import JSONBytes
from tests.conftest import WITH_SEQ, create_conversation

TRICKY: dict[str, Any] = {
    "text": 'é 漢字 🙂 "quoted" back\\slash\nnew line\ttab \u2028',
    "numbers": [0, -1, 2**53 + 1, 0.1, 1.5e-7, 12345.678, -2.0],
    "nothing": None,
    "empty": {},
    "nested": {"list": [[], [None, True, False], {"k": "v"}], "deep": {"a": {"b": {"c": 1}}}},
}


def _arguments(i: int) -> str:
    """A tool call's arguments as the LLM sent them: JSON text, kept as text."""
    return orjson.dumps({**TRICKY, "i": i}).decode()


def _events(i: int) -> list[EventBase]:
    """A tool call (the body filter finds its thought) and a state update (it does not)
    holding the same values as JSON."""
    call = ToolCall(id=f"call-{i}", name="think", arguments=_arguments(i))
    return [
        ActionEvent(
            tool_name="think",
            tool_call_id=call.id,
            tool_call=call,
            action={"kind": "ThinkAction", "thought": TRICKY["text"]},
            thought=[TextContent(text=f"zebracorn {i}")],
            llm_response_id=f"response-{i}",
        ),
        ConversationStateUpdateEvent(key="tricky", value={**TRICKY, "i": i}),
    ]


async def _read_every_way(
    client: httpx.AsyncClient, url: str, one_id: str, ids: list[str], params: dict[str, str]
) -> dict[str, Any]:
    async def get(path: str, **query: Any) -> Any:
        response = await client.get(f"{url}{path}", params={**query, **params})
        assert response.status_code == 200, response.text
        return response.json()

    paged: list[dict[str, Any]] = []
    page_id = None
    while True:
        body = await get("/search", limit=2, **({"page_id": page_id} if page_id else {}))
        paged += body["items"]
        page_id = body["next_page_id"]
        if page_id is None:
            break
    return {
        "ascending": (await get("/search"))["items"],
        "descending": (await get("/search", sort_order="TIMESTAMP_DESC"))["items"],
        "by_body": (await get("/search", body="zebracorn"))["items"],
        "paged": paged,
        "one": await get(f"/{one_id}"),
        "batch": await get("", event_ids=ids),
    }


async def test_every_read_path_returns_the_appended_event(
    client: httpx.AsyncClient, db: Database
) -> None:
    cid = uuid.UUID(str((await create_conversation(client))["id"]))
    events = [event for i in range(5) for event in _events(i)]
    async with db.session(write=True) as session:
        appended = await service.append(session, cid, events)
    expected = orjson.loads(JSONBytes(appended).body)  # as the API renders them, with seq
    url = f"/api/conversations/{cid}/events"
    ids = [e["id"] for e in reversed(expected)]
    for params in ({}, WITH_SEQ):
        truth = [service.shown(e, with_seq=bool(params)) for e in expected]
        read = await _read_every_way(client, url, expected[3]["id"], ids, params)
        assert read["ascending"] == truth, params
        assert read["descending"] == truth[::-1], params
        assert read["by_body"] == truth[::2], params  # the tool calls
        assert read["paged"] == truth, params
        assert read["one"] == truth[3], params
        assert read["batch"] == truth[::-1], params
    async with db.session(write=False) as session:
        history = orjson.loads(JSONBytes(await service.read_after(session, cid, 1)).body)
    assert history == expected[1:]
    action, update = read["ascending"][:2]  # as read back, with seq
    assert action["tool_call"]["arguments"] == _arguments(0)  # the same text, not re-encoded
    assert orjson.loads(action["tool_call"]["arguments"]) == {**TRICKY, "i": 0}
    assert action["action"] == {"kind": "ThinkAction", "thought": TRICKY["text"]}
    assert update["value"] == {**TRICKY, "i": 0}
    assert [e["seq"] for e in read["ascending"]] == list(range(1, 11))
