"""Confirmation mode outlives its server: conversations left waiting by one process are
accepted and rejected through another, started after the first one stopped. Both
databases."""

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.crash.conftest import ServerFactory, llm_agent, wait_for
from tests.procs import stop
from tests.runs.conftest import FakeLLM

pytestmark = pytest.mark.slow  # server processes


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


async def _status(client: httpx.AsyncClient, cid: str, status: str) -> bool:
    got = (await client.get(f"/api/conversations/{cid}")).json()
    return bool(got["execution_status"] == status)


async def _waiting_conversation(client: httpx.AsyncClient, llm: FakeLLM, name: str) -> str:
    body = {"agent": llm_agent(llm.base_url), "confirmation_policy": {"kind": "AlwaysConfirm"}}
    created = await client.post("/api/conversations", json=body)
    assert created.status_code == 201, created.text
    cid = str(created.json()["id"])
    await llm.script(_call("file_editor", command="create", path=name, file_text="made"))
    message = {"role": "user", "content": [{"type": "text", "text": "make it"}], "run": True}
    sent = await client.post(f"/api/conversations/{cid}/events", json=message)
    assert sent.status_code == 201, sent.text
    await wait_for(lambda: _status(client, cid, "waiting_for_confirmation"), "the wait")
    return cid


async def test_a_wait_left_by_a_stopped_server_is_answered_by_the_next(
    servers: ServerFactory, llm: FakeLLM, tmp_path: Path
) -> None:
    first = await servers(worker=True)
    async with httpx.AsyncClient(base_url=first.base) as client:
        accepted = await _waiting_conversation(client, llm, "accepted.txt")
        rejected = await _waiting_conversation(client, llm, "rejected.txt")
    await asyncio.to_thread(stop, first.proc, 20)  # by its PID
    second = await servers(worker=True)
    await llm.script(_call("finish", message="done"))
    async with httpx.AsyncClient(base_url=second.base) as client:
        url = "/api/conversations/{}/events/respond_to_confirmation"
        ok = await client.post(url.format(accepted), json={"accept": True})
        no = await client.post(url.format(rejected), json={"accept": False, "reason": "no"})
        assert ok.status_code == no.status_code == 200, (ok.text, no.text)
        await wait_for(lambda: _status(client, accepted, "finished"), "the accepted run")
        assert await _status(client, rejected, "idle")
        search = f"/api/conversations/{rejected}/events/search"
        events = (await client.get(search, params={"limit": 100})).json()["items"]
    workspaces = tmp_path / "workspaces"
    made = await asyncio.to_thread((workspaces / accepted / "accepted.txt").read_text)
    assert made == "made"
    assert not await asyncio.to_thread((workspaces / rejected / "rejected.txt").exists)
    rejections = [e["rejection_reason"] for e in events if e["kind"] == "UserRejectObservation"]
    assert rejections == ["no"]
