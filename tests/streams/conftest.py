"""A real HTTP server in the test's event loop (streams need one: ASGITransport buffers whole
responses), and an SSE reader."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import uvicorn

from app.db.session import Database
from tests.conftest import WITH_SEQ, make_app, wait_for

FAST_STREAMS = {"stream_poll_seconds": 0.05, "stream_backstop_seconds": 0.5}


@contextlib.asynccontextmanager
async def live_server(db: Database, **settings: Any) -> AsyncIterator[str]:
    app = make_app(db, **{**FAST_STREAMS, **settings})
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())

    async def up_or_ended() -> bool:
        return server.started or task.done()

    await wait_for(up_or_ended, "the test server's start", limit=30, every=0.01)
    assert server.started, "the test server did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


LiveServer = Callable[..., contextlib.AbstractAsyncContextManager[str]]


@pytest.fixture
def live(db: Database) -> LiveServer:
    def factory(**settings: Any) -> contextlib.AbstractAsyncContextManager[str]:
        return live_server(db, **settings)

    return factory


class SSE:
    """Reads an open SSE response: events (id, data) and comments, one at a time. An event's
    SSE id is its seq: kept in `seqs`, and the data holds the same `seq` if the stream was
    asked for it (`with_seq`), none otherwise."""

    def __init__(self, response: httpx.Response, with_seq: bool = False) -> None:
        self.response = response
        self.lines = response.aiter_lines()
        self.comments: list[str] = []
        self.seqs: list[int] = []
        self.with_seq = with_seq

    async def next_event(self, wait: float = 10) -> dict[str, Any] | None:
        """The next event's data (its seq checked as the class says); None at the end."""
        event_id: str | None = None
        data: list[str] = []
        async with asyncio.timeout(wait):
            async for line in self.lines:
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                elif line.startswith("id:"):
                    event_id = line[3:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "" and data:
                    event: dict[str, Any] = json.loads("\n".join(data))
                    assert event_id is not None and event_id.isdigit(), (event_id, event)
                    seq = int(event_id)
                    assert event.get("seq") == (seq if self.with_seq else None), (seq, event)
                    self.seqs.append(seq)
                    return event
        return None

    async def events(self, n: int, wait: float = 10) -> list[dict[str, Any]]:
        found = []
        for _ in range(n):
            event = await self.next_event(wait)
            assert event is not None, f"stream ended after {len(found)} of {n} events"
            found.append(event)
        return found


@contextlib.asynccontextmanager
async def sse(
    base: str,
    conversation_id: object,
    headers: dict[str, str] | None = None,
    with_seq: bool = False,
    **params: Any,
) -> AsyncIterator[SSE]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        url = f"/api/conversations/{conversation_id}/events/stream"
        query = {**params, **(WITH_SEQ if with_seq else {})}
        async with client.stream("GET", url, params=query, headers=headers or {}) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            yield SSE(response, with_seq)
