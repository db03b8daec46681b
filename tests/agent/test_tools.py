"""The built-in tools as plain functions (they run on the tool pool in production)."""

import os
from pathlib import Path

import pytest

from app.agent.tools import FILE_EDITOR, TERMINAL, parse_arguments, tools_for
from app.config import Settings


@pytest.fixture(autouse=True)
def blockbuster() -> None:
    """These tools block by design (files, subprocesses); here they run on no event loop."""


@pytest.fixture
def settings() -> Settings:
    return Settings(_env_file=None, terminal_timeout_seconds=1)  # type: ignore[call-arg]


def edit(workspace: Path, settings: Settings, **args: object) -> tuple[str, bool]:
    result = FILE_EDITOR.run(dict(args), workspace, settings)
    return result.text, result.is_error


def test_file_editor_commands(tmp_path: Path, settings: Settings) -> None:
    ws = tmp_path / "ws"
    assert edit(ws, settings, command="create", path="a/b.txt", file_text="one\ntwo\n") == (
        "created b.txt",
        False,
    )
    text, error = edit(ws, settings, command="view", path="a/b.txt")
    assert not error and text == "     1\tone\n     2\ttwo"
    assert edit(ws, settings, command="view", path="a")[0] == "b.txt"
    assert edit(ws, settings, command="create", path="a/b.txt", file_text="x")[1]
    assert edit(ws, settings, command="str_replace", path="a/b.txt", old_str="two", new_str="2")
    assert (ws / "a/b.txt").read_text() == "one\n2\n"
    text, error = edit(ws, settings, command="str_replace", path="a/b.txt", old_str="zzz")
    assert error and "found 0" in text
    edit(ws, settings, command="insert", path="a/b.txt", insert_line=1, new_str="1.5")
    assert (ws / "a/b.txt").read_text() == "one\n1.5\n2\n"
    assert edit(ws, settings, command="insert", path="a/b.txt", insert_line=9, new_str="x")[1]
    assert edit(ws, settings, command="delete", path="a/b.txt")[1]
    assert edit(ws, settings, command="view", path="missing.txt")[1]


@pytest.mark.parametrize("path", ["../out.txt", "/etc/passwd", "a/../../out.txt", "link/x.txt"])
def test_file_editor_stays_in_the_workspace(tmp_path: Path, settings: Settings, path: str) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    os.symlink(tmp_path, ws / "link")  # a symlink pointing out of the workspace
    text, error = edit(ws, settings, command="create", path=path, file_text="x")
    assert error and "outside the workspace" in text
    assert not (tmp_path / "out.txt").exists() and not (tmp_path / "x.txt").exists()


def test_terminal_runs_in_the_workspace_with_a_timeout(tmp_path: Path, settings: Settings) -> None:
    ws = tmp_path / "ws"
    result = TERMINAL.run({"command": "pwd; echo err >&2; exit 3"}, ws, settings)
    assert result.is_error and str(ws) in result.text and "err" in result.text
    assert "[exit code 3]" in result.text
    slow = TERMINAL.run({"command": "sleep 5"}, ws, settings)
    assert slow.is_error and "timed out" in slow.text


def test_tool_selection_and_arguments(settings: Settings) -> None:
    assert [t.name for t in tools_for(["think"], settings)] == ["finish", "think"]
    assert "terminal" not in [t.name for t in tools_for(None, settings)]
    enabled = Settings(_env_file=None, enable_terminal=True)  # type: ignore[call-arg]
    assert "terminal" in [t.name for t in tools_for(None, enabled)]
    assert parse_arguments('{"a": 1}') == ({"a": 1}, None)
    assert parse_arguments("[1]")[1] == "arguments must be a JSON object"
    assert parse_arguments("{bad")[1] is not None
