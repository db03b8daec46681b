import re
import uuid
from datetime import datetime, timedelta

import httpx
import pytest

from app.db.session import Database
from tests.conftest import WITH_SEQ, create_conversation, event_seqs, send_message

# UTC with microseconds always, so that timestamps compare as strings in time order.
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
MESSAGE = {"role": "user", "content": [{"type": "text", "text": "one"}]}


@pytest.fixture
async def conversation(client: httpx.AsyncClient) -> dict[str, object]:
    return await create_conversation(client)


async def test_append_returns_the_event_and_its_seq(
    client: httpx.AsyncClient, conversation: dict[str, object]
) -> None:
    """The answer is the event without `seq` (an OpenHands client refuses it), which comes in
    the X-Event-Seq header, and in the event with `with_seq=true`."""
    url = f"/api/conversations/{conversation['id']}/events"
    response = await client.post(url, json=MESSAGE)
    assert response.status_code == 201 and response.headers["X-Event-Seq"] == "1"
    first = response.json()
    assert list(first)[:4] == ["kind", "id", "timestamp", "source"] and "seq" not in first
    assert first["kind"] == "MessageEvent" and first["source"] == "user"
    assert STAMP.fullmatch(first["timestamp"]), first["timestamp"]
    stamp = datetime.fromisoformat(first["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset() == timedelta(0)
    response = await client.post(url, json=MESSAGE, params=WITH_SEQ)
    assert response.status_code == 201 and response.headers["X-Event-Seq"] == "2"
    second = response.json()
    assert list(second)[:5] == ["kind", "id", "seq", "timestamp", "source"]
    assert second["seq"] == 2
    fetched = await client.get(f"{url}/{first['id']}")
    assert fetched.status_code == 200 and fetched.json() == first
    fetched = await client.get(f"{url}/{first['id']}", params=WITH_SEQ)
    assert fetched.status_code == 200 and fetched.json() == {**first, "seq": 1}
    found = (await client.get(f"{url}/search")).json()["items"]
    assert found == [first, {k: v for k, v in second.items() if k != "seq"}]
    after = (await client.get(f"/api/conversations/{conversation['id']}")).json()
    assert after["last_seq"] == 2 and after["version"] == 3


async def test_sender_and_cache_prompt_are_kept_as_the_sdk_has_them(
    client: httpx.AsyncClient, conversation: dict[str, object]
) -> None:
    """`sender` is kept when given; `cache_prompt` only when true (the SDK's default is
    false), on text and image parts alike."""
    url = f"/api/conversations/{conversation['id']}/events"
    content = [
        {"type": "text", "text": "cached", "cache_prompt": True},
        {"type": "text", "text": "not cached", "cache_prompt": False},
        {"type": "image", "image_urls": ["https://example.com/a.png"], "cache_prompt": True},
    ]
    response = await client.post(url, json={"content": content, "sender": "reviewer-bot"})
    assert response.status_code == 201, response.text
    stored = (await client.get(f"{url}/{response.json()['id']}")).json()
    assert stored == response.json()
    assert stored["sender"] == "reviewer-bot"
    assert stored["llm_message"]["content"] == [
        content[0],
        {"type": "text", "text": "not cached"},
        content[2],
    ]
    plain = await send_message(client, conversation["id"], "no sender")
    assert "sender" not in plain
    part = {"type": "text", "text": "no sender"}
    assert plain["llm_message"] == {"role": "user", "content": [part]}


async def test_append_accepts_run_flag_and_rejects_bad_bodies(
    client: httpx.AsyncClient, conversation: dict[str, object]
) -> None:
    url = f"/api/conversations/{conversation['id']}/events"
    ok = await client.post(url, json={"content": [{"type": "text", "text": "x"}], "run": False})
    assert ok.status_code == 201
    for body in (
        {"role": "assistant", "content": [{"type": "text", "text": "x"}]},
        {"role": "user", "content": []},
        {"role": "user", "content": [{"type": "video", "url": "x"}]},
        {"role": "user", "content": [{"type": "text", "text": "x", "note": "not an SDK field"}]},
        {"role": "user", "content": [{"type": "image", "image_urls": [], "detail": "high"}]},
        {"role": "user", "content": [{"type": "text", "text": "x"}], "sender": 7},
        {"role": "user"},
    ):
        response = await client.post(url, json=body)
        assert response.status_code == 422, body
    missing = await client.post(
        f"/api/conversations/{uuid.uuid4()}/events",
        json={"content": [{"type": "text", "text": "x"}]},
    )
    assert missing.status_code == 404


async def test_search_pages_in_seq_order_both_ways(
    client: httpx.AsyncClient, conversation: dict[str, object]
) -> None:
    for i in range(7):
        await send_message(client, conversation["id"], f"m{i}")
    cid = conversation["id"]
    assert await event_seqs(client, cid, limit=3) == [1, 2, 3, 4, 5, 6, 7]
    assert await event_seqs(client, cid, limit=2, sort_order="TIMESTAMP_DESC") == [
        7,
        6,
        5,
        4,
        3,
        2,
        1,
    ]
    exact = (await client.get(f"/api/conversations/{cid}/events/search?limit=7")).json()
    assert len(exact["items"]) == 7 and exact["next_page_id"] is None
    default = (await client.get(f"/api/conversations/{cid}/events/search")).json()
    assert len(default["items"]) == 7


async def test_pages_are_stable_while_events_are_appended(
    client: httpx.AsyncClient, conversation: dict[str, object]
) -> None:
    cid = conversation["id"]
    for i in range(4):
        await send_message(client, cid, f"m{i}")
    url = f"/api/conversations/{cid}/events/search"
    asc = (await client.get(url, params={"limit": 2})).json()
    desc = (await client.get(url, params={"limit": 2, "sort_order": "TIMESTAMP_DESC"})).json()
    for i in range(3):
        await send_message(client, cid, f"late{i}")
    asc2 = (
        await client.get(url, params={"limit": 100, "page_id": asc["next_page_id"], **WITH_SEQ})
    ).json()
    assert [e["seq"] for e in asc2["items"]] == [3, 4, 5, 6, 7]
    desc2 = (
        await client.get(
            url,
            params={
                "limit": 100,
                "page_id": desc["next_page_id"],
                "sort_order": "TIMESTAMP_DESC",
                **WITH_SEQ,
            },
        )
    ).json()
    assert [e["seq"] for e in desc2["items"]] == [2, 1]


async def test_body_filter_is_a_case_insensitive_substring(
    client: httpx.AsyncClient, conversation: dict[str, object]
) -> None:
    cid = conversation["id"]
    await send_message(client, cid, "The Quick brown fox")
    await send_message(client, cid, "nothing here")
    await send_message(client, cid, "100% sure_thing")
    await send_message(client, cid, "Ünïcode ÄPFEL")
    url = f"/api/conversations/{cid}/events"

    async def seqs(body: str) -> list[int]:
        found = await event_seqs(client, cid, body=body)
        count = (await client.get(f"{url}/count", params={"body": body})).json()
        assert count == len(found)
        return found

    assert await seqs("quick BROWN") == [1]
    assert await seqs("% sure") == [3]
    assert await seqs("_") == [3]
    assert await seqs("%") == [3]
    assert await seqs("äpfel") == [4]
    assert await seqs("zzz") == []
    assert await seqs("e") == [1, 2, 3, 4]


async def test_kind_and_source_filters(
    client: httpx.AsyncClient, conversation: dict[str, object]
) -> None:
    cid = conversation["id"]
    await send_message(client, cid, "a")
    url = f"/api/conversations/{cid}/events"
    for kind in ("MessageEvent", "openhands.sdk.event.llm_convertible.message.MessageEvent"):
        assert await event_seqs(client, cid, kind=kind) == [1]
        assert (await client.get(f"{url}/count", params={"kind": kind})).json() == 1
    none = (await client.get(f"{url}/search", params={"kind": "ActionEvent"})).json()
    assert none == {"items": [], "next_page_id": None}
    assert (await client.get(f"{url}/count", params={"source": "user"})).json() == 1
    assert (await client.get(f"{url}/count", params={"source": "agent"})).json() == 0
    assert (await client.get(f"{url}/search", params={"kind": "NoSuchEvent"})).status_code == 422
    assert (await client.get(f"{url}/count", params={"kind": "x.NoSuch"})).status_code == 422
    assert (await client.get(f"{url}/search", params={"source": "robot"})).status_code == 422


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"sort_order": "SEQ"},
        {"timestamp__gte": "yesterday"},
        {"timestamp__lt": "2026-13-45T00:00:00"},
    ],
)
async def test_bad_search_parameters_are_422(
    client: httpx.AsyncClient, conversation: dict[str, object], params: dict[str, object]
) -> None:
    url = f"/api/conversations/{conversation['id']}/events/search"
    response = await client.get(url, params=params)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_cursor_from_another_conversation_or_order_is_400(
    client: httpx.AsyncClient, conversation: dict[str, object]
) -> None:
    other = await create_conversation(client)
    for cid in (conversation["id"], other["id"]):
        await send_message(client, cid, "a")
        await send_message(client, cid, "b")
    url = f"/api/conversations/{conversation['id']}/events/search"
    page = (await client.get(url, params={"limit": 1})).json()
    other_url = f"/api/conversations/{other['id']}/events/search"
    foreign = await client.get(other_url, params={"page_id": page["next_page_id"]})
    assert foreign.status_code == 400
    flipped = await client.get(
        url, params={"page_id": page["next_page_id"], "sort_order": "TIMESTAMP_DESC"}
    )
    assert flipped.status_code == 400
    for junk in ("%%%", "abc", "eyJzY29wZSI6MX0"):
        response = await client.get(url, params={"page_id": junk})
        assert response.status_code == 400, junk
        assert response.json()["code"] == "bad_request"


async def test_unknown_conversation_is_404_everywhere(client: httpx.AsyncClient) -> None:
    base = f"/api/conversations/{uuid.uuid4()}/events"
    for path in (f"{base}/search", f"{base}/count", f"{base}/some-id", f"{base}?event_ids=a"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.json()["code"] == "not_found"


async def test_get_event_and_batch_get(
    client: httpx.AsyncClient, conversation: dict[str, object]
) -> None:
    cid = conversation["id"]
    a = await send_message(client, cid, "a")
    b = await send_message(client, cid, "b")
    url = f"/api/conversations/{cid}/events"
    assert (await client.get(f"{url}/nope")).status_code == 404
    response = await client.get(
        url, params=[("event_ids", b["id"]), ("event_ids", "nope"), ("event_ids", a["id"])]
    )
    assert response.status_code == 200
    assert response.json() == [b, None, a]
    with_seq = await client.get(url, params={"event_ids": [b["id"], "nope"], **WITH_SEQ})
    assert with_seq.json() == [{**b, "seq": 2}, None]
    too_many = [("event_ids", f"e{i}") for i in range(101)]
    assert (await client.get(url, params=too_many)).status_code == 422
    assert (await client.get(url)).status_code == 422


async def test_unfiltered_count_equals_count_star(
    client: httpx.AsyncClient, conversation: dict[str, object], db: Database
) -> None:
    """The unfiltered count is served from last_seq; it must equal count(*) of the rows."""
    from sqlalchemy import func, select

    from app.models import Event

    cid = conversation["id"]
    assert (await client.get(f"/api/conversations/{cid}/events/count")).json() == 0
    for i in range(5):
        await send_message(client, cid, f"m{i}")
    async with db.session(write=False) as session:
        rows = (
            await session.execute(
                select(func.count())
                .select_from(Event)
                .where(Event.conversation_id == uuid.UUID(str(cid)))
            )
        ).scalar_one()
    assert rows == 5
    assert (await client.get(f"/api/conversations/{cid}/events/count")).json() == 5


async def test_body_filter_takes_backslashes_literally(
    client: httpx.AsyncClient, conversation: dict[str, object]
) -> None:
    cid = conversation["id"]
    await send_message(client, cid, r"C:\temp\new")
    await send_message(client, cid, "C:tempnew")
    url = f"/api/conversations/{cid}/events/count"
    assert (await client.get(url, params={"body": r"c:\temp"})).json() == 1
    assert (await client.get(url, params={"body": "\\"})).json() == 1
