"""Built-in tools. Each runs as a blocking function on the tool pool, never on the loop.

`file_editor` and `terminal` are confined to the conversation's workspace directory; a path
that escapes it is an error observation, not an exception. `terminal` is off unless
AGENT_SERVER_ENABLE_TERMINAL is set.
"""

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.config import Settings

MAX_OUTPUT = 30_000


@dataclass(frozen=True)
class ToolResult:
    text: str
    is_error: bool = False
    finish: bool = False


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[[dict[str, Any], Path, Settings], ToolResult]

    def schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


def _finish(args: dict[str, Any], _workspace: Path, _settings: Settings) -> ToolResult:
    return ToolResult(str(args.get("message", "")), finish=True)


def _think(_args: dict[str, Any], _workspace: Path, _settings: Settings) -> ToolResult:
    return ToolResult("Your thought has been logged.")


def _inside(workspace: Path, path: str) -> Path | None:
    root = workspace.resolve()
    target = (root / path).resolve()
    return target if target == root or root in target.parents else None


def _file_editor(args: dict[str, Any], workspace: Path, _settings: Settings) -> ToolResult:
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


def _terminal(args: dict[str, Any], workspace: Path, settings: Settings) -> ToolResult:
    command = args.get("command")
    if not isinstance(command, str) or not command.strip():
        return ToolResult("`command` is required", is_error=True)
    workspace.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=workspace,
            capture_output=True,
            text=True,
            timeout=settings.terminal_timeout_seconds,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return ToolResult(f"timed out after {settings.terminal_timeout_seconds:g} s", is_error=True)
    output = (done.stdout + done.stderr)[-MAX_OUTPUT:]
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
ALL_TOOLS = {tool.name: tool for tool in (FINISH, THINK, FILE_EDITOR, TERMINAL)}


def tools_for(names: list[str] | None, settings: Settings) -> list[Tool]:
    """The tools a conversation asked for (default: all it may use); finish always."""
    wanted = names if names is not None else list(ALL_TOOLS)
    chosen = [ALL_TOOLS[n] for n in wanted if n in ALL_TOOLS]
    if not settings.enable_terminal:
        chosen = [tool for tool in chosen if tool.name != "terminal"]
    if FINISH not in chosen:
        chosen.insert(0, FINISH)
    return chosen


def parse_arguments(raw: str | None) -> tuple[dict[str, Any], str | None]:
    """Tool-call arguments as a dict, or an error text when the LLM sent malformed JSON."""
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError as exc:
        return {}, f"arguments are not valid JSON: {exc}"
    if not isinstance(value, dict):
        return {}, "arguments must be a JSON object"
    return value, None
