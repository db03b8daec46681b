"""What an attacker-steered LLM sends is data, never a crash (security review).

A NUL byte or a lone surrogate in a tool call or a reply, invalid or unstorable JSON
arguments, an unknown tool, or an exception inside a tool becomes an AgentErrorEvent for that
call (or an ActionEvent whose text holds U+FFFD where the character could not be stored: in
`tool_call.arguments`, the raw text the LLM sent, and in `action`, the parsed arguments, null
when they are invalid), and the run goes on to `finish`. Every read path gives back exactly
what the runner stored, on SQLite and on Postgres, for the async agent (LLMAgent) and the
sync one (SyncLLMAgent).
"""

import asyncio
import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from app.agent import sdk_shapes, tools
from app.agent.tools import Env, Tool, ToolResult
from app.config import Settings
from app.db.session import Database
from app.events import service
from app.events.schemas import (
    ActionEvent,
    AgentErrorEvent,
    ConversationErrorEvent,
    ObservationEvent,
    TextContent,
    ToolCall,
)
from app.http import JSONBytes
from app.runs.journal import Journal
from tests.conftest import create_conversation, send_message
from tests.runs.conftest import FakeLLM, RunAppFactory, events_of, wait_run

AGENTS = ["LLMAgent", "SyncLLMAgent"]
ENDED = {"completed", "failed", "interrupted", "cancelled"}
FINISH = {"id": "call-finish", "name": "finish", "arguments": {"message": "done"}}
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


@pytest.fixture
def stored(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every event as the runner stored it: what its journal's _append returned."""
    seen: list[dict[str, Any]] = []
    append = Journal._append

    async def spy(self: Journal, events: Any) -> list[dict[str, Any]]:
        result = await append(self, events)
        seen.extend(result)
        return result

    monkeypatch.setattr(Journal, "_append", spy)
    return seen


def _agent(llm: FakeLLM, kind: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "llm": {"model": "openai/fake-model", "base_url": llm.model_url, "api_key": "k"},
    }


async def _run(client: httpx.AsyncClient, cid: str) -> dict[str, Any]:
    response = await client.post(f"/api/conversations/{cid}/run")
    assert response.status_code == 202, response.text
    return await wait_run(client, response.json()["id"], ENDED)


async def _converse(client: httpx.AsyncClient, llm: FakeLLM, kind: str) -> str:
    conversation = await create_conversation(
        client,
        agent=_agent(llm, kind),
        initial_message={"content": [{"type": "text", "text": "do it"}]},
    )
    cid = str(conversation["id"])
    run = await _run(client, cid)
    assert run["status"] == "completed" and run["stop_reason"] == "finished", run["error"]
    return cid


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _without_seq(event: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in event.items() if key != "seq"}


async def _events(
    client: httpx.AsyncClient, cid: str, stored: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The conversation's events as clients get them (without `seq`), after checking it is
    not in `error` and that search, get and batch get all give back exactly what the runner
    stored: with its seq when asked (`with_seq=true`), the same without it otherwise."""
    conversation = (await client.get(f"/api/conversations/{cid}")).json()
    assert conversation["execution_status"] == "finished", conversation
    rendered = orjson.loads(JSONBytes(stored).body)  # as the API renders them
    url = f"/api/conversations/{cid}/events"
    for with_seq in (True, False):
        expected = rendered if with_seq else [_without_seq(e) for e in rendered]
        flag = [("with_seq", "true")] if with_seq else []
        events = await events_of(client, cid, with_seq=with_seq)
        by_id = {event["id"]: event for event in events}
        ids = [("event_ids", e["id"]) for e in expected]
        assert (await client.get(url, params=[*flag, *ids])).json() == expected
        for event in expected:
            assert by_id[event["id"]] == event
            assert (await client.get(f"{url}/{event['id']}", params=flag)).json() == event
        assert not [s for s in _strings(events) if UNSTORABLE.search(s)]
    return events


def _of(events: list[dict[str, Any]], kind: str, call_id: str) -> dict[str, Any]:
    [event] = [e for e in events if e["kind"] == kind and e.get("tool_call_id") == call_id]
    return event


@pytest.mark.parametrize("kind", AGENTS)
async def test_nul_in_file_editor_arguments(
    run_app: RunAppFactory,
    llm: FakeLLM,
    stored: list[dict[str, Any]],
    tmp_path: Path,
    kind: str,
) -> None:
    """NUL in `path` is the tool's error; NUL in `file_text` is written to the file, and the
    action is stored with U+FFFD. Checked against the code before the fix: the run failed,
    on Postgres with UntranslatableCharacterError storing the ActionEvent, on SQLite with
    `ValueError: embedded null byte` out of _file_editor. With only the sanitizing removed:
    the same on Postgres, and on SQLite the NUL is stored (the last check of _events fails);
    with only Tool.run's catch removed: the ValueError fails the run on both."""
    await llm.script(
        {
            "tool_calls": [
                {
                    "id": "call-path",
                    "name": "file_editor",
                    "arguments": {"command": "create", "path": "a\x00b.txt", "file_text": "x"},
                },
                {
                    "id": "call-text",
                    "name": "file_editor",
                    "arguments": {"command": "create", "path": "ok.txt", "file_text": "x\x00y"},
                },
            ]
        },
        {"tool_calls": [FINISH]},
    )
    async with run_app() as client:
        cid = await _converse(client, llm, kind)
        events = await _events(client, cid, stored)
    action = _of(events, "ActionEvent", "call-path")
    # The LLM's raw text holds the NUL as a JSON escape, which is text: kept as sent.
    raw = json.dumps({"command": "create", "path": "a\x00b.txt", "file_text": "x"})
    assert action["tool_call"]["arguments"] == raw and "\\u0000" in raw
    assert action["action"] == {
        "kind": "FileEditorAction",
        "command": "create",
        "path": "a\ufffdb.txt",
        "file_text": "x",
    }
    error = _of(events, "AgentErrorEvent", "call-path")
    assert error["tool_name"] == "file_editor"
    assert error["error"] == "ValueError: embedded null byte"
    text_action = _of(events, "ActionEvent", "call-text")
    assert text_action["action"]["file_text"] == "x\ufffdy"
    observation = _of(events, "ObservationEvent", "call-text")["observation"]
    assert observation["kind"] == "FileEditorObservation" and observation["path"] == "ok.txt"
    assert observation["content"] == [{"type": "text", "text": "created ok.txt"}]
    written = tmp_path / "workspaces" / cid / "ok.txt"
    assert await asyncio.to_thread(written.read_text) == "x\x00y"


@pytest.mark.parametrize("kind", AGENTS)
async def test_nul_in_think_finish_and_replies(
    run_app: RunAppFactory, llm: FakeLLM, stored: list[dict[str, Any]], kind: str
) -> None:
    """NUL in a thought, in think's and finish's arguments and in a plain reply is stored as
    U+FFFD, and the next LLM call sees the stored text. Checked with the sanitizing removed:
    the run fails on Postgres (CharacterNotInRepertoireError: invalid byte sequence for
    encoding "UTF8": 0x00); on SQLite it finishes with the NUL stored, which the last check
    of _events finds."""
    await llm.script(
        {
            "text": "hm\x00",
            "tool_calls": [{"id": "call-think", "name": "think", "arguments": {"thought": "\x00"}}],
        },
        {"tool_calls": [{**FINISH, "arguments": {"message": "done\x00"}}]},
        {"text": "bye\x00"},
    )
    async with run_app() as client:
        cid = await _converse(client, llm, kind)
        await send_message(client, cid, "again")
        second = await _run(client, cid)
        events = await _events(client, cid, stored)
    assert second["status"] == "completed", second
    action = _of(events, "ActionEvent", "call-think")
    assert action["thought"] == [{"type": "text", "text": "hm\ufffd"}]
    assert action["tool_call"]["arguments"] == json.dumps({"thought": "\x00"})
    assert action["action"] == {"kind": "ThinkAction", "thought": "\ufffd"}
    think = _of(events, "ObservationEvent", "call-think")["observation"]
    assert think["kind"] == "ThinkObservation" and think["content"][0]["type"] == "text"
    finish = _of(events, "ObservationEvent", "call-finish")["observation"]
    assert finish["content"] == [{"type": "text", "text": "done\ufffd"}]
    [reply] = [e for e in events if e["kind"] == "MessageEvent" and e["source"] == "agent"]
    assert reply["llm_message"]["content"] == [{"type": "text", "text": "bye\ufffd"}]
    context = (await llm.requests())[-1]["messages"]
    assert {"role": "tool", "tool_call_id": "call-finish", "content": "done\ufffd"} in context
    sent = [c for m in context if m["role"] == "assistant" for c in m.get("tool_calls") or []]
    assert [c["function"]["arguments"] for c in sent] == [
        _of(events, "ActionEvent", call)["tool_call"]["arguments"]
        for call in ("call-think", "call-finish")
    ], "the context gives back the arguments as stored"


@pytest.mark.parametrize("kind", AGENTS)
async def test_lone_surrogates_in_arguments(
    run_app: RunAppFactory, llm: FakeLLM, stored: list[dict[str, Any]], kind: str
) -> None:
    """A lone surrogate (a "\\ud800" escape in the raw arguments, which keep it as text) in
    a value is stored in the action as U+FFFD (a key the SDK's action does not know is left
    out of it); as a file_editor path it is the tool's error. Checked with the
    sanitizing removed: the run fails on both databases (TypeError: str is not valid UTF-8:
    surrogates not allowed); with Tool.run's catch removed: the UnicodeEncodeError of the
    path fails the run on both."""
    await llm.script(
        {
            "tool_calls": [
                {
                    "id": "call-think",
                    "name": "think",
                    "raw_arguments": '{"thought": "a\\ud800b", "\\udfff": "c\\udc00"}',
                },
                {
                    "id": "call-path",
                    "name": "file_editor",
                    "raw_arguments": '{"command": "create", "path": "s\\ud800.txt"}',
                },
            ]
        },
        {"tool_calls": [FINISH]},
    )
    async with run_app() as client:
        cid = await _converse(client, llm, kind)
        events = await _events(client, cid, stored)
    think = _of(events, "ActionEvent", "call-think")
    # The escapes are text in the raw arguments; parsed, they are lone surrogates.
    assert think["tool_call"]["arguments"] == '{"thought": "a\\ud800b", "\\udfff": "c\\udc00"}'
    assert think["action"] == {"kind": "ThinkAction", "thought": "a\ufffdb"}
    assert _of(events, "ObservationEvent", "call-think")
    path = _of(events, "ActionEvent", "call-path")
    assert path["action"] == {
        "kind": "FileEditorAction",
        "command": "create",
        "path": "s\ufffd.txt",
    }
    error = _of(events, "AgentErrorEvent", "call-path")["error"]
    assert error.startswith("UnicodeEncodeError: "), error


BAD_ARGUMENTS = {
    "malformed": ("{not json", "not valid JSON"),
    "an array": ("[1]", "must be a JSON object"),
    "NaN": ('{"thought": NaN}', "NaN is not JSON"),
    "an infinite number": ('{"thought": 1e999}', "out of range"),
    "a 65-bit integer": ('{"thought": 36893488147419103232}', "beyond 64 bits"),
    "too deep": ('{"a": ' * 300 + "1" + "}" * 300, "nested deeper than 64 levels"),
    # A raw NUL (the response's JSON escape, decoded) is a control character JSON refuses.
    "a raw NUL": ('{"thought": "a\x00b"}', "not valid JSON"),
}


@pytest.mark.parametrize("kind", AGENTS)
@pytest.mark.parametrize("case", BAD_ARGUMENTS)
async def test_invalid_arguments(
    run_app: RunAppFactory, llm: FakeLLM, stored: list[dict[str, Any]], kind: str, case: str
) -> None:
    """Arguments that are not JSON, or JSON the store cannot hold, are the call's error; the
    action is stored with `action` null and the raw arguments as sent, a NUL in them as
    U+FFFD (checked with that sanitizing removed: on Postgres the run failed storing the
    action, on SQLite the NUL was stored). Checked against parse_arguments before the fix, on
    both databases: a 65-bit integer failed the run (TypeError: Integer exceeds 64-bit
    range), 300 levels of nesting too (TypeError: Recursion limit reached), and NaN or 1e999
    ran the tool and were stored as null. (Arguments nested beyond Python's recursion limit
    never get here: litellm refuses that response; tests/agent/test_tools.py covers them.)"""
    raw, problem = BAD_ARGUMENTS[case]
    await llm.script(
        {"tool_calls": [{"id": "call-bad", "name": "think", "raw_arguments": raw}]},
        {"tool_calls": [FINISH]},
    )
    async with run_app() as client:
        cid = await _converse(client, llm, kind)
        events = await _events(client, cid, stored)
    action = _of(events, "ActionEvent", "call-bad")
    assert action["action"] is None
    assert action["tool_call"]["arguments"] == raw.replace("\x00", "\ufffd")
    error = _of(events, "AgentErrorEvent", "call-bad")
    assert problem in error["error"] and error["tool_name"] == "think", error


@pytest.mark.parametrize("kind", AGENTS)
async def test_an_unknown_tool_with_nul_in_its_name_and_call_id(
    run_app: RunAppFactory, llm: FakeLLM, stored: list[dict[str, Any]], kind: str
) -> None:
    """An unknown tool is the call's error; NUL in its name and call id is stored as U+FFFD
    and the error is answered to the stored call id. Checked with the sanitizing removed:
    the run fails on Postgres (CharacterNotInRepertoireError); on SQLite the NUL is stored,
    which the last check of _events finds."""
    await llm.script(
        {"tool_calls": [{"id": "call\x00x", "name": "nope\x00", "arguments": {"a": 1}}]},
        {"tool_calls": [FINISH]},
    )
    async with run_app() as client:
        cid = await _converse(client, llm, kind)
        events = await _events(client, cid, stored)
    action = _of(events, "ActionEvent", "call\ufffdx")
    assert action["tool_name"] == "nope\ufffd" and action["action"] is None
    assert action["tool_call"] == {
        "id": "call\ufffdx",
        "name": "nope\ufffd",
        "arguments": json.dumps({"a": 1}),
        "origin": "completion",
    }
    error = _of(events, "AgentErrorEvent", "call\ufffdx")
    assert error["tool_name"] == "nope\ufffd"
    assert error["error"].startswith("unknown tool 'nope\\x00'"), error
    context = (await llm.requests())[-1]["messages"]
    assert context[-1]["role"] == "tool" and context[-1]["tool_call_id"] == "call\ufffdx"


def _raises(args: dict[str, Any], _workspace: Path, _settings: Settings, _env: Env) -> ToolResult:
    raise RuntimeError("boom\x00" + "x" * 5_000)


@pytest.mark.parametrize("kind", AGENTS)
async def test_a_tool_that_raises(
    run_app: RunAppFactory,
    llm: FakeLLM,
    stored: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    """An exception inside a tool is the call's error, its text bounded and storable, and
    the other calls of the step are answered as usual. Checked with Tool.run calling the
    function bare: on SQLite the run fails (RuntimeError: boom...); on Postgres its end is
    not even recorded (the NUL in runs.error) and it stays running.
    With the sanitizing removed: CharacterNotInRepertoireError on Postgres, the NUL stored
    on SQLite."""
    monkeypatch.setitem(tools.ALL_TOOLS, "think", Tool("think", "raises", {}, _raises))
    await llm.script(
        {
            "tool_calls": [
                {"id": "call-boom", "name": "think", "arguments": {"thought": "t"}},
                {
                    "id": "call-view",
                    "name": "file_editor",
                    "arguments": {"command": "view", "path": "."},
                },
            ]
        },
        {"tool_calls": [FINISH]},
    )
    async with run_app() as client:
        cid = await _converse(client, llm, kind)
        events = await _events(client, cid, stored)
    error = _of(events, "AgentErrorEvent", "call-boom")
    assert error["tool_name"] == "think"
    assert error["error"] == ("RuntimeError: boom\ufffd" + "x" * 5_000)[: tools.MAX_ERROR]
    view = _of(events, "ObservationEvent", "call-view")["observation"]
    assert view["kind"] == "FileEditorObservation" and view["content"][0]["type"] == "text"


def test_event_rows_replace_what_cannot_be_stored() -> None:
    """Every string of the row is storable, in the raw arguments and the action alike.
    Checked with event_row not sanitizing: the NUL stayed in tool_name."""
    event = ActionEvent(
        tool_name="t\x00",
        tool_call_id="c\ud800",
        tool_call=ToolCall(id="c\ud800", name="t\x00", arguments='{"k": "v\x00\udfff"}'),
        action={"kind": "X\x00", "k\x00": ["v\udfff", {"\x00": "\U0001f642 ok"}], "n": 1},
        thought=[TextContent(text="Thought\x00")],
        llm_response_id="r\x00",
    )
    row = service.event_row(event)
    assert (row["id"], row["kind"], row["source"]) == (event.id, "ActionEvent", "agent")
    assert row["payload"]["tool_name"] == "t\ufffd"
    assert row["payload"]["tool_call_id"] == "c\ufffd"
    assert row["payload"]["tool_call"] == {
        "id": "c\ufffd",
        "name": "t\ufffd",
        "arguments": '{"k": "v\ufffd\ufffd"}',
        "origin": "completion",
    }
    assert row["payload"]["action"] == {
        "kind": "X\ufffd",
        "k\ufffd": ["v\ufffd", {"\ufffd": "\U0001f642 ok"}],
        "n": 1,
    }
    assert row["payload"]["thought"] == [{"type": "text", "text": "Thought\ufffd"}]
    assert row["payload"]["llm_response_id"] == "r\ufffd"
    assert row["search_text"] == 'thought\ufffd\nt\ufffd\n{"k": "v\ufffd\ufffd"}'
    assert not [s for s in _strings(row) if UNSTORABLE.search(s)]
    clean = ObservationEvent(
        tool_name="t",
        tool_call_id="c",
        action_id="a",
        observation=sdk_shapes.observation("t", {}, "é 漢 🙂"),
    )
    assert service.event_row(clean) == {
        "id": clean.id,
        "kind": "ObservationEvent",
        "source": "environment",
        "search_text": "é 漢 🙂",
        "payload": clean.payload(),
    }


def test_event_rows_replace_lone_surrogates_in_keys() -> None:
    """An agent's own action may hold any keys (the built-in agent's hold only the SDK's
    field names): a lone surrogate in one becomes U+FFFD, as in a value."""
    event = ActionEvent(
        tool_name="t",
        tool_call_id="c",
        tool_call=ToolCall(id="c", name="t", arguments="{}"),
        action={"kind": "X", "\ud800": 1, "k": [{"\ud800\x00": "\U0001f642 ok"}]},
        llm_response_id="r",
    )
    row = service.event_row(event)
    assert row["payload"]["action"] == {
        "kind": "X",
        "\ufffd": 1,
        "k": [{"\ufffd\ufffd": "\U0001f642 ok"}],
    }
    assert not [s for s in _strings(row) if UNSTORABLE.search(s)]


async def test_appended_events_are_stored_the_same_way(
    client: httpx.AsyncClient, db: Database
) -> None:
    """service.append (the end of a run: its ConversationErrorEvent and the errors of its
    unanswered calls) builds its rows with the same function. Checked with append building
    its own rows again: the write fails on both databases (TypeError: str is not valid
    UTF-8: surrogates not allowed)."""
    cid = uuid.UUID(str((await create_conversation(client))["id"]))
    events = [
        ConversationErrorEvent(code="RuntimeError", detail="boom\x00 \ud800"),
        AgentErrorEvent(error="e\x00", tool_name="t\udc00", tool_call_id="c\x00"),
    ]
    async with db.session(write=True) as session:
        appended = await service.append(session, cid, events)
    with_seq = orjson.loads(JSONBytes(appended).body)
    assert with_seq[0]["detail"] == "boom\ufffd \ufffd"
    assert with_seq[1]["tool_name"] == "t\ufffd" and with_seq[1]["tool_call_id"] == "c\ufffd"
    expected = [_without_seq(e) for e in with_seq]
    url = f"/api/conversations/{cid}/events"
    assert (await client.get(f"{url}/search")).json()["items"] == expected
    asked = await client.get(f"{url}/search", params={"with_seq": "true"})
    assert asked.json()["items"] == with_seq
    by_body = await client.get(f"{url}/search", params={"body": "boom\ufffd"})
    assert by_body.json()["items"] == expected[:1]
    assert (await client.get(url, params=[("event_ids", e["id"]) for e in expected])).json() == (
        expected
    )


async def test_an_llm_error_text_with_nul(run_app: RunAppFactory, llm: FakeLLM) -> None:
    """A fatal LLM error whose text holds NUL fails the run, which is recorded as failed with
    the text stored with U+FFFD. Checked with runs.error and llm_calls.error written as
    given: on Postgres the run's end was never written and it stayed running."""
    await llm.script({"error": 400, "message": "bad\x00request"})
    async with run_app() as client:
        conversation = await create_conversation(
            client,
            agent=_agent(llm, "LLMAgent"),
            initial_message={"content": [{"type": "text", "text": "do it"}]},
        )
        response = await client.post(f"/api/conversations/{conversation['id']}/run")
        run = await wait_run(client, response.json()["id"], ENDED, wait=10)
    assert run["status"] == "failed", run
    assert "bad\ufffdrequest" in run["error"], run["error"]
