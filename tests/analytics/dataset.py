"""One known dataset for the analytics tests, written through the app's own write paths
(events.service.import_events for events with their own times; ORM rows for the rest).

Conversation A ("alpha", 2026-12-01): a user message, a system prompt, three tool calls (one
answered, one answered with an error observation, one with an AgentErrorEvent), an assistant
message of two text parts around an image. Conversation B ("beta", 2026-12-03 02:00 UTC,
still 2026-12-02 in New York): a user message, a call the user rejected and a call still
pending. Conversation C ("gamma"): nothing but a queued run. Runs: A has a failed run an hour
before and a completed one; B a running one. Skills: "deploy" with three revisions, "alpha-
skill" with one.
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from app.db.session import Database
from app.events import service as events_service
from app.events.schemas import (
    ActionEvent,
    AgentErrorEvent,
    EventBase,
    MessageEvent,
    ObservationEvent,
    SystemPromptEvent,
    UserRejectObservation,
)
from app.models import Conversation, LLMCall, Run, Skill, SkillRevision

T0 = datetime(2026, 12, 1, 5, 0, 0, tzinfo=UTC)
T1 = datetime(2026, 12, 3, 2, 0, 0, tzinfo=UTC)


def at(base: datetime, seconds: float, micros: int = 0) -> datetime:
    return base + timedelta(seconds=seconds, microseconds=micros)


@dataclass(frozen=True)
class Seeded:
    a: uuid.UUID
    b: uuid.UUID
    c: uuid.UUID
    run_a0: uuid.UUID  # A's failed run
    run_a: uuid.UUID  # A's completed run
    run_b: uuid.UUID  # B's running run
    run_c: uuid.UUID  # C's queued run


def _text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def _message(role: str, when: datetime, *parts: dict[str, Any]) -> MessageEvent:
    source = "user" if role == "user" else "agent"
    return MessageEvent(source=source, timestamp=when, llm_message={"role": role, "content": parts})


def action(call_id: str, tool: str, arguments: str, when: datetime) -> ActionEvent:
    return ActionEvent(
        id=f"act-{call_id}-{when.timestamp()}",
        timestamp=when,
        tool_name=tool,
        tool_call_id=call_id,
        tool_call={"id": call_id, "name": tool, "arguments": arguments},
        llm_response_id=f"resp-{call_id}",
    )


def observation(call: ActionEvent, when: datetime, text: str, error: bool) -> ObservationEvent:
    return ObservationEvent(
        timestamp=when,
        tool_name=call.tool_name,
        tool_call_id=call.tool_call_id,
        action_id=call.id,
        observation={"kind": "TerminalObservation", "content": [_text(text)], "is_error": error},
    )


def events_a() -> list[EventBase]:
    c1 = action("c1", "terminal", '{"command": "ls"}', at(T0, 2))
    c2 = action("c2", "file_editor", '{"command": "view", "path": "a.txt"}', at(T0, 4))
    c3 = action("c3", "terminal", '{"command": "make"}', at(T0, 5))
    return [
        _message("user", T0, _text("Please list the files")),
        SystemPromptEvent(timestamp=at(T0, 1), system_prompt=_text("You are a careful agent")),
        c1,
        observation(c1, at(T0, 3.5), "a.txt", error=False),
        c2,
        observation(c2, at(T0, 4.25), "no such file", error=True),
        c3,
        AgentErrorEvent(
            timestamp=at(T0, 5.1, 123),
            error="tool crashed",
            tool_name="terminal",
            tool_call_id="c3",
        ),
        _message(
            "assistant",
            at(T0, 6),
            _text("Done listing"),
            {"type": "image", "image_urls": ["http://example.test/a.png"]},
            _text("a.txt"),
        ),
    ]


def events_b() -> list[EventBase]:
    c1 = action("c1", "terminal", '{"command": "pytest"}', at(T1, 1))
    return [
        _message("user", T1, _text("Please list the tests")),
        c1,
        UserRejectObservation(
            timestamp=at(T1, 3), tool_name="terminal", tool_call_id="c1", action_id=c1.id
        ),
        action("c4", "terminal", '{"command": "sleep 100"}', at(T1, 4)),
    ]


def _call(
    run: Run | None, conversation: uuid.UUID, model: str, when: datetime, **values: Any
) -> LLMCall:
    return LLMCall(
        conversation_id=conversation,
        run_id=None if run is None else run.id,
        model=model,
        created_at=when,
        **values,
    )


def _runs(s: Seeded) -> list[Run]:
    return [
        Run(
            id=s.run_a0, conversation_id=s.a, status="failed", stop_reason="error", error="boom",
            iterations=0, created_at=at(T0, -3600), started_at=at(T0, -3590),
            finished_at=at(T0, -3500),
        ),
        Run(
            id=s.run_a, conversation_id=s.a, status="completed", stop_reason="finished",
            iterations=3, created_at=at(T0, 0.5), started_at=at(T0, 1), finished_at=at(T0, 7),
        ),
        Run(
            id=s.run_b, conversation_id=s.b, status="running", iterations=1,
            created_at=at(T1, 0.5), started_at=at(T1, 0.5),
        ),
        Run(id=s.run_c, conversation_id=s.c, status="queued", created_at=at(T1, 10)),
    ]  # fmt: skip


def _calls(s: Seeded, runs: dict[uuid.UUID, Run]) -> list[LLMCall]:
    run_a0, run_a, run_b = runs[s.run_a0], runs[s.run_a], runs[s.run_b]
    calls = [
        _call(run_a0, s.a, "gpt-a", at(T0, -3550), prompt_tokens=50, completion_tokens=0,
              cost_usd=0.005, latency_ms=800.0, error="rate limited"),
        _call(run_a, s.a, "gpt-a", at(T0, 2), prompt_tokens=100, completion_tokens=20,
              cost_usd=0.01, latency_ms=200.0),
        _call(run_a, s.a, "gpt-a", at(T0, 4), prompt_tokens=150, completion_tokens=30,
              cost_usd=0.02, latency_ms=400.0),
        _call(run_a, s.a, "gpt-a", at(T0, 6), prompt_tokens=200, completion_tokens=40,
              cost_usd=None, latency_ms=600.0, error="boom"),
        _call(None, s.b, "gpt-a", at(T1, 0), prompt_tokens=7, completion_tokens=3,
              cost_usd=None, latency_ms=50.0),
    ]  # fmt: skip
    calls += [
        _call(run_b, s.b, "gpt-b", at(T1, 1 + i), prompt_tokens=10, completion_tokens=5,
              cost_usd=0.001, latency_ms=10.0 * (i + 1))
        for i in range(10)
    ]  # fmt: skip
    return calls


def _skills() -> list[Any]:
    alpha, deploy = uuid.uuid4(), uuid.uuid4()
    m = timedelta(minutes=1)
    return [
        Skill(id=alpha, name="alpha-skill", description="a", content="do alpha", version=1,
              created_at=T0, updated_at=T0),
        Skill(id=deploy, name="deploy", description="ship it", content="step one\nstep two",
              enabled=False, version=3, created_at=T0, updated_at=T0 + 3 * m),
        SkillRevision(skill_id=alpha, version=1, description="a", content="do alpha",
                      enabled=True, created_at=T0),
        SkillRevision(skill_id=deploy, version=1, description="ship", content="step one",
                      enabled=True, created_at=T0 + m),
        SkillRevision(skill_id=deploy, version=2, description="ship it",
                      content="step one\nstep two", enabled=True, created_at=T0 + 2 * m),
        SkillRevision(skill_id=deploy, version=3, description="ship it",
                      content="step one\nstep two", enabled=False, created_at=T0 + 3 * m),
    ]  # fmt: skip


async def seed(db: Database) -> Seeded:
    s = Seeded(*(uuid.uuid4() for _ in range(7)))
    async with db.session(write=True) as session:
        for cid, title in ((s.a, "alpha"), (s.b, "beta"), (s.c, "gamma")):
            session.add(Conversation(id=cid, title=title, agent={}, max_iterations=10, stats={}))
        await session.flush()
        runs = {run.id: run for run in _runs(s)}
        session.add_all(runs.values())
        await session.flush()
        session.add_all(_calls(s, runs))
        session.add_all(_skills())
        await session.flush()
        await events_service.import_events(session, s.a, events_a())
        await events_service.import_events(session, s.b, events_b())
    return s
