"""The LLM agent through litellm against the fake OpenAI-compatible server on 127.0.0.1."""

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.db.session import Database
from app.models import LLMCall
from tests.conftest import create_conversation, wait_for
from tests.runs.conftest import FakeLLM, RunAppFactory, events_of, wait_run


def _agent(llm: FakeLLM, **extra: Any) -> dict[str, Any]:
    return {
        "llm": {"model": "openai/fake-model", "base_url": llm.model_url, "api_key": "k"},
        **extra,
    }


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


async def _run(
    client: httpx.AsyncClient, agent: dict[str, Any], text: str, **conv: Any
) -> tuple[str, dict[str, Any]]:
    conversation = await create_conversation(
        client,
        agent=agent,
        initial_message={"content": [{"type": "text", "text": text}]},
        **conv,
    )
    cid = str(conversation["id"])
    response = await client.post(f"/api/conversations/{cid}/run")
    assert response.status_code == 202, response.text
    run = await wait_run(
        client, response.json()["id"], {"completed", "failed", "interrupted", "cancelled"}
    )
    return cid, run


async def test_tool_calls_become_actions_and_observations(
    run_app: RunAppFactory, llm: FakeLLM, tmp_path: Path, db: Database
) -> None:
    await llm.script(
        {"text": "Let me think.", "tool_calls": [_call("think", thought="plan")]},
        {
            "tool_calls": [
                _call("file_editor", command="create", path="notes/a.txt", file_text="hi")
            ]
        },
        {"tool_calls": [_call("finish", message="all done")]},
    )
    async with run_app() as client:
        cid, run = await _run(client, _agent(llm), "write a note")
        events = await events_of(client, cid)
        conversation = (await client.get(f"/api/conversations/{cid}")).json()
    assert run["status"] == "completed" and run["stop_reason"] == "finished", run
    assert run["iterations"] == 3
    kinds = [e["kind"] for e in events if e["kind"] != "ConversationStateUpdateEvent"]
    assert kinds == [
        "MessageEvent", "SystemPromptEvent",
        "ActionEvent", "ObservationEvent",
        "ActionEvent", "ObservationEvent",
        "ActionEvent", "ObservationEvent",
    ]  # fmt: skip
    (prompt,) = [e for e in events if e["kind"] == "SystemPromptEvent"]
    assert [(t["kind"], t["title"], t["action_type"]) for t in prompt["tools"]] == [
        ("FinishTool", "finish", "FinishAction"),
        ("ThinkTool", "think", "ThinkAction"),
        ("FileEditorTool", "file_editor", "FileEditorAction"),
        ("TaskTrackerTool", "task_tracker", "TaskTrackerAction"),
    ]
    actions = [e for e in events if e["kind"] == "ActionEvent"]
    observations = [e for e in events if e["kind"] == "ObservationEvent"]
    assert actions[0]["thought"] == [{"type": "text", "text": "Let me think."}]
    assert [a["thought"] for a in actions[1:]] == [[], []]
    edit = {"command": "create", "path": "notes/a.txt", "file_text": "hi"}
    assert [a["tool_call"]["arguments"] for a in actions] == [
        json.dumps({"thought": "plan"}),
        json.dumps(edit),
        json.dumps({"message": "all done"}),
    ], "the arguments as the LLM sent them"
    assert [a["action"] for a in actions] == [
        {"kind": "ThinkAction", "thought": "plan"},
        {"kind": "FileEditorAction", **edit},
        {"kind": "FinishAction", "message": "all done"},
    ]
    assert [o["observation"]["kind"] for o in observations] == [
        "ThinkObservation",
        "FileEditorObservation",
        "FinishObservation",
    ]
    assert observations[1]["observation"]["command"] == "create"
    assert observations[1]["observation"]["path"] == "notes/a.txt"
    response_ids = [a["llm_response_id"] for a in actions]
    assert all(r.startswith("chatcmpl-fake-") for r in response_ids), response_ids
    assert len(set(response_ids)) == 3, "one LLM response per step"
    for action, observation in zip(actions, observations, strict=True):
        assert "arguments" not in action and action["security_risk"] == "UNKNOWN"
        assert action["tool_call"]["id"] == action["tool_call_id"]
        assert action["tool_call"]["name"] == action["tool_name"]
        assert action["tool_call"]["origin"] == "completion"
        assert observation["tool_call_id"] == action["tool_call_id"]
        assert observation["action_id"] == action["id"]
        assert observation["tool_name"] == action["tool_name"]
        assert "content" not in observation and observation["observation"]["is_error"] is False
        assert [p["type"] for p in observation["observation"]["content"]] == ["text"]
    note = tmp_path / "workspaces" / cid / "notes" / "a.txt"
    assert await asyncio.to_thread(note.read_text) == "hi"
    assert conversation["execution_status"] == "finished"
    assert conversation["stats"]["llm_calls"] == 3
    assert conversation["stats"]["prompt_tokens"] == 33
    async with db.session(write=False) as session:
        calls = (
            (
                await session.execute(
                    select(LLMCall).where(LLMCall.conversation_id == uuid.UUID(cid))
                )
            )
            .scalars()
            .all()
        )
    assert len(calls) == 3 and all(c.error is None and c.latency_ms > 0 for c in calls)
    stats = conversation["stats"]
    assert stats["prompt_tokens"] == sum(c.prompt_tokens or 0 for c in calls)
    assert stats["completion_tokens"] == sum(c.completion_tokens or 0 for c in calls)
    assert stats["llm_latency_ms"] == pytest.approx(sum(c.latency_ms for c in calls), abs=0.01)
    assert all(c.cost_usd is None for c in calls), "no price for a fake model: unknown, not 0"
    requests = await llm.requests()
    assert requests[0]["messages"][0]["role"] == "system"
    assert requests[0]["messages"][1] == {"role": "user", "content": "write a note"}
    assert {t["function"]["name"] for t in requests[0]["tools"]} == {
        "finish",
        "think",
        "file_editor",
        "task_tracker",
    }
    last = requests[2]["messages"]
    assert [m["role"] for m in last[-4:]] == ["assistant", "tool", "assistant", "tool"]
    # The context gives back each call's raw arguments and its observation's text.
    sent_calls = [m["tool_calls"][0] for m in last[-4:] if m["role"] == "assistant"]
    assert [c["function"]["arguments"] for c in sent_calls] == [
        a["tool_call"]["arguments"] for a in actions[:2]
    ]
    assert [c["id"] for c in sent_calls] == [a["tool_call_id"] for a in actions[:2]]
    sent_results = [(m["tool_call_id"], m["content"]) for m in last[-4:] if m["role"] == "tool"]
    assert sent_results == [
        (o["tool_call_id"], o["observation"]["content"][0]["text"]) for o in observations[:2]
    ]


async def test_a_plain_reply_ends_the_run(run_app: RunAppFactory, llm: FakeLLM) -> None:
    await llm.script({"text": "Hello there!"})
    async with run_app() as client:
        cid, run = await _run(client, _agent(llm), "hi")
        events = await events_of(client, cid)
    assert run["status"] == "completed"
    reply = [e for e in events if e["kind"] == "MessageEvent" and e["source"] == "agent"]
    assert reply[0]["llm_message"]["content"][0]["text"] == "Hello there!"


async def test_transient_errors_are_retried(
    run_app: RunAppFactory, llm: FakeLLM, db: Database
) -> None:
    await llm.script({"error": 429, "message": "slow down"}, {"error": 503})
    async with run_app() as client:
        cid, run = await _run(client, _agent(llm), "hi")
    assert run["status"] == "completed", run
    async with db.session(write=False) as session:
        errors = (
            (
                await session.execute(
                    select(LLMCall.error).where(LLMCall.conversation_id == uuid.UUID(cid))
                )
            )
            .scalars()
            .all()
        )
    assert sum(e is not None for e in errors) == 2 and len(errors) == 3


async def test_a_fatal_llm_error_fails_the_run(run_app: RunAppFactory, llm: FakeLLM) -> None:
    await llm.script({"error": 400, "message": "bad request from the model"})
    async with run_app() as client:
        cid, run = await _run(client, _agent(llm), "hi")
        events = await events_of(client, cid)
        conversation = (await client.get(f"/api/conversations/{cid}")).json()
    assert run["status"] == "failed" and run["stop_reason"] == "error", run
    assert "bad request from the model" in run["error"]
    errors = [e for e in events if e["kind"] == "ConversationErrorEvent"]
    assert errors and "bad request" in errors[0]["detail"]
    assert conversation["execution_status"] == "error"


async def test_max_iterations_stops_the_run(run_app: RunAppFactory, llm: FakeLLM) -> None:
    await llm.script(*[{"tool_calls": [_call("think", thought=f"t{i}")]} for i in range(10)])
    async with run_app() as client:
        cid, run = await _run(client, _agent(llm), "loop", max_iterations=3)
        conversation = (await client.get(f"/api/conversations/{cid}")).json()
    assert run["status"] == "completed" and run["stop_reason"] == "max_iterations", run
    assert run["iterations"] == 3
    assert conversation["execution_status"] == "paused"


async def test_tool_errors_are_observations_not_failures(
    run_app: RunAppFactory, llm: FakeLLM, tmp_path: Path
) -> None:
    await llm.script(
        {
            "tool_calls": [
                _call("file_editor", command="create", path="../escape.txt", file_text="x")
            ]
        },
        {"tool_calls": [{"name": "nope", "arguments": {}}]},
        {"tool_calls": [{"name": "think", "raw_arguments": "{not json"}]},
    )
    async with run_app() as client:
        cid, run = await _run(client, _agent(llm), "try things")
        events = await events_of(client, cid)
    assert run["status"] == "completed", run
    actions = [e for e in events if e["kind"] == "ActionEvent"][:3]
    assert [a["action"] for a in actions] == [
        {
            "kind": "FileEditorAction",
            "command": "create",
            "path": "../escape.txt",
            "file_text": "x",
        },
        None,  # an unknown tool
        None,  # arguments that are not JSON
    ]
    assert actions[2]["tool_call"]["arguments"] == "{not json", "kept as the LLM sent it"
    answers = [e for e in events if e["kind"] == "AgentErrorEvent"]
    assert [(e["tool_name"], e["tool_call_id"]) for e in answers] == [
        (a["tool_name"], a["tool_call_id"]) for a in actions
    ]
    errors = [e["error"] for e in answers]
    assert len(errors) == 3
    assert "outside the workspace" in errors[0]
    assert "unknown tool" in errors[1]
    assert "not valid JSON" in errors[2]
    assert not await asyncio.to_thread((tmp_path / "workspaces" / "escape.txt").exists)


async def test_terminal_is_off_unless_enabled(run_app: RunAppFactory, llm: FakeLLM) -> None:
    await llm.script(
        {"tool_calls": [_call("terminal", command="echo hi")]},
    )
    async with run_app() as client:
        cid, _ = await _run(client, _agent(llm), "run it")
        events = await events_of(client, cid)
    errors = [e["error"] for e in events if e["kind"] == "AgentErrorEvent"]
    assert errors and "unknown tool 'terminal'" in errors[0]
    await llm.script({"tool_calls": [_call("terminal", command="echo hi from bash")]})
    async with run_app(enable_terminal=True) as client:
        cid, _ = await _run(client, _agent(llm), "run it")
        events = await events_of(client, cid)
    (action,) = [e for e in events if e["kind"] == "ActionEvent" and e["tool_name"] == "terminal"]
    assert action["action"] == {"kind": "TerminalAction", "command": "echo hi from bash"}
    observations = [e["observation"] for e in events if e["kind"] == "ObservationEvent"]
    assert observations[0]["kind"] == "TerminalObservation"
    assert observations[0]["command"] == "echo hi from bash"
    assert observations[0]["exit_code"] is None
    assert "hi from bash" in observations[0]["content"][0]["text"]


async def test_the_context_is_built_once_per_run(run_app: RunAppFactory, llm: FakeLLM) -> None:
    """A second run starts from the stored events: the LLM sees the first run's exchange."""
    await llm.script({"text": "first answer"}, {"text": "second answer"})
    async with run_app() as client:
        cid, _first = await _run(client, _agent(llm), "question one")
        await client.post(
            f"/api/conversations/{cid}/events",
            json={"content": [{"type": "text", "text": "question two"}]},
        )
        second = (await client.post(f"/api/conversations/{cid}/run")).json()
        await wait_run(client, second["id"], {"completed"})
        events = await events_of(client, cid)
    assert sum(e["kind"] == "SystemPromptEvent" for e in events) == 1
    messages = (await llm.requests())[1]["messages"]
    assert [(m["role"], m.get("content")) for m in messages[1:]] == [
        ("user", "question one"),
        ("assistant", "first answer"),
        ("user", "question two"),
    ]


async def test_the_sync_llm_agent_runs_on_the_run_pool(
    run_app: RunAppFactory, llm: FakeLLM
) -> None:
    """SyncLLMAgent implements only step(): litellm's sync client, on a run-pool thread."""
    await llm.script(
        {"tool_calls": [_call("think", thought="a"), _call("think", thought="b")]},
        {"tool_calls": [_call("finish", message="ok")]},
    )
    async with run_app(max_concurrent_runs=1) as client:
        cid, run = await _run(client, _agent(llm, kind="SyncLLMAgent"), "go")
        events = await events_of(client, cid)
        worker = client.app.state.worker  # type: ignore[attr-defined]
    assert run["status"] == "completed" and run["iterations"] == 2, run
    kinds = [e["kind"] for e in events if e["kind"] in ("ActionEvent", "ObservationEvent")]
    assert kinds == [
        "ActionEvent",
        "ActionEvent",
        "ObservationEvent",
        "ObservationEvent",
        "ActionEvent",
        "ObservationEvent",
    ]
    assert worker.pools.run_pool._thread_name_prefix == "conversation-run"
    actions = [e for e in events if e["kind"] == "ActionEvent"]
    assert actions[0]["llm_response_id"] == actions[1]["llm_response_id"], "one LLM answer"
    assert actions[1]["llm_response_id"] != actions[2]["llm_response_id"]
    second = (await llm.requests())[1]["messages"]
    (asked,) = [m for m in second if m["role"] == "assistant"]
    assert [c["function"]["arguments"] for c in asked["tool_calls"]] == [
        json.dumps({"thought": "a"}),
        json.dumps({"thought": "b"}),
    ], "the two calls of one answer go back as one assistant message"


async def test_send_message_with_run_starts_a_run(run_app: RunAppFactory, llm: FakeLLM) -> None:
    await llm.script({"text": "hi back"})
    async with run_app() as client:
        conversation = await create_conversation(client, agent=_agent(llm))
        cid = conversation["id"]
        sent = await client.post(
            f"/api/conversations/{cid}/events",
            json={"content": [{"type": "text", "text": "hello"}], "run": True},
        )
        assert sent.status_code == 201
        run = await wait_run(client, sent.headers["x-run-id"], {"completed", "failed"})
        quiet = await client.post(
            f"/api/conversations/{cid}/events",
            json={"content": [{"type": "text", "text": "no run"}]},
        )
        assert "x-run-id" not in quiet.headers
        runs = (await client.get(f"/api/conversations/{cid}/runs")).json()["items"]
    assert run["status"] == "completed"
    assert len(runs) == 1


async def test_interrupt_cancels_an_in_flight_llm_call(
    run_app: RunAppFactory, llm: FakeLLM
) -> None:
    await llm.script({"text": "too late", "latency": 20})
    async with run_app() as client:
        conversation = await create_conversation(
            client, agent=_agent(llm), initial_message={"content": [{"text": "slow"}]}
        )
        cid = conversation["id"]
        run = (await client.post(f"/api/conversations/{cid}/run")).json()
        await wait_for(llm.requests, "the LLM call")
        begun = asyncio.get_running_loop().time()
        await client.post(f"/api/conversations/{cid}/interrupt")
        done = await wait_run(client, run["id"], {"interrupted", "completed", "failed"}, wait=10)
        took = asyncio.get_running_loop().time() - begun
        events = await events_of(client, cid)
    assert done["status"] == "interrupted", done
    assert took < 5
    assert not [e for e in events if e["kind"] == "MessageEvent" and e["source"] == "agent"]


async def test_server_llm_defaults_and_known_prices(
    run_app: RunAppFactory, llm: FakeLLM, db: Database
) -> None:
    """No model in the conversation: AGENT_SERVER_LLM_* apply. A model litellm has a price
    for gets a cost; the fake model (earlier tests) gets null."""
    await llm.script({"text": "priced"})
    async with run_app(
        llm_model="openai/gpt-4o-mini", llm_base_url=llm.model_url, llm_api_key="k"
    ) as client:
        cid, run = await _run(client, {"llm": {}}, "hi")
        conversation = (await client.get(f"/api/conversations/{cid}")).json()
    assert run["status"] == "completed", run
    assert (await llm.requests())[0]["model"] == "gpt-4o-mini"
    assert conversation["stats"]["cost_usd"] is not None
    assert conversation["stats"]["cost_usd"] > 0


async def test_no_model_anywhere_fails_the_run_with_a_clear_error(run_app: RunAppFactory) -> None:
    async with run_app() as client:
        _, run = await _run(client, {"llm": {}}, "hi")
    assert run["status"] == "failed"
    assert "AGENT_SERVER_LLM_MODEL" in run["error"]


async def test_a_message_sent_during_a_run_is_answered_by_that_run(
    run_app: RunAppFactory, llm: FakeLLM
) -> None:
    """`run: true` while a run is active adds no run: the active one reads the message, even
    when it arrives as the agent is about to finish."""
    await llm.script({"text": "first answer", "latency": 1.0}, {"text": "second answer"})
    async with run_app() as client:
        conversation = await create_conversation(
            client, agent=_agent(llm), initial_message={"content": [{"text": "one"}]}
        )
        cid = conversation["id"]
        run = (await client.post(f"/api/conversations/{cid}/run")).json()
        await wait_for(llm.requests, "the first LLM call")
        sent = await client.post(
            f"/api/conversations/{cid}/events", json={"content": [{"text": "two"}], "run": True}
        )
        assert sent.headers["x-run-id"] == run["id"]
        done = await wait_run(client, run["id"], {"completed", "failed"})
        events = await events_of(client, cid)
        runs = (await client.get(f"/api/conversations/{cid}/runs")).json()["items"]
    assert done["status"] == "completed" and len(runs) == 1
    replies = [
        e["llm_message"]["content"][0]["text"]
        for e in events
        if e["kind"] == "MessageEvent" and e["source"] == "agent"
    ]
    assert replies == ["first answer", "second answer"]
    second_request = (await llm.requests())[1]["messages"]
    assert [m["content"] for m in second_request if m["role"] == "user"] == ["one", "two"]
