"""Every kind the agent runtime will emit goes through the one typed model and the store."""

import uuid
from typing import Any

import httpx
from pydantic import TypeAdapter

from app.db.session import Database
from app.events import service
from app.events.schemas import AnyEvent, EventBase
from tests.conftest import create_conversation

# In the OpenHands SDK's shapes (each validates with its `Event.model_validate`).
SAMPLES: list[dict[str, Any]] = [
    {
        "kind": "SystemPromptEvent",
        "system_prompt": {"type": "text", "text": "You are helpful"},
        "tools": [
            {
                "kind": "FinishTool",
                "title": "finish",
                "description": "Finish the task.",
                "action_type": "FinishAction",
                "observation_type": "FinishObservation",
                "annotations": {
                    "title": "finish",
                    "readOnlyHint": True,
                    "destructiveHint": False,
                    "idempotentHint": True,
                    "openWorldHint": False,
                },
                "meta": None,
            }
        ],
    },
    {
        "kind": "MessageEvent",
        "source": "agent",
        "llm_message": {"role": "assistant", "content": [{"type": "text", "text": "Hello there"}]},
    },
    {
        "kind": "ActionEvent",
        "tool_name": "terminal",
        "tool_call_id": "call_1",
        "tool_call": {
            "id": "call_1",
            "name": "terminal",
            "arguments": '{"command": "ls -la"}',
            "origin": "completion",
        },
        "action": {"kind": "TerminalAction", "command": "ls -la"},
        "thought": [{"type": "text", "text": "list files"}],
        "llm_response_id": "response-1",
        "security_risk": "UNKNOWN",
    },
    {
        "kind": "ObservationEvent",
        "tool_name": "terminal",
        "tool_call_id": "call_1",
        "action_id": "a1",
        "observation": {
            "kind": "TerminalObservation",
            "content": [{"type": "text", "text": "README.md"}],
            "is_error": False,
            "command": "ls -la",
            "exit_code": 0,
        },
    },
    {
        "kind": "AgentErrorEvent",
        "error": "tool exploded",
        "tool_name": "terminal",
        "tool_call_id": "call_2",
    },
    {"kind": "ConversationStateUpdateEvent", "key": "execution_status", "value": "running"},
    {"kind": "ConversationErrorEvent", "code": "LLMError", "detail": "rate limited"},
    {"kind": "PauseEvent"},
    {"kind": "InterruptEvent"},
]


async def api_count(client: httpx.AsyncClient, cid: uuid.UUID, **params: str) -> int:
    response = await client.get(f"/api/conversations/{cid}/events/count", params=params)
    assert response.status_code == 200
    result: int = response.json()
    return result


async def test_every_kind_round_trips_through_the_store(
    client: httpx.AsyncClient, db: Database
) -> None:
    conversation = await create_conversation(client)
    cid = uuid.UUID(str(conversation["id"]))
    adapter: TypeAdapter[EventBase] = TypeAdapter(AnyEvent)
    events = [adapter.validate_python(sample) for sample in SAMPLES]
    async with db.session(write=True) as session:
        stored = await service.append(session, cid, events)
    assert [e["seq"] for e in stored] == list(range(1, len(SAMPLES) + 1))

    page = (await client.get(f"/api/conversations/{cid}/events/search")).json()
    assert len(page["items"]) == len(SAMPLES)
    for sample, item in zip(SAMPLES, page["items"], strict=True):
        for key, value in sample.items():
            assert item[key] == value, (sample["kind"], key)
        assert "seq" not in item, item
        # What the API returns validates back into the same typed model.
        assert adapter.validate_python(item).kind == sample["kind"]

    sources = {item["kind"]: item["source"] for item in page["items"]}
    assert sources["ActionEvent"] == "agent"
    assert sources["ObservationEvent"] == "environment"
    assert sources["PauseEvent"] == "user"

    async def count(**params: str) -> int:
        return await api_count(client, cid, **params)

    assert await count(body="ls -la") == 1
    assert await count(body="readme") == 1
    assert await count(body="exploded") == 1
    assert await count(body="rate LIMITED") == 1
    assert await count(body="you are helpful") == 1
    for sample in SAMPLES:
        assert await count(kind=sample["kind"]) == 1


async def test_kind_and_source_counts_equal_count_star(
    client: httpx.AsyncClient, db: Database
) -> None:
    """Counts answered from event_counts agree with count(*) for every kind/source filter."""
    from sqlalchemy import func, select

    from app.models import Event

    conversation = await create_conversation(client)
    cid = uuid.UUID(str(conversation["id"]))
    adapter: TypeAdapter[EventBase] = TypeAdapter(AnyEvent)
    async with db.session(write=True) as session:  # two appends: the tally must accumulate
        await service.append(session, cid, [adapter.validate_python(s) for s in SAMPLES])
    async with db.session(write=True) as session:
        await service.append(session, cid, [adapter.validate_python(s) for s in SAMPLES[:4]])

    async def sql_count(**where: str) -> int:
        stmt = select(func.count()).select_from(Event).where(Event.conversation_id == cid)
        for column, value in where.items():
            stmt = stmt.where(getattr(Event, column) == value)
        async with db.session(write=False) as session:
            return int((await session.execute(stmt)).scalar_one())

    kinds = sorted({s["kind"] for s in SAMPLES})
    for kind in kinds:
        assert await api_count(client, cid, kind=kind) == await sql_count(kind=kind)
        for source in ("user", "agent", "environment"):
            expected = await sql_count(kind=kind, source=source)
            assert await api_count(client, cid, kind=kind, source=source) == expected
    for source in ("user", "agent", "environment"):
        assert await api_count(client, cid, source=source) == await sql_count(source=source)
    assert (
        await api_count(
            client,
            cid,
        )
        == await sql_count()
        == len(SAMPLES) + 4
    )


def test_what_a_sample_leaves_out_is_filled_in_as_the_sdk_has_it() -> None:
    """Strings, never null, where the SDK wants strings; its defaults otherwise."""
    adapter: TypeAdapter[EventBase] = TypeAdapter(AnyEvent)
    error = adapter.validate_python({"kind": "AgentErrorEvent", "error": "boom"}).payload()
    assert (error["tool_name"], error["tool_call_id"]) == ("", "")
    bare = {k: v for k, v in SAMPLES[2].items() if k != "security_risk"}
    bare["tool_call"] = {k: v for k, v in bare["tool_call"].items() if k != "origin"}
    action = adapter.validate_python(bare).payload()
    assert action["security_risk"] == "UNKNOWN"
    assert action["tool_call"]["origin"] == "completion"
    assert "reason" not in adapter.validate_python({"kind": "InterruptEvent"}).payload()
