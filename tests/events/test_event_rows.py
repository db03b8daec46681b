"""Events read back exactly as they were appended, by every read path (search both ways and
paged, the body filter, get, batch get, history): payload text, numbers, nulls and
timestamps survive the round trip through either database's JSON column."""

import uuid
from typing import Any

import httpx
import orjson

from app.db.session import Database
from app.events import service
from app.events.schemas import ActionEvent, TextContent
from app.http import JSONBytes
from tests.conftest import create_conversation

TRICKY: dict[str, Any] = {
    "text": 'é 漢字 🙂 "quoted" back\\slash\nnew line\ttab \u2028',
    "numbers": [0, -1, 2**53 + 1, 0.1, 1.5e-7, 12345.678, -2.0],
    "nothing": None,
    "empty": {},
    "nested": {"list": [[], [None, True, False], {"k": "v"}], "deep": {"a": {"b": {"c": 1}}}},
}


async def test_every_read_path_returns_the_appended_event(
    client: httpx.AsyncClient, db: Database
) -> None:
    cid = uuid.UUID(str((await create_conversation(client))["id"]))
    events = [
        ActionEvent(
            tool_name="think",
            tool_call_id=f"call-{i}",
            arguments={**TRICKY, "i": i},
            thought=[TextContent(text=f"zebracorn {i}")],
        )
        for i in range(5)
    ]
    async with db.session(write=True) as session:
        appended = await service.append(session, cid, events)
    expected = orjson.loads(JSONBytes(appended).body)  # as the API renders them
    url = f"/api/conversations/{cid}/events"
    ascending = (await client.get(f"{url}/search")).json()["items"]
    descending = (await client.get(f"{url}/search?sort_order=TIMESTAMP_DESC")).json()["items"]
    by_body = (await client.get(f"{url}/search", params={"body": "zebracorn"})).json()["items"]
    paged: list[dict[str, Any]] = []
    page_id = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"page_id": page_id} if page_id else {})}
        body = (await client.get(f"{url}/search", params=params)).json()
        paged += body["items"]
        page_id = body["next_page_id"]
        if page_id is None:
            break
    one = (await client.get(f"{url}/{expected[3]['id']}")).json()
    ids = [("event_ids", e["id"]) for e in reversed(expected)]
    batch = (await client.get(url, params=ids)).json()
    async with db.session(write=False) as session:
        history = orjson.loads(JSONBytes(await service.history_after(session, cid, 1)).body)
    assert ascending == expected
    assert descending == expected[::-1]
    assert by_body == expected
    assert paged == expected
    assert one == expected[3]
    assert batch == expected[::-1]
    assert history == expected[1:]
    assert ascending[0]["arguments"] == {**TRICKY, "i": 0}
