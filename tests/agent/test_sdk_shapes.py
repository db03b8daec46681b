"""The built-in tools in the OpenHands SDK's shapes: definitions, actions, observations."""

from typing import Any

import pytest

from app.agent import sdk_shapes


def test_a_definition_names_the_sdk_classes_of_a_known_tool() -> None:
    assert sdk_shapes.definition("think", "Think.") == {
        "kind": "ThinkTool",
        "title": "think",
        "description": "Think.",
        "action_type": "ThinkAction",
        "observation_type": "ThinkObservation",
        "annotations": {
            "title": "think",
            "readOnlyHint": True,
            "destructiveHint": False,
            "idempotentHint": True,
            "openWorldHint": False,
        },
        "meta": None,
    }
    terminal = sdk_shapes.definition("terminal", "Run.")
    assert terminal is not None and terminal["annotations"]["destructiveHint"] is True
    assert sdk_shapes.definition("sleep", "Not the SDK's.") is None


@pytest.mark.parametrize(
    ("name", "arguments", "action"),
    [
        ("finish", {"message": "ok"}, {"kind": "FinishAction", "message": "ok"}),
        ("think", {"thought": "t", "extra": 1}, {"kind": "ThinkAction", "thought": "t"}),
        (
            "file_editor",
            {"command": "view", "path": "a", "view_range": [1, 2], "insert_line": -1},
            {"kind": "FileEditorAction", "command": "view", "path": "a", "view_range": [1, 2]},
        ),
        (
            "terminal",
            {"command": "ls", "timeout": 1.5, "is_input": 1, "reset": False},
            {"kind": "TerminalAction", "command": "ls", "timeout": 1.5, "reset": False},
        ),
        (
            "terminal",
            {"command": "ls", "timeout": True},
            {"kind": "TerminalAction", "command": "ls"},
        ),
        ("think", {}, None),  # a required field missing
        ("finish", {"message": 1}, None),  # mistyped
        ("file_editor", {"command": "delete", "path": "a"}, None),  # not an SDK command
        (
            "file_editor",
            {"command": "view", "path": "a", "view_range": [1, True]},
            {"kind": "FileEditorAction", "command": "view", "path": "a"},
        ),
        ("sleep", {}, None),  # a tool the SDK does not know
    ],
)
def test_an_action_keeps_the_known_fields_whose_types_fit(
    name: str, arguments: dict[str, Any], action: dict[str, Any] | None
) -> None:
    """Checked with a bool counted as a number (plain isinstance checks): `timeout: True`
    and `view_range: [1, True]` were kept."""
    assert sdk_shapes.action(name, arguments) == action


def test_an_observation_carries_the_tools_own_fields() -> None:
    text = [{"type": "text", "text": "out"}]
    assert sdk_shapes.observation("terminal", {"command": "ls"}, "out") == {
        "kind": "TerminalObservation",
        "content": text,
        "is_error": False,
        "command": "ls",
        "exit_code": None,
    }
    assert sdk_shapes.observation("file_editor", {"command": "nope", "path": 3}, "out") == {
        "kind": "FileEditorObservation",
        "content": text,
        "is_error": False,
        "command": "view",
        "path": None,
    }
    assert sdk_shapes.observation("finish", {}, "out", is_error=True) == {
        "kind": "FinishObservation",
        "content": text,
        "is_error": True,
    }
    assert sdk_shapes.observation("sleep", {}, "out") == {
        "kind": "MCPToolObservation",
        "tool_name": "sleep",
        "content": text,
        "is_error": False,
    }
