"""Every event kind we emit, read back through every read path, is valid for the OpenHands SDK.

Real runs (the fake LLM scripting tool calls, a plain reply, a pause, an interrupt and a
failed LLM call) write the events; REST search, get, batch get, SSE and the WebSocket read
them back; the SDK's own `Event.model_validate` (tests/openhands/sdk.py) judges every object.
"""

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from tests.conftest import create_conversation, wait_for
from tests.openhands.sdk import SdkEvents, Verdict
from tests.runs.conftest import FAST, FakeLLM, wait_run
from tests.streams.conftest import LiveServer

# What the runs below must produce, as label(event): kind, plus the source of a message and
# the tool of an action or observation.
TOOLS = ("finish", "think", "file_editor", "terminal", "task_tracker")
KINDS = frozenset(
    {
        "MessageEvent(user)",
        "MessageEvent(agent)",
        "SystemPromptEvent",
        *(f"ActionEvent({tool})" for tool in TOOLS),
        *(f"ObservationEvent({tool})" for tool in TOOLS),
        "AgentErrorEvent",
        "ConversationErrorEvent",
        "ConversationStateUpdateEvent",
        "PauseEvent",
        "InterruptEvent",
    }
)
# Our tools as the SDK knows them: the tool definition's kind, its action's, its observation's.
SDK_TOOLS = {
    "finish": ("FinishTool", "FinishAction", "FinishObservation"),
    "think": ("ThinkTool", "ThinkAction", "ThinkObservation"),
    "file_editor": ("FileEditorTool", "FileEditorAction", "FileEditorObservation"),
    "terminal": ("TerminalTool", "TerminalAction", "TerminalObservation"),
    "task_tracker": ("TaskTrackerTool", "TaskTrackerAction", "TaskTrackerObservation"),
}
PAGE = 7  # small, so that the search crosses pages
STOPPED = {"completed", "failed", "cancelled", "interrupted"}


def label(event: dict[str, Any], kind: str | None = None) -> str:
    kind = kind or event["kind"]
    if kind == "MessageEvent":
        return f"{kind}({event['source']})"
    if kind in ("ActionEvent", "ObservationEvent"):
        return f"{kind}({event['tool_name']})"
    return kind


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


def _without_seq(event: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in event.items() if key != "seq"}


async def _send(client: httpx.AsyncClient, cid: str, text: str) -> tuple[dict[str, Any], str]:
    """A user message that starts a run: the answer (an event too) and the run's id."""
    body = {"role": "user", "content": [{"type": "text", "text": text}], "run": True}
    response = await client.post(f"/api/conversations/{cid}/events", json=body)
    assert response.status_code == 201, response.text
    return response.json(), response.headers["x-run-id"]


# The first run: every tool, each succeeding, and failing where it can, then finish.
TOOL_REPLIES = (
    {"text": "Let me think.", "tool_calls": [_call("think", thought="plan")]},
    {"tool_calls": [_call("file_editor", command="create", path="a.txt", file_text="hi\n")]},
    {
        "tool_calls": [
            _call("file_editor", command="view", path="a.txt"),
            _call("file_editor", command="str_replace", path="a.txt", old_str="hi", new_str="yo"),
            _call("file_editor", command="view", path="missing.txt"),
            _call("terminal", command="echo hi"),
            _call("terminal", command="exit 3"),
            _call("task_tracker", command="plan", task_list=[{"title": "t", "status": "done"}]),
            _call("nope"),
            {"name": "think", "raw_arguments": "{not json"},
        ]
    },
    {"tool_calls": [_call("finish", message="done")]},
)


async def _stop_midway(
    client: httpx.AsyncClient, llm: FakeLLM, cid: str, action: str, reply: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run stopped by `action` (pause or interrupt) while its LLM call is under way."""
    await llm.script(reply)
    calls = len(await llm.requests())
    answer, run_id = await _send(client, cid, f"then {action}")

    async def called() -> bool:  # the LLM call is under way (its latency: a second or more)
        return len(await llm.requests()) > calls

    await wait_for(called, "the run's LLM call")
    assert (await client.post(f"/api/conversations/{cid}/{action}")).status_code == 202
    return answer, await wait_run(client, run_id, STOPPED)


async def _drive(client: httpx.AsyncClient, llm: FakeLLM, cid: str) -> list[dict[str, Any]]:
    """Five runs on one conversation; the answers to the user messages that started them."""
    await llm.script(*TOOL_REPLIES, {"text": "Hello there!"})
    posted = []
    for text in ("use every tool", "say hello"):
        answer, run_id = await _send(client, cid, text)
        posted.append(answer)
        assert (await wait_run(client, run_id, STOPPED))["status"] == "completed"
    slow_step = {"tool_calls": [_call("think", thought="slowly")], "latency": 1.0}
    answer, run = await _stop_midway(client, llm, cid, "pause", slow_step)
    posted.append(answer)
    assert (run["status"], run["stop_reason"]) == ("cancelled", "paused"), run
    late_reply = {"text": "late", "latency": 1.5}  # over before the fake LLM is stopped
    answer, run = await _stop_midway(client, llm, cid, "interrupt", late_reply)
    posted.append(answer)
    assert run["status"] == "interrupted", run
    await llm.script({"error": 400, "message": "bad request from the model"})
    answer, run_id = await _send(client, cid, "then fail")
    posted.append(answer)
    assert (await wait_run(client, run_id, STOPPED))["status"] == "failed"
    return posted


async def _search(client: httpx.AsyncClient, cid: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    page_id = None
    while True:
        query = {"limit": PAGE, **params, **({"page_id": page_id} if page_id else {})}
        response = await client.get(f"/api/conversations/{cid}/events/search", params=query)
        assert response.status_code == 200, response.text
        items += response.json()["items"]
        page_id = response.json()["next_page_id"]
        if page_id is None:
            return items


async def _batch(client: httpx.AsyncClient, cid: str, ids: list[str], **params: Any) -> list[Any]:
    found = []
    for start in range(0, len(ids), 100):
        query = {"event_ids": ids[start : start + 100], **params}
        response = await client.get(f"/api/conversations/{cid}/events", params=query)
        assert response.status_code == 200, response.text
        found += response.json()
    return found


async def _sse(base: str, cid: str, n: int) -> list[tuple[str | None, dict[str, Any]]]:
    """The first n events of the SSE replay: (the `id:` line, the data)."""
    found: list[tuple[str | None, dict[str, Any]]] = []
    event_id, data = None, []
    url = f"/api/conversations/{cid}/events/stream"
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as client,
        client.stream("GET", url, params={"replay": "all"}) as response,
        asyncio.timeout(20),
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "" and data:
                found.append((event_id, json.loads("\n".join(data))))
                event_id, data = None, []
                if len(found) == n:
                    break
    return found


async def _websocket(base: str, cid: str, n: int) -> list[dict[str, Any]]:
    """The first frame (the state) and n replayed events."""
    url = base.replace("http://", "ws://") + f"/sockets/events/{cid}?resend_mode=all"
    async with connect(url) as ws:
        return [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(n + 1)]


async def _read_back(
    client: httpx.AsyncClient, base: str, cid: str
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """Every event of the conversation by every read path (without seq); and with seq, asked
    for, the search, a get and a batch get, with the SSE ids."""
    rest = await _search(client, cid)
    ids = [event["id"] for event in rest]
    url = f"/api/conversations/{cid}/events"
    sse = await _sse(base, cid, len(rest))
    read = {
        "GET .../events/search": rest,
        "GET .../events/{id}": [(await client.get(f"{url}/{i}")).json() for i in ids],
        "GET .../events?event_ids=": await _batch(client, cid, ids),
        "SSE": [data for _, data in sse],
        "WebSocket": await _websocket(base, cid, len(rest)),
    }
    with_seq = {
        "search": await _search(client, cid, with_seq="true"),
        "get and batch": [
            (await client.get(f"{url}/{ids[0]}?with_seq=true")).json(),
            *await _batch(client, cid, ids[:3], with_seq="true"),
        ],
        "SSE ids": [event_id for event_id, _ in sse],
    }
    return read, with_seq


async def test_every_event_kind_is_valid_for_the_sdk_on_every_read_path(
    live: LiveServer, llm: FakeLLM, sdk_events: SdkEvents, tmp_path: Path
) -> None:
    """Checked against a broken variant, our shapes before the move to the SDK's (commit
    b3f88aa): the SDK refused every object on every path (`seq: Extra inputs are not
    permitted`; ActionEvent `arguments` extra, `tool_call` missing; ObservationEvent `content`
    extra, no typed `observation`; SystemPromptEvent tools without a kind, `skills` extra),
    and this test failed; so it did for the `queued` execution status, which the SDK lacks."""
    settings = {**FAST, "run_worker_enabled": True, "enable_terminal": True}
    async with (
        live(**settings, workspace_root=tmp_path / "workspaces") as base,
        httpx.AsyncClient(base_url=base, timeout=30) as client,
    ):
        agent = {"llm": {"model": "openai/fake-model", "base_url": llm.model_url, "api_key": "k"}}
        cid = str((await create_conversation(client, agent=agent))["id"])
        posted = await _drive(client, llm, cid)
        read, with_seq = await _read_back(client, base, cid)
    rest = read["GET .../events/search"]
    read["POST .../events"] = posted

    refused: dict[str, list[str]] = {}  # error (without its index in a path) -> paths
    for path, objects in read.items():
        for error in await sdk_events(objects):
            refused.setdefault(error.split(" ", 1)[1], []).append(path)
    lines = [f"{error}\n    via {', '.join(paths)}" for error, paths in refused.items()]
    assert not refused, f"{len(lines)} events refused by the SDK:\n" + "\n".join(lines[:30])
    _assert_kinds(rest, await sdk_events.check(rest))

    state = read["WebSocket"][0]
    assert (state["kind"], state["key"]) == ("ConversationStateUpdateEvent", "full_state")
    for path in ("GET .../events/{id}", "GET .../events?event_ids=", "SSE"):
        assert read[path] == rest, f"{path} differs from the search"
    assert read["WebSocket"][1:] == rest, "the WebSocket replay differs from the search"
    assert {event["id"] for event in posted} <= {event["id"] for event in rest}
    for path, objects in read.items():
        assert not [event for event in objects if "seq" in event], f"{path} shows seq"
    seqs = [event["seq"] for event in with_seq["search"]]
    assert seqs == sorted(set(seqs)) and [_without_seq(e) for e in with_seq["search"]] == rest
    assert [event["seq"] for event in with_seq["get and batch"]] == seqs[:1] + seqs[:3]
    assert with_seq["SSE ids"] == [str(seq) for seq in seqs], "SSE ids are not the seqs"


def _assert_kinds(rest: list[dict[str, Any]], verdicts: list[Verdict]) -> None:
    """Every kind of KINDS seen, as the SDK resolved it; each tool's definition, action and
    observation resolved to that tool's SDK classes."""
    seen = {label(event, verdict.kind) for event, verdict in zip(rest, verdicts, strict=True)}
    assert seen >= KINDS, f"never emitted: {sorted(KINDS - seen)}"
    for event, verdict in zip(rest, verdicts, strict=True):
        tool = SDK_TOOLS.get(event.get("tool_name", ""))
        if event["kind"] == "SystemPromptEvent":
            assert set(verdict.nested) == {kinds[0] for kinds in SDK_TOOLS.values()}, verdict
        elif event["kind"] == "ActionEvent" and tool and verdict.nested:
            assert verdict.nested == [tool[1]], (event, verdict)  # null: not executable
        elif event["kind"] == "ObservationEvent" and tool:
            assert verdict.nested == [tool[2]], (event, verdict)
