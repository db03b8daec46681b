"""Migration 0009 on a populated database: stored events rewritten into the OpenHands SDK 1.58
shapes, turned back by the downgrade, and rewritten the same by a second upgrade, on SQLite and
Postgres. Every expected new payload was validated once with the SDK itself
(`Event.model_validate` resolving to the same kind); this suite does not need the SDK.

Checked once against a broken variant: without the lookup of an action outside the batch,
o-insert's observation gets the fallback command "view" and the test fails."""

import asyncio
import importlib.util
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from app.db import migrations
from app.db.session import Database
from tests.conftest import BASE_URL
from tests.dbutil import create_database, drop_database

Payload = dict[str, Any]


def _batch_size() -> int:
    path = migrations.MIGRATIONS_DIR / "versions" / "0009_sdk_event_shapes.py"
    spec = importlib.util.spec_from_file_location("migration_0009", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.BATCH)


BATCH = _batch_size()
FIRST = uuid.UUID(int=1)  # every old shape, with BATCH fillers between an action and its
SECOND = uuid.UUID(int=2)  # observation; one event, so the keyset crosses conversations
THIRD = uuid.UUID(int=3)  # events written in the new shape


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[None]:
    """Alembic runs its own event loop in a worker thread and reads its scripts from disk
    there; that is start-up work, not the request path the gate is for."""
    yield


def _text(value: str, **extra: Any) -> Payload:
    return {"type": "text", "text": value, **extra}


def _schema(name: str) -> Payload:
    return {
        "type": "function",
        "function": {"name": name, "description": f"{name} tool", "parameters": {}},
    }


def _definition(name: str, prefix: str) -> Payload:
    return {
        "kind": f"{prefix}Tool",
        "title": name,
        "description": f"{name} tool",
        "action_type": f"{prefix}Action",
        "observation_type": f"{prefix}Observation",
        "annotations": None,
        "meta": None,
    }


def _old_action(tool: str, arguments: Payload, response: str | None = "resp-1") -> Payload:
    return {
        "thought": [],
        "tool_name": tool,
        "tool_call_id": f"call-{tool}",
        "arguments": arguments,
        "action": None,
        "llm_response_id": response,
    }


def _new_action(
    tool: str, arguments: str, action: Payload | None, response: str = "resp-1"
) -> Payload:
    call_id = f"call-{tool}"
    return {
        "thought": [],
        "tool_name": tool,
        "tool_call_id": call_id,
        "tool_call": {"id": call_id, "name": tool, "arguments": arguments, "origin": "completion"},
        "action": action,
        "llm_response_id": response,
        "security_risk": "UNKNOWN",
    }


def _old_observation(tool: str, action_id: str) -> Payload:
    return {
        "tool_name": tool,
        "tool_call_id": f"call-{tool}",
        "action_id": action_id,
        "content": [_text(f"{tool} output")],
        "observation": None,
    }


def _new_observation(tool: str, action_id: str, kind: str, **fields: Any) -> Payload:
    return {
        "tool_name": tool,
        "tool_call_id": f"call-{tool}",
        "action_id": action_id,
        "observation": {
            "kind": kind,
            "content": [_text(f"{tool} output")],
            "is_error": False,
            **fields,
        },
    }


EDIT_ARGS = {
    "command": "str_replace",
    "path": "/w/a.py",
    "old_str": "a",
    "new_str": "b",
    "insert_line": -1,
    "view_range": [1, 2, 3],
    "file_text": None,
}
INSERT_ARGS = {
    "command": "insert",
    "path": "/w/b.py",
    "insert_line": 0,
    "new_str": "x",
    "view_range": [1, 9],
}
FILLER_OLD = {"llm_message": {"role": "user", "content": [_text("filler", n=1)]}}
FILLER_NEW = {"llm_message": {"role": "user", "content": [_text("filler")]}}

# (event id, kind, payload at 0008, payload at 0009); the first conversation's events in seq
# order, then BATCH fillers, then the rows after them.
CASES: list[tuple[str, str, Payload, Payload]] = [
    (
        "system",
        "SystemPromptEvent",
        {
            "system_prompt": _text('<skill name="s" version="2">'),
            "tools": [_schema(n) for n in ("finish", "think", "lookup", "file_editor", "terminal")],
            "skills": [{"name": "s", "version": 2}],
        },
        {
            "system_prompt": _text('<skill name="s" version="2">'),
            "tools": [
                _definition("finish", "Finish"),
                _definition("think", "Think"),
                _definition("file_editor", "FileEditor"),
                _definition("terminal", "Terminal"),
            ],
        },
    ),
    (
        "message",
        "MessageEvent",
        {
            "llm_message": {
                "role": "user",
                "content": [
                    _text("hi", cache_prompt=True, lang="en"),
                    {"type": "image", "image_urls": ["https://x/i.png"], "detail": "low"},
                    _text("there", cache_prompt="yes"),
                ],
            },
            "activated_skills": ["s"],
            "extended_content": [_text("ctx", origin="skill")],
        },
        {
            "llm_message": {
                "role": "user",
                "content": [
                    _text("hi", cache_prompt=True),
                    {"type": "image", "image_urls": ["https://x/i.png"]},
                    _text("there"),
                ],
            },
            "activated_skills": ["s"],
            "extended_content": [_text("ctx")],
        },
    ),
    (
        "a-finish",
        "ActionEvent",
        _old_action("finish", {"message": "done"}) | {"thought": [_text("ok", x=1)]},
        _new_action("finish", '{"message": "done"}', {"kind": "FinishAction", "message": "done"})
        | {"thought": [_text("ok")]},
    ),
    (
        "o-finish",
        "ObservationEvent",
        _old_observation("finish", "a-finish"),
        _new_observation("finish", "a-finish", "FinishObservation"),
    ),
    (
        "a-think",
        "ActionEvent",
        _old_action("think", {"thought": "hmm", "extra": 1}),
        _new_action(
            "think", '{"thought": "hmm", "extra": 1}', {"kind": "ThinkAction", "thought": "hmm"}
        ),
    ),
    (
        "o-think",
        "ObservationEvent",
        _old_observation("think", "a-think"),
        _new_observation("think", "a-think", "ThinkObservation"),
    ),
    (
        "a-edit",
        "ActionEvent",
        _old_action("file_editor", EDIT_ARGS),
        _new_action(
            "file_editor",
            json.dumps(EDIT_ARGS),
            {
                "kind": "FileEditorAction",
                "command": "str_replace",
                "path": "/w/a.py",
                "old_str": "a",
                "new_str": "b",
            },
        ),
    ),
    (
        "o-edit",
        "ObservationEvent",
        _old_observation("file_editor", "a-edit"),
        _new_observation("file_editor", "a-edit", "FileEditorObservation", command="str_replace"),
    ),
    (
        "a-term",
        "ActionEvent",
        _old_action(
            "terminal", {"command": "ls", "timeout": 30, "is_input": False, "reset": 1}, None
        ),
        _new_action(
            "terminal",
            '{"command": "ls", "timeout": 30, "is_input": false, "reset": 1}',
            {"kind": "TerminalAction", "command": "ls", "is_input": False, "timeout": 30},
            response="legacy-a-term",
        ),
    ),
    (
        "o-term",
        "ObservationEvent",
        _old_observation("terminal", "a-term"),
        _new_observation("terminal", "a-term", "TerminalObservation", command=None, exit_code=None),
    ),
    (
        "a-lookup",
        "ActionEvent",
        _old_action("lookup", {"q": "x"}),
        _new_action("lookup", '{"q": "x"}', None),
    ),
    (
        "o-lookup",
        "ObservationEvent",
        _old_observation("lookup", "a-lookup"),
        _new_observation("lookup", "a-lookup", "MCPToolObservation", tool_name="lookup"),
    ),
    (
        "a-mistyped",
        "ActionEvent",
        _old_action("finish", {"message": 42}),
        _new_action("finish", '{"message": 42}', None),
    ),
    (
        "a-bad-command",
        "ActionEvent",
        _old_action("file_editor", {"command": "delete", "path": "/w"}),
        _new_action("file_editor", '{"command": "delete", "path": "/w"}', None),
    ),
    (
        "error",
        "AgentErrorEvent",
        {"error": "boom", "tool_name": None, "tool_call_id": None},
        {"error": "boom", "tool_name": "", "tool_call_id": ""},
    ),
    ("pause", "PauseEvent", {"reason": "kept"}, {"reason": "kept"}),  # the interrupt rule's field
    ("interrupt", "InterruptEvent", {"reason": "requested"}, {}),
    (
        "a-insert",
        "ActionEvent",
        _old_action("file_editor", INSERT_ARGS),
        _new_action(
            "file_editor",
            '{"command": "insert", "path": "/w/b.py", "insert_line": 0, "new_str": "x", '
            '"view_range": [1, 9]}',
            {"kind": "FileEditorAction", **INSERT_ARGS},
        ),
    ),
]
# After the fillers: an observation whose action is a batch away, and one with no action.
AFTER_FILLERS: list[tuple[str, str, Payload, Payload]] = [
    (
        "o-insert",
        "ObservationEvent",
        _old_observation("file_editor", "a-insert"),
        _new_observation("file_editor", "a-insert", "FileEditorObservation", command="insert"),
    ),
    (
        "o-orphan",
        "ObservationEvent",
        _old_observation("file_editor", "a-gone"),
        _new_observation("file_editor", "a-gone", "FileEditorObservation", command="view"),
    ),
]
SECOND_CASE: tuple[str, str, Payload, Payload] = (
    "interrupt-2",
    "InterruptEvent",
    {"reason": None},
    {},
)

_CALL: Payload = {
    "thought": [],
    "tool_name": "terminal",
    "tool_call_id": "c1",
    "action": None,
    "llm_response_id": "r1",
}
_ANSWER: Payload = {
    "tool_name": "terminal",
    "tool_call_id": "c1",
    "action_id": "a-new",
    "observation": {
        "kind": "TerminalObservation",
        "content": [_text("out")],
        "is_error": False,
        "command": "ls",
        "exit_code": 0,
    },
}
# Written at 0009 in the new shape: (event id, kind, payload, after the downgrade, after the
# upgrade that follows it).
NEW_SHAPED: list[tuple[str, str, Payload, Payload, Payload]] = [
    (
        "a-new",
        "ActionEvent",
        _CALL
        | {
            "tool_call": {
                "id": "c1",
                "name": "terminal",
                "arguments": "[1]",
                "origin": "responses",
            },
            "security_risk": "LOW",
            "summary": "s",
        },
        _CALL | {"arguments": {}},
        _CALL
        | {
            "tool_call": {
                "id": "c1",
                "name": "terminal",
                "arguments": "{}",
                "origin": "completion",
            },
            "security_risk": "UNKNOWN",
        },
    ),
    (
        "o-new",
        "ObservationEvent",
        _ANSWER | {"extended_content": [_text("rule")]},
        _ANSWER | {"content": [_text("out")]},
        _ANSWER,
    ),
]


def _downgraded(kind: str, old: Payload, new: Payload) -> Payload:
    """What the downgrade makes of a row the upgrade wrote."""
    if kind == "ActionEvent":
        keep = ("thought", "tool_name", "tool_call_id", "action", "llm_response_id")
        return {k: new[k] for k in keep} | {"arguments": old["arguments"]}
    if kind == "ObservationEvent":
        return new | {"content": new["observation"]["content"]}
    return new


def _in_stored_order(new: Payload, stored: Payload) -> Payload:
    """`new` with tool_call.arguments dumped in the key order the database returns the old
    arguments in: SQLite keeps the written order, Postgres's JSONB its own."""
    if "arguments" not in stored:
        return new
    written = new["tool_call"]["arguments"]
    assert json.loads(written) == stored["arguments"]
    return new | {"tool_call": new["tool_call"] | {"arguments": json.dumps(stored["arguments"])}}


async def _insert(
    db: Database, conversation_id: uuid.UUID, rows: list[tuple[str, str, Payload]]
) -> None:
    key: object = conversation_id.hex if db.is_sqlite else conversation_id
    payload_sql = ":p" if db.is_sqlite else "CAST(:p AS JSONB)"
    now = datetime.now(UTC)
    async with db.session(write=True) as session:
        await session.execute(
            text(
                "INSERT INTO conversations (id, title, tags, agent, execution_status, "
                "max_iterations, stats, last_seq, version, created_at, updated_at) VALUES "
                "(:id, 't', '{}', '{}', 'idle', 5, '{}', :n, 1, :now, :now)"
            ).bindparams(id=key, n=len(rows), now=now)
        )
        await session.execute(
            text(
                "INSERT INTO events (conversation_id, seq, id, timestamp, kind, source, "
                f"search_text, payload) VALUES (:c, :s, :i, :now, :k, 'agent', :t, {payload_sql})"
            ),
            [
                {
                    "c": key,
                    "s": seq,
                    "i": i,
                    "now": now,
                    "k": kind,
                    "t": f"text {i}",
                    "p": json.dumps(p),
                }
                for seq, (i, kind, p) in enumerate(rows, start=1)
            ],
        )


async def _stored(db: Database) -> dict[str, tuple[str, Payload]]:
    async with db.session(write=False) as session:
        rows = (await session.execute(text("SELECT id, search_text, payload FROM events"))).all()
    return {i: (t, p if isinstance(p, dict) else json.loads(p)) for i, t, p in rows}


async def test_0009_rewrites_events_into_sdk_shapes_and_back(tmp_dir: Path) -> None:
    url = await asyncio.to_thread(create_database, BASE_URL, tmp_dir, "mig_sdk")
    db = await asyncio.to_thread(Database.from_url, url)
    fillers = [(f"filler-{n}", "MessageEvent", FILLER_OLD, FILLER_NEW) for n in range(BATCH)]
    cases = [*CASES, *fillers, *AFTER_FILLERS]
    try:
        await asyncio.to_thread(migrations.upgrade, url, "0008")
        await _insert(db, FIRST, [(i, kind, old) for i, kind, old, _ in cases])
        await _insert(db, SECOND, [SECOND_CASE[:3]])
        cases.append(SECOND_CASE)
        stored = {i: payload for i, (_, payload) in (await _stored(db)).items()}

        await asyncio.to_thread(migrations.upgrade, url, "0009")
        upgraded = await _stored(db)
        for i, _kind, _old, new in cases:
            assert upgraded[i] == (f"text {i}", _in_stored_order(new, stored[i])), i

        await _insert(db, THIRD, [(i, kind, new) for i, kind, new, _, _ in NEW_SHAPED])

        await asyncio.to_thread(migrations.downgrade, url, "0008")
        downgraded = await _stored(db)
        for i, kind, old, _new in cases:
            assert downgraded[i] == (f"text {i}", _downgraded(kind, old, upgraded[i][1])), i
        for i, _kind, _new, down, _again in NEW_SHAPED:
            assert downgraded[i] == (f"text {i}", down), i

        await asyncio.to_thread(migrations.upgrade, url, "0009")
        again = await _stored(db)
        for i, _kind, _new, _down, after in NEW_SHAPED:
            assert again.pop(i) == (f"text {i}", after), i
        assert again == upgraded, "the upgrade after a downgrade writes what the first wrote"
    finally:
        await db.dispose()
        await asyncio.to_thread(drop_database, BASE_URL, url)
