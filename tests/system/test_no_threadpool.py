"""No request runs code on the worker-thread pool.

FastAPI runs a plain `def` endpoint or dependency on a worker thread (anyio.to_thread): a
thread hop per call, which under load (the GIL shared with run threads) cost each event search
several milliseconds. Every endpoint and dependency is `async def`. Checked once against the
broken variant (event_filter as a plain def): this test failed naming it."""

from collections.abc import Callable
from typing import Any

import anyio.to_thread
import httpx
import pytest

from tests.conftest import create_conversation, send_message


async def test_requests_never_hop_to_the_thread_pool(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    hops: list[str] = []
    original = anyio.to_thread.run_sync

    async def recording(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(func, "__qualname__", repr(func)))
        return await original(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", recording)
    cid = (await create_conversation(client))["id"]
    await send_message(client, cid, "hello")
    skill = "---\nname: tidy\ndescription: Keep it tidy.\n---\nTidy up."
    requests = [
        ("GET", f"/api/conversations/{cid}", None),
        ("PATCH", f"/api/conversations/{cid}", {"title": "t"}),
        ("GET", "/api/conversations/search", None),
        ("GET", "/api/conversations/count", None),
        ("GET", f"/api/conversations/{cid}/events/search", None),
        ("GET", f"/api/conversations/{cid}/events/search?kind=MessageEvent&body=hel", None),
        ("GET", f"/api/conversations/{cid}/events/count?source=user", None),
        ("GET", f"/api/conversations/{cid}/runs", None),
        ("POST", "/api/skills", {"content": skill}),
        ("GET", "/api/skills", None),
        ("GET", "/api/skills/tidy/revisions", None),
        ("GET", "/health", None),
        ("GET", "/ready", None),
    ]
    for method, url, body in requests:
        response = await client.request(method, url, json=body)
        assert response.status_code < 300, (url, response.text)
    assert hops == []
