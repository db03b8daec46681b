"""The OpenHands-compatible WebSocket: auth, close codes, full_state, replay, messages."""

import asyncio
import json
import re
import threading
import uuid
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.runs.worker import Worker
from tests.conftest import create_conversation, send_message, wait_for
from tests.streams.conftest import LiveServer

KEY = {"X-Session-API-Key": "k"}
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")  # as every event's


def _texts(events: list[dict[str, Any]]) -> list[str]:
    return [e["llm_message"]["content"][0]["text"] for e in events]


def _ws(base: str, path: str) -> str:
    return base.replace("http://", "ws://") + path


async def _recv(ws: ClientConnection, wait: float = 10) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), wait))
    return data


async def _close_code(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed):
        for _ in range(10):
            await asyncio.wait_for(ws.recv(), 10)
    return ws.close_code


async def test_header_auth_full_state_then_replay_and_live(live: LiveServer) -> None:
    async with (
        live(session_api_keys=["k"]) as base,
        httpx.AsyncClient(base_url=base, headers=KEY) as client,
    ):
        cid = (await create_conversation(client))["id"]
        await send_message(client, cid, "one")
        await send_message(client, cid, "two")
        url = _ws(base, f"/sockets/events/{cid}?resend_mode=all&with_seq=true")
        async with connect(url, additional_headers=KEY) as ws:
            state = await _recv(ws)
            replayed = [await _recv(ws), await _recv(ws)]
            await send_message(client, cid, "three")
            live_event = await _recv(ws)
    assert state["kind"] == "ConversationStateUpdateEvent" and state["key"] == "full_state"
    assert state["value"]["id"] == cid
    assert "seq" not in state and STAMP.fullmatch(state["timestamp"]), state
    assert [e["seq"] for e in [*replayed, live_event]] == [1, 2, 3]
    assert _texts([*replayed, live_event]) == ["one", "two", "three"]


async def test_first_frame_auth_and_after_seq(live: LiveServer) -> None:
    async with (
        live(session_api_keys=["k"]) as base,
        httpx.AsyncClient(base_url=base, headers=KEY) as client,
    ):
        cid = (await create_conversation(client))["id"]
        for text in "abc":
            await send_message(client, cid, text)
        async with connect(_ws(base, f"/sockets/events/{cid}?after_seq=1")) as ws:
            await ws.send(json.dumps({"type": "auth", "session_api_key": "k"}))
            state = await _recv(ws)
            events = [await _recv(ws), await _recv(ws)]
    assert state["key"] == "full_state" and "seq" not in state
    assert _texts(events) == ["b", "c"]  # after seq 1
    assert [e for e in events if "seq" in e] == []  # not asked for


@pytest.mark.parametrize("frame", ['{"type": "auth", "session_api_key": "wrong"}', "hello", None])
async def test_failed_auth_closes_4001(live: LiveServer, frame: str | None) -> None:
    settings = {"session_api_keys": ["k"], "websocket_auth_timeout_seconds": 0.3}
    async with (
        live(**settings) as base,
        connect(_ws(base, f"/sockets/events/{uuid.uuid4()}")) as ws,
    ):
        if frame is not None:
            await ws.send(frame)
        assert await _close_code(ws) == 4001


async def test_wrong_header_key_closes_4001(live: LiveServer) -> None:
    async with live(session_api_keys=["k"]) as base:
        headers = {"X-Session-API-Key": "nope"}
        async with connect(
            _ws(base, f"/sockets/events/{uuid.uuid4()}"), additional_headers=headers
        ) as ws:
            assert await _close_code(ws) == 4001


@pytest.mark.parametrize("conversation", ["random", "not-a-uuid"])
async def test_unknown_conversation_closes_4004(live: LiveServer, conversation: str) -> None:
    cid = uuid.uuid4() if conversation == "random" else conversation
    async with live() as base, connect(_ws(base, f"/sockets/events/{cid}")) as ws:
        assert await _close_code(ws) == 4004


async def test_a_user_message_frame_is_appended_and_runs(live: LiveServer) -> None:
    async with live() as base, httpx.AsyncClient(base_url=base) as client:
        cid = (await create_conversation(client))["id"]
        async with connect(_ws(base, f"/sockets/events/{cid}")) as ws:
            await _recv(ws)  # full_state
            # The OpenHands client sends one even to a server without keys: ignored.
            await ws.send(json.dumps({"type": "auth", "session_api_key": "unneeded"}))
            await ws.send(json.dumps({"role": "user", "content": [{"type": "text", "text": "hi"}]}))
            seen = [await _recv(ws) for _ in range(2)]
            await ws.send(json.dumps({"role": "user", "content": []}))
            error = await _recv(ws)
        runs = (await client.get(f"/api/conversations/{cid}/runs")).json()["items"]
    message = next(e for e in seen if e["kind"] == "MessageEvent")
    assert message["source"] == "user" and message["llm_message"]["content"][0]["text"] == "hi"
    assert any(e["kind"] == "ConversationStateUpdateEvent" for e in seen), seen
    assert not [e for e in seen if "seq" in e or e.get("type") == "error"], seen
    assert len(runs) == 1 and runs[0]["status"] == "queued"  # no worker in this app
    assert error["type"] == "error"


async def test_a_message_frame_wakes_the_worker_on_the_event_loop(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's asyncio events are set on the loop's thread, never another (asyncio
    events are not thread-safe). Checked against the earlier code, which woke it through
    BackgroundTasks holding plain functions: the wake-up then ran on an AnyIO worker thread."""
    threads: list[threading.Thread] = []
    wake = Worker.claim_now

    def recording(self: Worker) -> None:
        threads.append(threading.current_thread())
        wake(self)

    monkeypatch.setattr(Worker, "claim_now", recording)
    async with live(run_worker_enabled=True) as base, httpx.AsyncClient(base_url=base) as client:
        cid = (await create_conversation(client))["id"]
        async with connect(_ws(base, f"/sockets/events/{cid}")) as ws:
            await _recv(ws)  # full_state
            threads.clear()
            await ws.send(json.dumps({"role": "user", "content": [{"type": "text", "text": "go"}]}))
            await _recv(ws)

            async def woken() -> bool:
                return bool(threads)

            await wait_for(woken, "the worker's wake-up", limit=10, every=0.01)
    assert all(thread is threading.main_thread() for thread in threads), threads
