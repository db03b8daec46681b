"""Server-Sent Events: replay, resume, live, keepalive, errors, and the replay/live seam."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.db.session import Database
from app.events import service as events_service
from app.events.schemas import Message, MessageEvent, TextContent
from tests.conftest import WITH_SEQ, create_conversation, make_app, send_message
from tests.streams.conftest import LiveServer, sse

STREAM_PATH = "/api/conversations/{conversation_id}/events/stream"


def _texts(events: list[dict[str, object]]) -> list[str]:
    return [e["llm_message"]["content"][0]["text"] for e in events]  # type: ignore[index]


async def test_replay_all_then_live_in_seq_order(live: LiveServer) -> None:
    async with live() as base, httpx.AsyncClient(base_url=base) as client:
        cid = (await create_conversation(client))["id"]
        for text in ("a", "b", "c"):
            await send_message(client, cid, text)
        async with sse(base, cid, replay="all", with_seq=True) as stream:
            replayed = await stream.events(3)
            await send_message(client, cid, "d")
            await send_message(client, cid, "e")
            live_events = await stream.events(2)
    assert [e["seq"] for e in replayed + live_events] == [1, 2, 3, 4, 5]
    assert _texts(replayed + live_events) == ["a", "b", "c", "d", "e"]


async def test_without_a_position_only_new_events_come(live: LiveServer) -> None:
    async with live() as base, httpx.AsyncClient(base_url=base) as client:
        cid = (await create_conversation(client))["id"]
        await send_message(client, cid, "old")
        async with sse(base, cid) as stream:
            await send_message(client, cid, "new")
            (event,) = await stream.events(1)
    assert (stream.seqs, _texts([event])) == ([2], ["new"])


@pytest.mark.parametrize("how", ["header", "query"])
async def test_resume_right_after_a_seq(live: LiveServer, how: str) -> None:
    async with live() as base, httpx.AsyncClient(base_url=base) as client:
        cid = (await create_conversation(client))["id"]
        for text in "abcd":
            await send_message(client, cid, text)
        headers = {"Last-Event-ID": "2"} if how == "header" else {}
        params = {"after_seq": 2} if how == "query" else {}
        async with sse(base, cid, headers=headers, **params) as stream:
            events = await stream.events(2)
    assert (stream.seqs, _texts(events)) == ([3, 4], ["c", "d"])


async def test_keepalive_comments_while_idle(live: LiveServer) -> None:
    async with live(stream_keepalive_seconds=0.1) as base, httpx.AsyncClient(base_url=base) as c:
        cid = (await create_conversation(c))["id"]
        async with sse(base, cid) as stream:
            with pytest.raises(TimeoutError):
                await stream.next_event(wait=0.5)
    assert stream.comments.count("keepalive") >= 2, stream.comments


async def test_errors_are_plain_http_errors(live: LiveServer) -> None:
    async with live(session_api_keys=["k"]) as base, httpx.AsyncClient(base_url=base) as client:
        key = {"X-Session-API-Key": "k"}
        response = await client.post(
            "/api/conversations", json={"agent": {"llm": {"model": "m"}}}, headers=key
        )
        cid = response.json()["id"]
        url = f"/api/conversations/{cid}/events/stream"
        assert (await client.get(url)).status_code == 401
        missing = await client.get(f"/api/conversations/{uuid.uuid4()}/events/stream", headers=key)
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"
        bad = await client.get(url, headers={**key, "Last-Event-ID": "x1"})
        assert bad.status_code == 400 and "Last-Event-ID" in bad.json()["message"]
        negative = await client.get(url, headers=key, params={"after_seq": -1})
        assert negative.status_code == 422


async def test_no_gap_or_duplicate_across_the_replay_live_seam(
    live: LiveServer, db: Database
) -> None:
    """Appends go on while clients connect with replay=all at different moments: each must
    see exactly 1..N. Checked once against a broken variant (no seq check where the replay
    meets the live feed): events came twice and this test failed."""
    total = 150
    async with live() as base, httpx.AsyncClient(base_url=base) as client:
        cid = (await create_conversation(client))["id"]
        conversation_id = uuid.UUID(str(cid))

        async def writer() -> None:
            for i in range(total):
                async with db.session(write=True) as session:
                    event = MessageEvent(
                        source="user",
                        llm_message=Message(role="user", content=[TextContent(text=f"m{i}")]),
                    )
                    await events_service.append(session, conversation_id, [event])
                if i % 10 == 0:
                    await asyncio.sleep(0.005)

        async def reader(delay: float) -> list[int]:
            await asyncio.sleep(delay)
            async with sse(base, cid, replay="all", with_seq=True) as stream:
                return [e["seq"] for e in await stream.events(total, wait=20)]

        results = await asyncio.gather(writer(), *(reader(d) for d in (0, 0.02, 0.05, 0.1, 0.2)))
    for seqs in results[1:]:
        assert seqs == list(range(1, total + 1))


async def test_rolled_back_appends_are_never_streamed(live: LiveServer, db: Database) -> None:
    async with live() as base, httpx.AsyncClient(base_url=base) as client:
        cid = (await create_conversation(client))["id"]
        async with sse(base, cid) as stream:
            with pytest.raises(RuntimeError):
                async with db.session(write=True) as session:
                    event = MessageEvent(
                        source="user",
                        llm_message=Message(role="user", content=[TextContent(text="never")]),
                    )
                    await events_service.append(session, uuid.UUID(str(cid)), [event])
                    raise RuntimeError("roll back")
            await send_message(client, cid, "kept")
            (event,) = await stream.events(1)
    assert (stream.seqs, _texts([event])) == ([1], ["kept"])


class RawStream:
    """An SSE response read as it is framed on the wire: blocks (the text between blank lines)."""

    def __init__(self, response: httpx.Response) -> None:
        self.chunks = response.aiter_raw()
        self.pending = b""

    async def blocks(self, n: int, wait: float = 10) -> list[str]:
        found: list[str] = []
        async with asyncio.timeout(wait):
            while len(found) < n:
                block, blank, rest = self.pending.partition(b"\n\n")
                if blank:
                    found.append(block.decode())
                    self.pending = rest
                    continue
                chunk = await anext(self.chunks, None)
                if chunk is None:
                    return found  # the stream ended
                self.pending += chunk
        return found


@contextlib.asynccontextmanager
async def raw_stream(base: str, cid: object, **kwargs: Any) -> AsyncIterator[RawStream]:
    url = f"/api/conversations/{cid}/events/stream"
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as client,
        client.stream("GET", url, **kwargs) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        yield RawStream(response)


async def test_wire_format(live: LiveServer) -> None:
    """The bytes as sent: `retry: 1000` first; per event one block, its `data:` the event
    exactly as GET .../events/{id} answers it and its `id:` the seq; `: keepalive` comments at
    the configured interval (and no other comment while idle); Last-Event-ID resumes after
    that seq. Checked once against a broken variant (the keep-alive left to FastAPI's own
    15 s ping): this test failed."""
    async with live(stream_keepalive_seconds=0.2) as base, httpx.AsyncClient(base_url=base) as c:
        cid = (await create_conversation(c))["id"]
        sent = [await send_message(c, cid, text) for text in ("a", "b", "c")]
        shown = [(await c.get(f"/api/conversations/{cid}/events/{e['id']}")).text for e in sent]
        with_seq = await c.get(f"/api/conversations/{cid}/events/{sent[1]['id']}", params=WITH_SEQ)
        async with raw_stream(base, cid, params={"replay": "all"}) as stream:
            assert await stream.blocks(3) == [
                "retry: 1000",
                f"data: {shown[0]}\nid: 1",
                f"data: {shown[1]}\nid: 2",
            ]
            started = asyncio.get_running_loop().time()
            blocks = await stream.blocks(4)
            idle = asyncio.get_running_loop().time() - started
        async with raw_stream(base, cid, headers={"Last-Event-ID": "1"}, params=WITH_SEQ) as again:
            resumed = await again.blocks(3)
    assert blocks[0] == f"data: {shown[2]}\nid: 3"
    assert blocks[1:] == [": keepalive"] * 3 and idle < 10, (blocks, idle)
    assert resumed[0] == "retry: 1000"
    assert resumed[1] == f"data: {with_seq.text}\nid: 2" and '"seq":2' in with_seq.text
    assert resumed[2].endswith("\nid: 3") and '"seq":3' in resumed[2]


async def test_a_client_too_far_behind_is_told_and_the_stream_ends(
    live: LiveServer, db: Database
) -> None:
    """More events at once than the client buffer holds: a last comment, then the end; the
    client resumes by seq. Checked once against a broken variant (no last comment): this test
    failed."""
    async with live(stream_client_buffer=2) as base, httpx.AsyncClient(base_url=base) as c:
        cid = (await create_conversation(c))["id"]
        async with raw_stream(base, cid) as stream:
            assert await stream.blocks(1) == ["retry: 1000"]
            await asyncio.sleep(0.3)  # the stream subscribes right after its first block
            async with db.session(write=True) as session:
                events = [
                    MessageEvent(
                        source="user",
                        llm_message=Message(role="user", content=[TextContent(text=t)]),
                    )
                    for t in "xyz"
                ]
                await events_service.append(session, uuid.UUID(str(cid)), events)
            rest = await stream.blocks(10)
        async with sse(base, cid, headers={"Last-Event-ID": "0"}) as resumed:
            await resumed.events(3)
    assert rest == [": too far behind; reconnect with Last-Event-ID"]
    assert resumed.seqs == [1, 2, 3]


async def test_openapi_documents_a_stream_and_json_errors(db: Database) -> None:
    operation = make_app(db).openapi()["paths"][STREAM_PATH]["get"]
    responses = operation["responses"]
    stream = responses["200"]["content"]
    assert list(stream) == ["text/event-stream"]
    # FastAPI's `itemSchema` is OpenAPI 3.2: in this 3.1 document it is an extension.
    items = stream["text/event-stream"]["x-itemSchema"]
    assert set(items["properties"]) >= {"data", "id", "retry"}
    for status in ("400", "401", "404", "422"):
        assert responses[status]["content"] == {
            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
        }, status
    names = {p["name"] for p in operation["parameters"]}
    assert names >= {"conversation_id", "after_seq", "replay", "with_seq", "last-event-id"}
