"""Shutdown gives runs back: the step in flight ends (or is cut off when the grace runs out),
then the run is queued again, or paused when a tool call was cut off; another worker goes on.

Each app below is stopped by leaving its `async with`, which runs the lifespan shutdown as
uvicorn does on SIGTERM (tests/runs/test_shutdown_process.py sends the real signal)."""

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select, update

from app.config import Settings
from app.db.session import Database
from app.models import LLMCall, Run
from tests.conftest import create_conversation, wait_for
from tests.runs.agents import agent_spec
from tests.runs.conftest import FakeLLM, RunAppFactory, events_of, states, wait_run

THINK = {"tool_calls": [{"name": "think", "arguments": {"thought": "next"}}]}
ENDED = {"completed", "failed", "cancelled", "interrupted"}


def _llm_agent(llm: FakeLLM, kind: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "llm": {"model": "openai/fake-model", "base_url": llm.model_url, "api_key": "k"},
    }


async def _start(client: httpx.AsyncClient, agent: dict[str, Any]) -> tuple[str, str]:
    conversation = await create_conversation(
        client, agent=agent, initial_message={"content": [{"text": "work"}]}
    )
    cid = str(conversation["id"])
    response = await client.post(f"/api/conversations/{cid}/run")
    assert response.status_code == 202, response.text
    return cid, str(response.json()["id"])


async def _wait_for(
    client: httpx.AsyncClient, cid: str, kind: str, count: int = 1, wait: float = 20
) -> None:
    async def seen() -> bool:
        return sum(e["kind"] == kind for e in await events_of(client, cid)) >= count

    await wait_for(seen, f"{count} {kind}", limit=wait, every=0.02)


async def _read_back(
    run_app: RunAppFactory, cid: str, run_id: str
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """The run, the conversation and its events, read by a fresh app with no worker."""
    async with run_app(run_worker_enabled=False) as client:
        run = (await client.get(f"/api/runs/{run_id}")).json()
        conversation = (await client.get(f"/api/conversations/{cid}")).json()
        return run, conversation, await events_of(client, cid, with_seq=True)


async def _llm_requests(llm: FakeLLM, count: int, wait: float = 20) -> None:
    """Until the fake LLM has received `count` requests (it records each as it arrives)."""

    async def received() -> bool:
        return len(await llm.requests()) >= count

    await wait_for(received, f"{count} LLM requests", limit=wait, every=0.02)


def _answers(events: list[dict[str, Any]]) -> dict[str, str]:
    """tool_call_id -> the kind of its answer, for every action; fails on an unanswered one."""
    answered: dict[str, str] = {}
    for event in events:
        if event["kind"] in ("ObservationEvent", "AgentErrorEvent") and event.get("tool_call_id"):
            answered[event["tool_call_id"]] = event["kind"]
    actions = [e["tool_call_id"] for e in events if e["kind"] == "ActionEvent"]
    assert all(call in answered for call in actions), f"dangling actions: {events}"
    return {call: answered[call] for call in actions}


def _assert_gapless(events: list[dict[str, Any]]) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


async def _llm_calls(db: Database, cid: str) -> int:
    async with db.session(write=False) as session:
        stmt = select(func.count()).where(LLMCall.conversation_id == uuid.UUID(cid))
        return int((await session.execute(stmt)).scalar_one())


def test_the_grace_is_a_setting_of_zero_or_more(monkeypatch: pytest.MonkeyPatch) -> None:
    def grace(**values: Any) -> float:
        return Settings(_env_file=None, **values).shutdown_grace_seconds  # type: ignore[call-arg]

    monkeypatch.delenv("AGENT_SERVER_SHUTDOWN_GRACE_SECONDS", raising=False)
    assert grace() == 10
    monkeypatch.setenv("AGENT_SERVER_SHUTDOWN_GRACE_SECONDS", "2.5")
    assert grace() == 2.5
    assert grace(shutdown_grace_seconds=0) == 0
    with pytest.raises(ValidationError):
        grace(shutdown_grace_seconds=-1)


@pytest.mark.parametrize("kind", ["LLMAgent", "SyncLLMAgent"])
async def test_the_step_in_flight_ends_and_the_run_is_queued_again(
    run_app: RunAppFactory, llm: FakeLLM, db: Database, kind: str
) -> None:
    """Stopped during its second LLM call, the run finishes that step (the call, the tool and
    both events), is queued again, and a new worker completes it from its events without
    calling the LLM again for what was done. For the sync agent (its loop on the run pool)
    the same step boundary holds. Checked once against the old stop (cancel the runners and
    leave their leases to lapse): the run stayed `running`, for a sweeper to fail."""
    await llm.script(THINK, THINK, THINK, THINK, latency=0.8)
    async with run_app(shutdown_grace_seconds=10) as client:
        cid, run_id = await _start(client, _llm_agent(llm, kind))
        await _wait_for(client, cid, "ObservationEvent")
        await _llm_requests(llm, 2)  # the stop comes during the second call, not before it
        begun = time.monotonic()
    took = time.monotonic() - begun
    run, conversation, events = await _read_back(run_app, cid, run_id)
    assert took < 8, "the step took 0.8 s, not the whole grace"
    assert run["status"] == "queued" and run["stop_reason"] is None, run
    assert run["worker_id"] is None and run["lease_expires_at"] is None
    assert conversation["execution_status"] == "running"  # its run waits in the queue
    assert states(events) == ["running"]  # given back: still running, its run queued
    assert events[-1]["kind"] == "ObservationEvent"  # the step in flight, then nothing
    answers = _answers(events)
    assert len(answers) >= 2, "the step in flight was finished, not dropped"
    assert set(answers.values()) == {"ObservationEvent"}
    assert run["iterations"] == len(answers)
    assert conversation["stats"]["llm_calls"] == len(answers) == await _llm_calls(db, cid)
    done_before = len(answers)

    async with run_app() as client:
        run = await wait_run(client, run_id, ENDED)
        conversation = (await client.get(f"/api/conversations/{cid}")).json()
        events = await events_of(client, cid, with_seq=True)
    assert run["status"] == "completed" and run["stop_reason"] == "finished", run
    assert run["iterations"] == 5, "four thinks and the finish, counted across both workers"
    assert conversation["execution_status"] == "finished"
    assert states(events) == ["running", "finished", "full_state=finished"]
    answers = _answers(events)
    assert len(answers) == 5 and set(answers.values()) == {"ObservationEvent"}
    _assert_gapless(events)
    requests = await llm.requests()
    assert len(requests) == 5, "no LLM call was repeated"
    resumed = requests[done_before]["messages"]
    assert sum(m["role"] == "tool" for m in resumed) == done_before, "context from the events"


@pytest.mark.parametrize("kind", ["LLMAgent", "SyncLLMAgent"])
async def test_an_llm_call_still_going_when_the_grace_ends_is_cut_off(
    run_app: RunAppFactory, llm: FakeLLM, kind: str
) -> None:
    """The second LLM call takes 8 s, the grace is 0.5 s: the stop returns within a few
    seconds, the call is abandoned (an async call is cancelled; a sync one is left to its
    thread, whose later writes are refused), nothing of that step is written and the run is
    queued again; the next worker makes the call again. Checked once against a runner that
    ignores the cut: the worker had to cancel it and the run stayed `running`."""
    await llm.script(THINK, {**THINK, "latency": 8})
    async with run_app(shutdown_grace_seconds=0.5) as client:
        cid, run_id = await _start(client, _llm_agent(llm, kind))
        await _wait_for(client, cid, "ObservationEvent")
        await _llm_requests(llm, 2)
        await asyncio.sleep(0.3)
        begun = time.monotonic()
    took = time.monotonic() - begun
    run, conversation, events = await _read_back(run_app, cid, run_id)
    assert took < 5, took
    assert run["status"] == "queued" and run["iterations"] == 1, run
    assert conversation["execution_status"] == "running"  # its run waits in the queue
    assert list(_answers(events).values()) == ["ObservationEvent"]
    assert states(events) == ["running"]  # given back: still running, its run queued

    async with run_app() as client:
        run = await wait_run(client, run_id, ENDED)
        events = await events_of(client, cid, with_seq=True)
    assert run["status"] == "completed" and run["iterations"] == 2, run
    assert list(_answers(events).values()) == ["ObservationEvent", "ObservationEvent"]
    _assert_gapless(events)


@pytest.mark.parametrize("kind", ["ToolTestAgent", "SyncToolTestAgent"])
async def test_a_tool_call_cut_off_gets_an_error_and_the_run_is_paused(
    run_app: RunAppFactory, kind: str
) -> None:
    """The tool sleeps 2 s, the grace is 0.5 s: the stop returns within a few seconds; the
    action gets an AgentErrorEvent (a tool in a thread cannot be killed: it may have had
    effects, so it is never run again silently), the run is cancelled with stop_reason
    `shutdown` and the conversation paused. When the tool ends later its observation is not
    written. A new run goes on. Checked once against a runner that queues such a run again
    (it was `queued`, not `cancelled`) and once against one that writes no AgentErrorEvent
    for the cut-off call (the action was left dangling)."""
    async with run_app(shutdown_grace_seconds=0.5) as client:
        cid, run_id = await _start(client, agent_spec(kind, sleep=2))
        await _wait_for(client, cid, "ActionEvent")
        begun = time.monotonic()
    took = time.monotonic() - begun
    await asyncio.sleep(2.5)  # the tool has ended by now
    run, conversation, events = await _read_back(run_app, cid, run_id)
    assert took < 5, took
    assert run["status"] == "cancelled" and run["stop_reason"] == "shutdown", run
    assert run["finished_at"] is not None and run["lease_expires_at"] is None
    assert conversation["execution_status"] == "paused"
    assert list(_answers(events).values()) == ["AgentErrorEvent"]
    error = next(e for e in events if e["kind"] == "AgentErrorEvent")
    assert "shutdown" in error["error"] and error["tool_name"] == "sleep"
    assert states(events) == ["running", "paused", "full_state=paused"]
    assert events[-1]["kind"] == "ConversationStateUpdateEvent"
    _assert_gapless(events)

    async with run_app() as client:
        again = (await client.post(f"/api/conversations/{cid}/run")).json()
        run = await wait_run(client, again["id"], ENDED)
        events = await events_of(client, cid, with_seq=True)
    assert run["status"] == "completed", run
    assert list(_answers(events).values()) == ["AgentErrorEvent", "ObservationEvent"]
    _assert_gapless(events)


async def test_a_sync_agent_ends_at_its_step_boundary(run_app: RunAppFactory) -> None:
    """A sync-only agent (its whole loop on a run-pool thread) sleeping 1 s per step: its
    step in flight ends and writes its event, then the run is queued again. Checked once
    without the boundary check in the sync loop: the run went on to its end and completed."""
    async with run_app(shutdown_grace_seconds=10) as client:
        cid, run_id = await _start(client, agent_spec("SyncTestAgent", steps=4, sleep=1))
        await _wait_for(client, cid, "MessageEvent", count=2)  # the user's and step 1's
        await asyncio.sleep(0.3)  # step 2 is in its 1 s sleep, not yet to begin
        begun = time.monotonic()
    took = time.monotonic() - begun
    run, _, events = await _read_back(run_app, cid, run_id)
    said = [e for e in events if e["kind"] == "MessageEvent" and e["source"] == "agent"]
    assert 0.2 < took < 5, "it waited for the step in flight, not for the whole run"
    assert run["status"] == "queued" and run["iterations"] == len(said) == 2, run
    assert states(events) == ["running"]  # given back: still running, its run queued
    async with run_app() as client:
        run = await wait_run(client, run_id, ENDED)
        events = await events_of(client, cid, with_seq=True)
    said = [e for e in events if e["kind"] == "MessageEvent" and e["source"] == "agent"]
    assert run["status"] == "completed" and len(said) == 4, run
    assert said[-1]["llm_message"]["content"][0]["text"].startswith("step 4 ")
    _assert_gapless(events)


async def test_a_run_taken_over_meanwhile_gets_nothing_written(
    run_app: RunAppFactory, db: Database
) -> None:
    """Another worker takes the run over (a new lease epoch) while its step sleeps; the step
    is cut off at shutdown and the give-back write is refused by the fence: nothing is
    written, the run and the conversation stay as the other worker has them. (Control
    polling is slowed to 30 s so that the fence, not the control loop, notices.) Checked
    once against a runner whose fence check is skipped: the conversation was moved to
    `queued` under the other worker's feet."""
    async with run_app(shutdown_grace_seconds=0.5, control_poll_seconds=30) as client:
        cid, run_id = await _start(client, agent_spec("AsyncTestAgent", steps=2, sleep=5))
        await wait_run(client, run_id, {"running"})
        await asyncio.sleep(0.3)
        async with db.session(write=True) as session:
            await session.execute(
                update(Run)
                .where(Run.id == uuid.UUID(run_id))
                .values(lease_epoch=Run.lease_epoch + 1, worker_id="someone-else")
            )
        before = await events_of(client, cid, with_seq=True)
    run, conversation, after = await _read_back(run_app, cid, run_id)
    assert run["status"] == "running" and run["worker_id"] == "someone-else", run
    assert conversation["execution_status"] == "running"
    assert after == before
