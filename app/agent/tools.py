"""Built-in tools. Each runs as a blocking function on the tool pool, never on the loop.

`file_editor` and `terminal` are confined to the conversation's workspace directory; a path
that escapes it is an error observation, not an exception. `terminal` is off unless
AGENT_SERVER_ENABLE_TERMINAL is set.

A tool's arguments come from the LLM and may be anything: whatever a tool function raises
becomes an error result for that call (`Tool.run`), never the end of the run.

A tool is given the conversation's environment secrets (`env`, see app/vault/env.py):
`terminal` exports them to its command, whose environment never holds the server's own
AGENT_SERVER_* settings. Every secret value of MIN_HIDDEN characters or more is replaced by
HIDDEN wherever it occurs in a tool's result, before the result becomes an observation (and
so before it reaches the LLM or the database). Shorter values are left alone: they would hide
ordinary text (a value `1` would blank every digit 1), and a value that short can be guessed
anyway. Only literal occurrences are hidden: a command that prints a value transformed
(base64, reversed) shows it, as it may show any file the server's user can read.
"""

import json
import logging
import math
import os
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from app.agent import task_tracker
from app.config import Settings
from app.validators import INT_MAX, INT_MIN
from app.vault.env import is_reserved, without_reserved
from app.vault.redact import REDACTOR

logger = logging.getLogger(__name__)
MAX_OUTPUT = 30_000
MAX_ERROR = 2_000
MAX_DEPTH = 64
HIDDEN = "<secret-hidden>"
MIN_HIDDEN = 4


# A conversation's environment secrets (NAME: value), or None.
Env = Mapping[str, str] | None


def hide_secrets(text: str, env: Env) -> str:
    """`text` with every value of `env` (MIN_HIDDEN characters or more) replaced by HIDDEN,
    in one pass (HIDDEN itself is never rewritten), longest first (a value containing
    another is hidden whole)."""
    values = sorted({v for v in (env or {}).values() if len(v) >= MIN_HIDDEN}, key=len)
    if not values or not any(value in text for value in values):
        return text
    return re.sub("|".join(map(re.escape, reversed(values))), HIDDEN, text)


@dataclass(frozen=True)
class ToolResult:
    text: str
    is_error: bool = False
    finish: bool = False
    # Fields of the SDK observation the result gives (the task tracker's list).
    fields: dict[str, Any] | None = None


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[[dict[str, Any], Path, Settings, Env], ToolResult]

    def run(
        self, args: dict[str, Any], workspace: Path, settings: Settings, env: Env = None
    ) -> ToolResult:
        """The tool's result, with the values of `env` hidden; an exception it raises is the
        call's error result."""
        try:
            result = self.function(args, workspace, settings, env)
        except Exception as exc:
            # The arguments stay out of the log: they are the LLM's, of any size and content.
            logger.warning("tool %s raised %s", self.name, type(exc).__name__)
            return ToolResult(_describe(exc, env), is_error=True)
        return replace(
            result,
            text=_hidden(result.text, env),
            fields=None if result.fields is None else _hidden(result.fields, env),
        )

    def schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


def _hidden(value: Any, env: Env) -> Any:
    """`value` (a result's text or fields) with every secret hidden: the conversation's env
    values, and the credentials this process knows (REDACTOR: its own LLM key among them, as a
    command could print them from /proc or a file)."""
    if isinstance(value, str):
        return REDACTOR.redact(hide_secrets(value, env))
    if isinstance(value, dict):
        return {key: _hidden(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [_hidden(item, env) for item in value]
    return value


def _describe(exc: Exception, env: Env) -> str:
    try:
        detail = str(exc)
    except Exception:  # an exception whose __str__ fails still names its type
        detail = "(no description)"
    # Hidden before the cut, which could otherwise leave part of a value.
    return hide_secrets(f"{type(exc).__name__}: {detail}", env)[:MAX_ERROR]


def _finish(args: dict[str, Any], _workspace: Path, _settings: Settings, _env: Env) -> ToolResult:
    return ToolResult(str(args.get("message", "")), finish=True)


def _think(_args: dict[str, Any], _workspace: Path, _settings: Settings, _env: Env) -> ToolResult:
    return ToolResult("Your thought has been logged.")


def _inside(workspace: Path, path: str) -> Path | None:
    root = workspace.resolve()
    target = (root / path).resolve()
    return target if target == root or root in target.parents else None


def _file_editor(
    args: dict[str, Any], workspace: Path, _settings: Settings, _env: Env
) -> ToolResult:
    command, path = args.get("command"), args.get("path")
    if not isinstance(path, str) or not path:
        return ToolResult("`path` is required", is_error=True)
    workspace.mkdir(parents=True, exist_ok=True)
    target = _inside(workspace, path)
    if target is None:
        return ToolResult(f"path {path!r} is outside the workspace", is_error=True)
    try:
        return _edit(command, target, args)
    except (OSError, UnicodeDecodeError) as exc:
        return ToolResult(f"{type(exc).__name__}: {exc}", is_error=True)


def _edit(command: Any, target: Path, args: dict[str, Any]) -> ToolResult:
    if command == "view":
        if target.is_dir():
            names = sorted(p.name + ("/" if p.is_dir() else "") for p in target.iterdir())
            return ToolResult("\n".join(names))
        lines = target.read_text().splitlines()
        return ToolResult("\n".join(f"{i:6}\t{line}" for i, line in enumerate(lines, 1)))
    if command == "create":
        if target.exists():
            return ToolResult(f"{target.name} exists; use str_replace", is_error=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(str(args.get("file_text", "")))
        return ToolResult(f"created {target.name}")
    if command == "str_replace":
        old, new = str(args.get("old_str", "")), str(args.get("new_str", ""))
        text = target.read_text()
        if not old or text.count(old) != 1:
            found = text.count(old) if old else 0
            return ToolResult(f"old_str must occur exactly once (found {found})", is_error=True)
        target.write_text(text.replace(old, new, 1))
        return ToolResult(f"edited {target.name}")
    if command == "insert":
        line = args.get("insert_line")
        lines = target.read_text().splitlines(keepends=True)
        if not isinstance(line, int) or not 0 <= line <= len(lines):
            return ToolResult(f"insert_line must be 0..{len(lines)}", is_error=True)
        lines.insert(line, str(args.get("new_str", "")).rstrip("\n") + "\n")
        target.write_text("".join(lines))
        return ToolResult(f"inserted into {target.name} after line {line}")
    return ToolResult(f"unknown command {command!r}", is_error=True)


def command_environment(env: Env) -> dict[str, str]:
    """A terminal command's environment: the server's own (PATH, HOME, ...) without any
    AGENT_SERVER_* variable, plus the conversation's secrets. Read from os.environ, not
    Settings: the command needs the process environment itself, minus the settings."""
    secrets = {k: v for k, v in (env or {}).items() if not is_reserved(k)}
    return {**without_reserved(os.environ), **secrets}


def _terminal(args: dict[str, Any], workspace: Path, settings: Settings, env: Env) -> ToolResult:
    command = args.get("command")
    if not isinstance(command, str) or not command.strip():
        return ToolResult("`command` is required", is_error=True)
    workspace.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=workspace,
            env=command_environment(env),
            capture_output=True,
            text=True,
            timeout=settings.terminal_timeout_seconds,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return ToolResult(f"timed out after {settings.terminal_timeout_seconds:g} s", is_error=True)
    # Hidden before the cut, which could otherwise leave the end of a value.
    output = hide_secrets(done.stdout + done.stderr, env)[-MAX_OUTPUT:]
    return ToolResult(f"{output}\n[exit code {done.returncode}]", is_error=done.returncode != 0)


FINISH = Tool(
    "finish",
    "Finish the task, with a final message to the user.",
    {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]},
    _finish,
)
THINK = Tool(
    "think",
    "Think something through; nothing is executed.",
    {"type": "object", "properties": {"thought": {"type": "string"}}, "required": ["thought"]},
    _think,
)
FILE_EDITOR = Tool(
    "file_editor",
    "View, create and edit files in the workspace (view, create, str_replace, insert).",
    {
        "type": "object",
        "properties": {
            "command": {"type": "string", "enum": ["view", "create", "str_replace", "insert"]},
            "path": {"type": "string", "description": "relative to the workspace"},
            "file_text": {"type": "string"},
            "old_str": {"type": "string"},
            "new_str": {"type": "string"},
            "insert_line": {"type": "integer"},
        },
        "required": ["command", "path"],
    },
    _file_editor,
)
TERMINAL = Tool(
    "terminal",
    "Run a bash command in the workspace (with a timeout).",
    {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
    _terminal,
)


def _task_tracker(
    args: dict[str, Any], workspace: Path, settings: Settings, env: Env
) -> ToolResult:
    try:
        text, tasks = task_tracker.run(args, workspace, settings, env)
    except task_tracker.TaskListError as exc:
        return ToolResult(str(exc), is_error=True)
    return ToolResult(text, fields={"task_list": tasks})


TASK_TRACKER = Tool(
    "task_tracker",
    "Keep the task's plan: `view` shows the task list, `plan` replaces it (each task a title,"
    " notes and a status: todo, in_progress or done). View it before you change it.",
    {
        "type": "object",
        "properties": {
            "command": {"type": "string", "enum": ["view", "plan"]},
            "task_list": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "title": {"type": "string"},
                        "notes": {"type": "string"},
                        "status": {"type": "string", "enum": list(task_tracker.STATUSES)},
                    },
                    "required": ["title"],
                },
            },
        },
        "required": ["command"],
    },
    _task_tracker,
)
ALL_TOOLS = {tool.name: tool for tool in (FINISH, THINK, FILE_EDITOR, TERMINAL, TASK_TRACKER)}


def tools_for(names: list[str] | None, settings: Settings) -> list[Tool]:
    """The tools a conversation asked for (default: all it may use). `finish` and `think`
    always come first, as in the OpenHands SDK, where `tools: []` means those two."""
    wanted = names if names is not None else list(ALL_TOOLS)
    chosen = [ALL_TOOLS[n] for n in wanted if n in ALL_TOOLS and n not in ("finish", "think")]
    if not settings.enable_terminal:
        chosen = [tool for tool in chosen if tool.name != "terminal"]
    return [ALL_TOOLS["finish"], ALL_TOOLS["think"], *chosen]


def _int(text: str) -> int:
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError("an integer beyond 64 bits")
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"a number out of range ({text[:20]})")
    return value


def _constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def _depth_exceeds(value: Any, limit: int) -> bool:
    level = [value]
    for _ in range(limit):
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return False
    return any(isinstance(item, dict | list) for item in level)


def parse_arguments(raw: str | None) -> tuple[dict[str, Any], str | None]:
    """Tool-call arguments as a dict, or an error text when the LLM sent malformed JSON.

    Only what the event store can hold is accepted: no NaN or infinities, integers within
    64 bits, nesting within MAX_DEPTH (the JSON encoders stop at 255 levels).
    """
    try:
        value = json.loads(
            raw or "{}", parse_int=_int, parse_float=_float, parse_constant=_constant
        )
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        return {}, f"arguments are not valid JSON: {exc}"[:MAX_ERROR]
    if not isinstance(value, dict):
        return {}, "arguments must be a JSON object"
    if _depth_exceeds(value, MAX_DEPTH):
        return {}, f"arguments are nested deeper than {MAX_DEPTH} levels"
    return value, None
