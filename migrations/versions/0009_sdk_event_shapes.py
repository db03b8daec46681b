"""events.payload: stored events rewritten into the OpenHands SDK 1.58 event shapes

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

The server emits SDK-shaped events; this rewrites the rows written before, per kind:
- ActionEvent: `arguments` becomes `tool_call` (id, name, the arguments as a JSON string,
  origin "completion"); `action` is built from the arguments for the finish, think,
  file_editor and terminal tools, keeping the known fields whose JSON type and range the SDK
  accepts, and is null when a required field is missing or refused or the tool is unknown; a
  null `llm_response_id` becomes "legacy-<event id>"; `security_risk` is "UNKNOWN".
- ObservationEvent: `content` moves into `observation` (content, is_error false, and the kind
  of its tool: FinishObservation, ThinkObservation, FileEditorObservation with its action's
  command, "view" when that action has none, TerminalObservation with command and exit_code
  null, MCPToolObservation naming any other tool). An `observation` object that already has a
  `kind` (a row the downgrade turned back) is kept.
- AgentErrorEvent: a null tool_name or tool_call_id becomes "".
- SystemPromptEvent: `skills` is dropped (the prompt text names each skill and its version);
  the function schema of each of the four tools above becomes that tool's SDK definition, and
  schemas of any other tool are dropped: the SDK has no definition to resolve them to.
- InterruptEvent: `reason` is dropped.
- MessageEvent (message content, extended_content) and the thought, system prompt and
  observation content of the kinds above: a text or image part keeps only the SDK's fields
  (type, text or image_urls, cache_prompt when it is a boolean).
Rows already in the new shape come out unchanged, so the upgrade may run again after a
downgrade. Batched by the primary key over the kinds above; only rows that change are written;
search_text is left as it is.

The downgrade turns ActionEvent and ObservationEvent back (arguments parsed from tool_call
when it holds a JSON object, else {}; content from the observation), keeping only the keys of
their old shape. It leaves the other kinds as they are: what the upgrade dropped (skills,
interrupt reasons, unknown tools' schemas, extra part fields) is gone, and the old schema
reads their new shape.
"""

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000
_PAYLOAD = sa.JSON().with_variant(JSONB(), "postgresql")
_events = sa.table(
    "events",
    sa.column("conversation_id", sa.Uuid()),
    sa.column("seq", sa.BigInteger()),
    sa.column("id", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("payload", _PAYLOAD),
)

Payload = dict[str, Any]
Check = Callable[[Any], bool]


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _is_seconds(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and value >= 0


def _is_range(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(map(_is_int, value))


_EDITOR_COMMANDS = frozenset({"view", "create", "str_replace", "insert", "undo_edit"})


def _is_editor_command(value: Any) -> bool:
    return isinstance(value, str) and value in _EDITOR_COMMANDS


class _Tool(NamedTuple):
    """A tool as the SDK 1.58 knows it: its kinds and its action's fields."""

    kind: str
    action: str
    observation: str
    required: dict[str, Check]
    optional: dict[str, Check]


_TOOLS = {
    "finish": _Tool("FinishTool", "FinishAction", "FinishObservation", {"message": _is_str}, {}),
    "think": _Tool("ThinkTool", "ThinkAction", "ThinkObservation", {"thought": _is_str}, {}),
    "file_editor": _Tool(
        "FileEditorTool",
        "FileEditorAction",
        "FileEditorObservation",
        {"command": _is_editor_command, "path": _is_str},
        {
            "file_text": _is_str,
            "old_str": _is_str,
            "new_str": _is_str,
            "insert_line": _is_count,
            "view_range": _is_range,
        },
    ),
    "terminal": _Tool(
        "TerminalTool",
        "TerminalAction",
        "TerminalObservation",
        {"command": _is_str},
        {"is_input": _is_bool, "timeout": _is_seconds, "reset": _is_bool},
    ),
}
_OLD_KEYS = {
    "ActionEvent": (
        "thought",
        "tool_name",
        "tool_call_id",
        "arguments",
        "action",
        "llm_response_id",
    ),
    "ObservationEvent": ("tool_name", "tool_call_id", "action_id", "content", "observation"),
}


def _part(part: Any) -> Any:
    """A text or image content part with only the fields the SDK's part models have."""
    if not isinstance(part, dict):
        return part
    default = "image" if "image_urls" in part and "text" not in part else "text"
    body = "image_urls" if part.get("type", default) == "image" else "text"
    kept = {key: part[key] for key in ("type", body) if key in part}
    if isinstance(part.get("cache_prompt"), bool):
        kept["cache_prompt"] = part["cache_prompt"]
    return kept


def _parts(parts: Any) -> Any:
    return [_part(p) for p in parts] if isinstance(parts, list) else parts


def _action(tool_name: Any, arguments: Payload) -> Payload | None:
    tool = _TOOLS.get(tool_name) if isinstance(tool_name, str) else None
    if tool is None or not all(check(arguments.get(k)) for k, check in tool.required.items()):
        return None
    fields = {k: arguments[k] for k in tool.required}
    fields |= {k: arguments[k] for k, check in tool.optional.items() if check(arguments.get(k))}
    return {"kind": tool.action, **fields}


def _action_event(payload: Payload, event_id: str) -> Payload:
    if "tool_call" in payload and "arguments" not in payload:
        return payload
    arguments = payload.get("arguments")
    arguments = arguments if isinstance(arguments, dict) else {}
    name, call_id = payload.get("tool_name"), payload.get("tool_call_id")
    response_id = payload.get("llm_response_id")
    rest = {k: v for k, v in payload.items() if k != "arguments"}
    return rest | {
        "thought": _parts(payload.get("thought", [])),
        "tool_call": {
            "id": call_id,
            "name": name,
            "arguments": json.dumps(arguments),
            "origin": "completion",
        },
        "action": _action(name, arguments),
        "llm_response_id": f"legacy-{event_id}" if response_id is None else response_id,
        "security_risk": "UNKNOWN",
    }


def _editor_command(action_payload: Payload) -> str | None:
    """The file_editor command of an ActionEvent, in either shape; None if it has none."""
    action = action_payload.get("action")
    if "arguments" in action_payload:
        arguments = action_payload["arguments"]
        is_object = isinstance(arguments, dict)
        action = _action(action_payload.get("tool_name"), arguments) if is_object else None
    command = action.get("command") if isinstance(action, dict) else None
    return command if _is_editor_command(command) else None


def _is_new_observation(payload: Payload) -> bool:
    return "content" not in payload and isinstance(payload.get("observation"), dict)


def _observation_event(payload: Payload, editor_command: str | None) -> Payload:
    if _is_new_observation(payload):
        return payload
    name = payload.get("tool_name")
    observation = payload.get("observation")
    if not (isinstance(observation, dict) and isinstance(observation.get("kind"), str)):
        tool = _TOOLS.get(name) if isinstance(name, str) else None
        observation = {
            "kind": "MCPToolObservation" if tool is None else tool.observation,
            "content": _parts(payload.get("content") or []),
            "is_error": False,
        }
        if tool is None:
            observation["tool_name"] = name
        elif name == "file_editor":
            observation["command"] = editor_command or "view"
        elif name == "terminal":
            observation |= {"command": None, "exit_code": None}
    rest = {k: v for k, v in payload.items() if k != "content"}
    return rest | {"observation": observation}


def _tool_definition(item: Any) -> Any:
    """An SDK tool definition for an OpenAI function schema; None for a tool the SDK lacks."""
    if isinstance(item, dict) and isinstance(item.get("kind"), str) and "function" not in item:
        return item
    function = item.get("function") if isinstance(item, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    tool = _TOOLS.get(name) if isinstance(name, str) else None
    if function is None or tool is None:
        return None
    description = function.get("description")
    return {
        "kind": tool.kind,
        "title": name,
        "description": description if isinstance(description, str) else "",
        "action_type": tool.action,
        "observation_type": tool.observation,
        "annotations": None,
        "meta": None,
    }


def _system_prompt_event(payload: Payload) -> Payload:
    tools = payload.get("tools")
    definitions = [_tool_definition(t) for t in tools] if isinstance(tools, list) else []
    rest = {k: v for k, v in payload.items() if k != "skills"}
    return rest | {
        "system_prompt": _part(payload.get("system_prompt")),
        "tools": [d for d in definitions if d is not None],
    }


def _message_event(payload: Payload) -> Payload:
    out = dict(payload)
    message = payload.get("llm_message")
    if isinstance(message, dict) and "content" in message:
        out["llm_message"] = message | {"content": _parts(message["content"])}
    if "extended_content" in payload:
        out["extended_content"] = _parts(payload["extended_content"])
    return out


def upgraded(kind: str, event_id: str, payload: Payload, editor_command: str | None) -> Payload:
    """The new shape of one stored payload (`editor_command`: for a file_editor observation,
    the command of its action)."""
    if kind == "ActionEvent":
        return _action_event(payload, event_id)
    if kind == "ObservationEvent":
        return _observation_event(payload, editor_command)
    if kind == "SystemPromptEvent":
        return _system_prompt_event(payload)
    if kind == "MessageEvent":
        return _message_event(payload)
    if kind == "AgentErrorEvent":
        return payload | {k: "" for k in ("tool_name", "tool_call_id") if payload.get(k) is None}
    if kind == "InterruptEvent":
        return {k: v for k, v in payload.items() if k != "reason"}
    return payload


def downgraded(kind: str, payload: Payload) -> Payload:
    """The old shape of one ActionEvent or ObservationEvent payload."""
    out = dict(payload)
    if kind == "ActionEvent" and "arguments" not in payload:
        call = payload.get("tool_call")
        raw = call.get("arguments") if isinstance(call, dict) else None
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else None
        except ValueError:
            arguments = None
        out["arguments"] = arguments if isinstance(arguments, dict) else {}
    elif kind == "ObservationEvent" and "content" not in payload:
        observation = payload.get("observation")
        content = observation.get("content") if isinstance(observation, dict) else None
        out["content"] = content if isinstance(content, list) else []
    keys = _OLD_KEYS.get(kind)
    return out if keys is None else {k: v for k, v in out.items() if k in keys}


def _batches(kinds: Sequence[str]) -> Iterator[Sequence[Any]]:
    """The rows of these kinds in primary-key order, BATCH rows at a time."""
    c = _events.c
    last = None
    while True:
        stmt = (
            sa.select(c.conversation_id, c.seq, c.id, c.kind, c.payload)
            .where(c.kind.in_(kinds))
            .order_by(c.conversation_id, c.seq)
            .limit(BATCH)
        )
        if last is not None:
            after = sa.tuple_(sa.literal(last.conversation_id, sa.Uuid()), sa.literal(last.seq))
            stmt = stmt.where(sa.tuple_(c.conversation_id, c.seq) > after)
        rows = op.get_bind().execute(stmt).all()
        if not rows:
            return
        yield rows
        last = rows[-1]


def _action_key(row: Any) -> tuple[Any, str] | None:
    """(conversation_id, action_id) of an old-shape file_editor observation, else None."""
    payload = row.payload
    if (
        row.kind != "ObservationEvent"
        or payload.get("tool_name") != "file_editor"
        or _is_new_observation(payload)
        or not isinstance(payload.get("action_id"), str)
    ):
        return None
    return (row.conversation_id, payload["action_id"])


def _editor_commands(rows: Sequence[Any]) -> dict[tuple[Any, str], str | None]:
    """The command of each action a file_editor observation among rows answers; an action
    outside the batch is read by its unique (conversation_id, id)."""
    wanted = {key for row in rows if (key := _action_key(row)) is not None}
    actions = {
        (row.conversation_id, row.id): row.payload
        for row in rows
        if row.kind == "ActionEvent" and (row.conversation_id, row.id) in wanted
    }
    c = _events.c
    for conversation_id, action_id in wanted - actions.keys():
        actions[(conversation_id, action_id)] = op.get_bind().scalar(
            sa.select(c.payload).where(
                c.conversation_id == conversation_id, c.id == action_id, c.kind == "ActionEvent"
            )
        )
    return {
        key: _editor_command(payload) if isinstance(payload, dict) else None
        for key, payload in actions.items()
    }


def _rewrite(kinds: Sequence[str], convert: Callable[[Sequence[Any]], Iterator[Any]]) -> None:
    """Each batch's rows converted; only the payloads that change are written."""
    c = _events.c
    update = (
        sa.update(_events)
        .where(c.conversation_id == sa.bindparam("b_id"), c.seq == sa.bindparam("b_seq"))
        .values(payload=sa.bindparam("b_payload", type_=_PAYLOAD))
    )
    for rows in _batches(kinds):
        changed = [
            {"b_id": row.conversation_id, "b_seq": row.seq, "b_payload": new}
            for row, new in zip(rows, convert(rows), strict=True)
            if new != row.payload
        ]
        if changed:
            op.get_bind().execute(update, changed)


def _upgraded_rows(rows: Sequence[Any]) -> Iterator[Any]:
    commands = _editor_commands([row for row in rows if isinstance(row.payload, dict)])
    for row in rows:
        if not isinstance(row.payload, dict):
            yield row.payload
            continue
        key = _action_key(row)
        yield upgraded(row.kind, row.id, row.payload, None if key is None else commands.get(key))


def _downgraded_rows(rows: Sequence[Any]) -> Iterator[Any]:
    for row in rows:
        yield downgraded(row.kind, row.payload) if isinstance(row.payload, dict) else row.payload


def upgrade() -> None:
    kinds = (
        "ActionEvent",
        "ObservationEvent",
        "AgentErrorEvent",
        "SystemPromptEvent",
        "InterruptEvent",
        "MessageEvent",
    )
    _rewrite(kinds, _upgraded_rows)


def downgrade() -> None:
    _rewrite(tuple(_OLD_KEYS), _downgraded_rows)
