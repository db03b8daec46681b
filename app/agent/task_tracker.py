"""The task tracker (the OpenHands SDK's TaskTrackerTool): the agent's plan, a list of tasks
with a status each, kept in `<workspace>/.openhands/TASKS.json`.

`view` shows the list; `plan` replaces it with `task_list`. Statuses are `todo`,
`in_progress`, `done` (and the spellings the SDK takes for them). The list is bounded, and a
malformed one is the call's error, never a half-written file (written to a temporary file,
then renamed).
"""

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app.config import Settings

STATUSES = ("todo", "in_progress", "done")
ALIASES = {"pending": "todo", "to_do": "todo", "completed": "done", "complete": "done"}
MAX_TASKS = 200
MAX_TEXT = 4_000
FILE = Path(".openhands") / "TASKS.json"


class TaskListError(ValueError):
    """A task list the tracker cannot take."""


def status_of(value: Any) -> str:
    if not isinstance(value, str):
        raise TaskListError(f"a status must be one of {list(STATUSES)}")
    normal = value.strip().lower().replace("-", "_").replace(" ", "_")
    status = ALIASES.get(normal, normal)
    if status not in STATUSES:
        raise TaskListError(f"status {value[:40]!r} is not one of {list(STATUSES)}")
    return status


def tasks_of(value: Any) -> list[dict[str, str]]:
    """The task list as stored: each task's title, notes and status, checked."""
    if not isinstance(value, list) or len(value) > MAX_TASKS:
        raise TaskListError(f"task_list must be a list of at most {MAX_TASKS} tasks")
    tasks = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("title"), str):
            raise TaskListError("every task needs a string `title`")
        notes = item.get("notes", "")
        if not isinstance(notes, str):
            raise TaskListError("a task's `notes` must be a string")
        if len(item["title"]) > MAX_TEXT or len(notes) > MAX_TEXT:
            raise TaskListError(f"a task's title and notes hold at most {MAX_TEXT} characters")
        tasks.append(
            {
                "title": item["title"],
                "notes": notes,
                "status": status_of(item.get("status", "todo")),
            }
        )
    return tasks


def render(tasks: list[dict[str, str]]) -> str:
    if not tasks:
        return "No tasks yet."
    marks = {"todo": "[ ]", "in_progress": "[~]", "done": "[x]"}
    lines = [f"{i}. {marks[t['status']]} {t['title']}" for i, t in enumerate(tasks, 1)]
    return "\n".join(lines)


def read(workspace: Path) -> list[dict[str, str]]:
    path = workspace / FILE
    if not path.is_file():
        return []
    try:
        return tasks_of(json.loads(path.read_text()))
    except (ValueError, TaskListError):
        return []  # a file the agent (or anyone) broke by hand: start again


def write(workspace: Path, tasks: list[dict[str, str]]) -> None:
    path = workspace / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".TASKS.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(tasks, out, indent=1)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def run(
    args: dict[str, Any], workspace: Path, _settings: Settings, _env: Mapping[str, str] | None
) -> tuple[str, list[dict[str, str]]]:
    """The tracker's answer and the list after the call. Raises TaskListError."""
    command = args.get("command", "view")
    if command == "view":
        tasks = read(workspace)
        return render(tasks), tasks
    if command == "plan":
        tasks = tasks_of(args.get("task_list", []))
        write(workspace, tasks)
        return f"Task list updated ({len(tasks)} tasks).\n{render(tasks)}", tasks
    raise TaskListError(f"unknown command {str(command)[:40]!r}: use `view` or `plan`")
