"""The built-in tools as the OpenHands SDK names them: the tool definition a
SystemPromptEvent lists, the action an ActionEvent carries, the observation of an
ObservationEvent (`kind` plus the fields of the SDK's class, which refuses any other).

Our tools keep their own LLM-facing schemas; this module only says what their calls and
results look like in the SDK's event shapes. A tool the SDK does not know is shown as an MCP
tool (`MCPToolObservation`), the SDK's generic kind.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.agent import task_tracker

# JSON types of an action field (a bool is not an int here); the SDK wants insert_line and
# timeout >= 0.
STRING, COUNT, SECONDS, BOOLEAN, INT_PAIR = "string", "count", "seconds", "boolean", "pair"
TASKS = "tasks"  # a task tracker's list (task_tracker.tasks_of)


def _fits(value: Any, kind: str) -> bool:
    if kind == TASKS:
        try:
            task_tracker.tasks_of(value)
        except task_tracker.TaskListError:
            return False
        return True
    if kind == STRING:
        return isinstance(value, str)
    if kind == BOOLEAN:
        return isinstance(value, bool)
    if kind == COUNT:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if kind == SECONDS:
        return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )


ObservationFields = Callable[[dict[str, Any]], dict[str, Any]]
FILE_COMMANDS = frozenset({"view", "create", "str_replace", "insert", "undo_edit"})
TASK_COMMANDS = frozenset({"view", "plan"})


def _no_fields(_arguments: dict[str, Any]) -> dict[str, Any]:
    return {}


def _terminal_fields(arguments: dict[str, Any]) -> dict[str, Any]:
    command = arguments.get("command")
    return {"command": command if isinstance(command, str) else None, "exit_code": None}


def _file_fields(arguments: dict[str, Any]) -> dict[str, Any]:
    command, path = arguments.get("command"), arguments.get("path")
    return {
        "command": command if command in FILE_COMMANDS else "view",
        "path": path if isinstance(path, str) else None,
    }


def _task_fields(arguments: dict[str, Any]) -> dict[str, Any]:
    """A plan's observation shows the list planned; a view's is given by the tool's result
    (`ToolResult.fields`)."""
    command = arguments.get("command", "view")
    if command == "plan" and _fits(arguments.get("task_list", []), TASKS):
        return {
            "command": "plan",
            "task_list": task_tracker.tasks_of(arguments.get("task_list", [])),
        }
    return {"command": "view", "task_list": []}


@dataclass(frozen=True)
class SdkTool:
    tool_kind: str
    action_kind: str
    observation_kind: str
    fields: dict[str, str]  # action field -> JSON type
    required: frozenset[str]
    observation_fields: ObservationFields = _no_fields
    read_only: bool = False


SDK_TOOLS = {
    "finish": SdkTool(
        "FinishTool",
        "FinishAction",
        "FinishObservation",
        {"message": STRING},
        frozenset({"message"}),
        read_only=True,
    ),
    "think": SdkTool(
        "ThinkTool",
        "ThinkAction",
        "ThinkObservation",
        {"thought": STRING},
        frozenset({"thought"}),
        read_only=True,
    ),
    "file_editor": SdkTool(
        "FileEditorTool",
        "FileEditorAction",
        "FileEditorObservation",
        {
            "command": STRING,
            "path": STRING,
            "file_text": STRING,
            "old_str": STRING,
            "new_str": STRING,
            "insert_line": COUNT,
            "view_range": INT_PAIR,
        },
        frozenset({"command", "path"}),
        _file_fields,
    ),
    "terminal": SdkTool(
        "TerminalTool",
        "TerminalAction",
        "TerminalObservation",
        {"command": STRING, "is_input": BOOLEAN, "timeout": SECONDS, "reset": BOOLEAN},
        frozenset({"command"}),
        _terminal_fields,
    ),
    "task_tracker": SdkTool(
        "TaskTrackerTool",
        "TaskTrackerAction",
        "TaskTrackerObservation",
        {"command": STRING, "task_list": TASKS},
        frozenset(),
        _task_fields,
    ),
}


def definition(name: str, description: str) -> dict[str, Any] | None:
    """The tool as a SystemPromptEvent lists it (None for a tool the SDK does not know)."""
    sdk = SDK_TOOLS.get(name)
    if sdk is None:
        return None
    return {
        "kind": sdk.tool_kind,
        "title": name,
        "description": description,
        "action_type": sdk.action_kind,
        "observation_type": sdk.observation_kind,
        "annotations": {
            "title": name,
            "readOnlyHint": sdk.read_only,
            "destructiveHint": not sdk.read_only,
            "idempotentHint": sdk.read_only,
            "openWorldHint": False,
        },
        "meta": None,
    }


def action(name: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
    """The call's arguments as the tool's SDK action: the fields it knows whose types fit;
    None when the tool is unknown, a required field is missing or mistyped, or a file
    command is not one the SDK knows."""
    sdk = SDK_TOOLS.get(name)
    if sdk is None:
        return None
    fitting = {k: v for k, v in arguments.items() if k in sdk.fields and _fits(v, sdk.fields[k])}
    if not sdk.required <= fitting.keys():
        return None
    if name == "file_editor" and fitting["command"] not in FILE_COMMANDS:
        return None
    if name == "task_tracker":
        if fitting.get("command", "view") not in TASK_COMMANDS:
            return None
        if "task_list" in fitting:
            fitting["task_list"] = task_tracker.tasks_of(fitting["task_list"])
    return {"kind": sdk.action_kind, **fitting}


def observation(
    name: str,
    arguments: dict[str, Any],
    text: str,
    is_error: bool = False,
    fields: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A tool's result as the tool's SDK observation."""
    content = [{"type": "text", "text": text}]
    sdk = SDK_TOOLS.get(name)
    if sdk is None:
        return {
            "kind": "MCPToolObservation",
            "tool_name": name,
            "content": content,
            "is_error": is_error,
        }
    return {
        "kind": sdk.observation_kind,
        "content": content,
        "is_error": is_error,
        **sdk.observation_fields(arguments),
        **(fields or {}),
    }
