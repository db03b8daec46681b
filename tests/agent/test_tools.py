"""The built-in tools as plain functions (they run on the tool pool in production)."""

import logging
import os
from pathlib import Path
from typing import Any

import pytest

from app.agent.tools import (
    FILE_EDITOR,
    MAX_ERROR,
    TERMINAL,
    Env,
    Tool,
    ToolResult,
    parse_arguments,
    tools_for,
)
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
    # As in the OpenHands SDK: no tools asked for still means finish and think.
    assert [t.name for t in tools_for([], settings)] == ["finish", "think"]
    assert [t.name for t in tools_for(["file_editor", "finish"], settings)] == [
        "finish",
        "think",
        "file_editor",
    ]
    assert "terminal" not in [t.name for t in tools_for(None, settings)]
    enabled = Settings(_env_file=None, enable_terminal=True)  # type: ignore[call-arg]
    assert "terminal" in [t.name for t in tools_for(None, enabled)]
    assert parse_arguments('{"a": 1}') == ({"a": 1}, None)
    assert parse_arguments("[1]")[1] == "arguments must be a JSON object"
    assert parse_arguments("{bad")[1] is not None


def _raises(args: dict[str, Any], _workspace: Path, _settings: Settings, _env: Env) -> ToolResult:
    raise RuntimeError(f"failed on {args['secret']} " + "x" * 5_000)


def test_an_exception_in_a_tool_is_its_error_result(
    tmp_path: Path, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Checked with Tool.run calling the function bare: both calls raise."""
    tool = Tool("boom", "raises", {}, _raises)
    with caplog.at_level(logging.WARNING, logger="app.agent.tools"):
        result = tool.run({"secret": "s3cr3t"}, tmp_path, settings)
    assert result.is_error and not result.finish
    assert result.text.startswith("RuntimeError: failed on s3cr3t xxx")
    assert len(result.text) == MAX_ERROR
    assert "boom raised RuntimeError" in caplog.text and "s3cr3t" not in caplog.text
    assert edit(tmp_path / "ws", settings, command="create", path="a\x00b") == (
        "ValueError: embedded null byte",
        True,
    )


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ('{"a": NaN}', "NaN is not JSON"),
        ('{"a": -Infinity}', "-Infinity is not JSON"),
        ('{"a": 1e999}', "a number out of range"),
        ('{"a": 18446744073709551616}', "an integer beyond 64 bits"),
        ('{"a": -9223372036854775809}', "an integer beyond 64 bits"),
        ('{"a": ' * 65 + "1" + "}" * 65, "nested deeper than 64 levels"),
        ("[" * 100_000, "not valid JSON: maximum recursion depth exceeded"),
    ],
)
def test_arguments_the_store_cannot_hold_are_invalid(raw: str, problem: str) -> None:
    """Checked against the parser before the fix: NaN, 1e999 and the big integers parsed,
    and "[" * 100000 raised RecursionError."""
    arguments, error = parse_arguments(raw)
    assert arguments == {} and error is not None and problem in error, error


def test_arguments_within_the_bounds_parse() -> None:
    edge = '{"a": [18446744073709551615, -9223372036854775808, 1.5e308, -0.0]}'
    assert parse_arguments(edge) == ({"a": [2**64 - 1, -(2**63), 1.5e308, -0.0]}, None)
    deepest = '{"a": ' * 63 + "[1]" + "}" * 63
    assert parse_arguments(deepest)[1] is None
    assert parse_arguments(None) == ({}, None)
