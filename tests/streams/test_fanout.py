"""Fan-out: a slow subscriber is dropped without slowing others; another process's appends
reach this process's streams (NOTIFY on Postgres, polling on SQLite)."""

import asyncio
import time
import uuid

import httpx

from app.db.session import Database
from app.events import service as events_service
from app.events.schemas import Message, MessageEvent, TextContent
from app.streams.hub import EventHub
from tests.conftest import create_conversation, send_message
from tests.streams.conftest import LiveServer, live_server, sse


def _message(text: str) -> MessageEvent:
    return MessageEvent(
        source="user", llm_message=Message(role="user", content=[TextContent(text=text)])
    )


async def test_an_overflowing_subscriber_is_dropped_and_others_get_everything(
    db: Database, live: LiveServer
) -> None:
    """Checked once against a broken variant (an unbounded buffer): the slow subscriber was
    never dropped and this test failed."""
    async with live() as base, httpx.AsyncClient(base_url=base) as client:
        cid = uuid.UUID(str((await create_conversation(client))["id"]))
    hub = EventHub(db, poll_seconds=0.05, max_buffer=5)
    await hub.start()
    try:
        slow = await hub.subscribe(cid, 0)
        fast = await hub.subscribe(cid, 0)
        received: list[int] = []
        for i in range(12):
            async with db.session(write=True) as session:
                await events_service.append(session, cid, [_message(f"m{i}")])
            batch = await fast.next(5)
            received += [int(e["seq"]) for e in batch or []]
        while len(received) < 12:
            batch = await fast.next(5)
            assert batch is not None
            received += [int(e["seq"]) for e in batch]
        assert received == list(range(1, 13))
        assert slow.overflowed and slow not in slow.tail.subscribers
        assert await slow.next(0.1) == []  # the stream ends; the client resumes by seq
    finally:
        await hub.stop()


async def test_appends_by_another_process_reach_a_stream(db: Database) -> None:
    """Two apps, each with its own engine and hub, as two server processes would be. Only
    the database (NOTIFY on Postgres, polling on SQLite) can tell B about A's appends.
    Checked once against a broken variant (no NOTIFY and a 2 s backstop): it failed."""
    url = db.engine.url.render_as_string(hide_password=False)
    other = await asyncio.to_thread(Database.from_url, url)  # resolves a path: off the loop
    try:
        async with (
            live_server(db, stream_backstop_seconds=2) as base_a,
            live_server(other, stream_backstop_seconds=2) as base_b,
            httpx.AsyncClient(base_url=base_a) as a,
        ):
            cid = (await create_conversation(a))["id"]
            async with sse(base_b, cid) as stream:
                latencies = []
                for i in range(5):
                    started = time.perf_counter()
                    await send_message(a, cid, f"from A {i}")
                    (event,) = await stream.events(1, wait=5)
                    latencies.append(time.perf_counter() - started)
                    assert stream.seqs[-1] == i + 1
                    assert event["llm_message"]["content"] == [
                        {"type": "text", "text": f"from A {i}"}
                    ]
    finally:
        await other.dispose()
    # NOTIFY on Postgres, a 0.05 s poll on SQLite: far below the 2 s backstop either way.
    assert max(latencies) < 1.0, latencies
