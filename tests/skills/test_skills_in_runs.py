"""Skills in agent runs, through the LLM agent and the fake OpenAI-compatible server.

A run renders the enabled skills (or the enabled ones among those the conversation pins) into
its system prompt once, at its start, each in a `<skill name=... version=...>` element, and
records that prompt on a SystemPromptEvent; a later run records a new one only when its text
(a skill's version with it) or its tools changed.
"""

import re
from typing import Any

import httpx

from tests.conftest import create_conversation, wait_for
from tests.runs.conftest import FakeLLM, RunAppFactory, events_of, wait_run
from tests.skills.conftest import assert_error, create_skill, skill_md

DONE = {"completed", "failed", "interrupted", "cancelled"}


def _agent(llm: FakeLLM, **extra: Any) -> dict[str, Any]:
    return {
        "llm": {"model": "openai/fake-model", "base_url": llm.model_url, "api_key": "k"},
        "system_prompt": "Base prompt.",
        **extra,
    }


async def _start(client: httpx.AsyncClient, agent: dict[str, Any], text: str) -> tuple[str, str]:
    conversation = await create_conversation(
        client, agent=agent, initial_message={"content": [{"type": "text", "text": text}]}
    )
    cid = str(conversation["id"])
    response = await client.post(f"/api/conversations/{cid}/run")
    assert response.status_code == 202, response.text
    return cid, str(response.json()["id"])


def _prompts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == "SystemPromptEvent"]


def _skills(prompt: dict[str, Any]) -> list[tuple[str, int]]:
    """The skills a recorded prompt rendered, with their versions, as its text names them."""
    assert "skills" not in prompt, "the versions are in the prompt text, not a field"
    text = prompt["system_prompt"]["text"]
    found = re.findall(r'<skill name="([^"]+)" version="(\d+)">', text)
    return [(name, int(version)) for name, version in found]


def _system(request: dict[str, Any]) -> str:
    first = request["messages"][0]
    assert first["role"] == "system"
    text: str = first["content"]
    return text


async def test_pinning_unknown_skills_is_422(client: httpx.AsyncClient) -> None:
    await create_skill(client, "known")
    agent = {"llm": {"model": "m"}, "skills": ["known", "ghost", "phantom"]}
    response = await client.post("/api/conversations", json={"agent": agent})
    body = assert_error(response, 422, "validation_error")
    assert body["details"] == {"field": "agent.skills", "unknown": ["ghost", "phantom"]}
    bad = await client.post("/api/conversations", json={"agent": {**agent, "skills": ["No!"]}})
    assert_error(bad, 422, "validation_error")
    ok = await client.post("/api/conversations", json={"agent": {**agent, "skills": ["known"]}})
    assert ok.status_code == 201 and ok.json()["agent"]["skills"] == ["known"]
    count = await client.get("/api/conversations/count")
    assert count.json() == 1


async def test_a_run_renders_the_enabled_skills_and_records_their_versions(
    run_app: RunAppFactory, llm: FakeLLM
) -> None:
    await llm.script({"text": "ok"})
    async with run_app() as client:
        await create_skill(client, "alpha", body="Alpha instructions.")
        await create_skill(client, "beta", body="Beta instructions.", enabled=False)
        await create_skill(client, "gamma", body="Gamma v1.")
        await client.patch(
            "/api/skills/gamma", json={"content": skill_md("gamma", "G", "Gamma v2.")}
        )
        cid, run_id = await _start(client, _agent(llm), "hi")
        assert (await wait_run(client, run_id, DONE))["status"] == "completed"
        events = await events_of(client, cid)
    [prompt] = _prompts(events)
    assert _skills(prompt) == [("alpha", 1), ("gamma", 2)]
    system = _system((await llm.requests())[0])
    assert system == prompt["system_prompt"]["text"]
    assert system.startswith("Base prompt.\n\n# Skills")
    assert "Alpha instructions." in system and "Gamma v2." in system
    assert "Beta" not in system and "Gamma v1." not in system
    assert '<skill name="gamma" version="2">\n<description>G</description>' in system


async def test_a_conversation_uses_only_the_enabled_skills_it_pins(
    run_app: RunAppFactory, llm: FakeLLM
) -> None:
    await llm.script({"text": "one"}, {"text": "two"})
    async with run_app() as client:
        for name in ("pinned", "other", "off"):
            await create_skill(client, name, body=f"{name} body")
        await client.patch("/api/skills/off", json={"enabled": False})
        cid, run_id = await _start(client, _agent(llm, skills=["pinned", "off"]), "hi")
        await wait_run(client, run_id, DONE)
        _, none_run = await _start(client, _agent(llm, skills=[]), "hi")
        await wait_run(client, none_run, DONE)
        events = await events_of(client, cid)
    assert [_skills(p) for p in _prompts(events)] == [[("pinned", 1)]]
    first, second = await llm.requests()
    assert "pinned body" in _system(first)
    assert "other body" not in _system(first) and "off body" not in _system(first)
    assert _system(second) == "Base prompt.", "an empty pin list means no skills"


async def test_an_edit_during_a_run_does_not_change_that_run(
    run_app: RunAppFactory, llm: FakeLLM
) -> None:
    """The skill changes while the run's first LLM call is in flight: both calls of that run
    still carry version 1; the next run records and uses version 2."""
    await llm.script(
        {"tool_calls": [{"name": "think", "arguments": {"thought": "hm"}}], "latency": 1.5},
        {"text": "first run done"},
        {"text": "second run done"},
    )
    async with run_app() as client:
        await create_skill(client, "style", body="Answer in French.")
        cid, run_id = await _start(client, _agent(llm), "bonjour")
        await wait_for(llm.requests, "the run's first LLM call", limit=20, every=0.02)
        edited = await client.patch(
            "/api/skills/style", json={"content": skill_md("style", body="Answer in German.")}
        )
        assert edited.json()["version"] == 2
        run = await wait_run(client, run_id, DONE)
        assert run["status"] == "completed" and run["iterations"] == 2, run
        during = await llm.requests()
        events = await events_of(client, cid)
        assert [_skills(p) for p in _prompts(events)] == [[("style", 1)]]

        sent = await client.post(
            f"/api/conversations/{cid}/events",
            json={"content": [{"type": "text", "text": "again"}], "run": True},
        )
        await wait_run(client, sent.headers["x-run-id"], DONE)
        events = await events_of(client, cid)
        after = (await llm.requests())[len(during) :]
    assert len(during) == 2
    for request in during:
        assert "Answer in French." in _system(request)
        assert "German" not in _system(request)
    prompts = _prompts(events)
    assert [_skills(p) for p in prompts] == [[("style", 1)], [("style", 2)]]
    [second_run_request] = after
    assert "Answer in German." in _system(second_run_request)
    assert "French" not in _system(second_run_request), "only the latest prompt leads"
    roles = [m["role"] for m in second_run_request["messages"]]
    assert roles.count("system") == 1


async def test_a_run_with_unchanged_skills_records_no_new_prompt(
    run_app: RunAppFactory, llm: FakeLLM
) -> None:
    await llm.script({"text": "a"}, {"text": "b"}, {"text": "c"})
    async with run_app() as client:
        await create_skill(client, "steady")
        cid, run_id = await _start(client, _agent(llm), "one")
        await wait_run(client, run_id, DONE)
        for text in ("two", "three"):
            if text == "three":  # a toggle off and on again: a new version, so a new prompt
                await client.patch("/api/skills/steady", json={"enabled": False})
                await client.patch("/api/skills/steady", json={"enabled": True})
            sent = await client.post(
                f"/api/conversations/{cid}/events",
                json={"content": [{"type": "text", "text": text}], "run": True},
            )
            await wait_run(client, sent.headers["x-run-id"], DONE)
        events = await events_of(client, cid)
    prompts = _prompts(events)
    assert [_skills(p) for p in prompts] == [[("steady", 1)], [("steady", 3)]]
    assert prompts[0]["tools"] == prompts[1]["tools"], "only the text changed"


async def test_a_run_whose_tools_changed_records_a_new_prompt(
    run_app: RunAppFactory, llm: FakeLLM
) -> None:
    """The same skills and text, but the terminal enabled for the second run: its tools
    differ, so it records a new prompt, and the LLM is given the new tools. Checked once
    against still_holds comparing the text alone: only one prompt was recorded."""
    await llm.script({"text": "a"}, {"text": "b"})
    async with run_app() as client:
        await create_skill(client, "steady")
        cid, run_id = await _start(client, _agent(llm), "one")
        await wait_run(client, run_id, DONE)
    async with run_app(enable_terminal=True) as client:
        sent = await client.post(
            f"/api/conversations/{cid}/events",
            json={"content": [{"type": "text", "text": "two"}], "run": True},
        )
        await wait_run(client, sent.headers["x-run-id"], DONE)
        events = await events_of(client, cid)
    first, second = _prompts(events)
    assert first["system_prompt"] == second["system_prompt"]
    assert _skills(first) == _skills(second) == [("steady", 1)]
    assert [t["kind"] for t in first["tools"]] == [
        *("FinishTool", "ThinkTool", "FileEditorTool", "TaskTrackerTool")
    ]
    assert [t["kind"] for t in second["tools"]] == [
        *("FinishTool", "ThinkTool", "FileEditorTool", "TerminalTool", "TaskTrackerTool")
    ]
    requests = await llm.requests()
    assert "terminal" in {t["function"]["name"] for t in requests[1]["tools"]}
    assert [m["role"] for m in requests[1]["messages"]].count("system") == 1
