"""A conversation's environment secrets in its tools: exported to terminal commands, never
the server's own AGENT_SERVER_* settings, and every value hidden from what a tool answers."""

from pathlib import Path
from typing import Any

import pytest

from app.agent.tools import (
    FILE_EDITOR,
    HIDDEN,
    MAX_ERROR,
    MAX_OUTPUT,
    TERMINAL,
    Env,
    Tool,
    ToolResult,
    command_environment,
    hide_secrets,
)
from app.config import Settings

TOKEN = "tok-7f3a9c2e5b1d"
ENV = {"API_TOKEN": TOKEN, "SHORT": "abc", "EMPTY": ""}


@pytest.fixture(autouse=True)
def blockbuster() -> None:
    """These tools block by design (files, subprocesses); here they run on no event loop."""


@pytest.fixture
def settings() -> Settings:
    return Settings(_env_file=None, terminal_timeout_seconds=5)  # type: ignore[call-arg]


def terminal(tmp_path: Path, settings: Settings, command: str, env: Env) -> ToolResult:
    return TERMINAL.run({"command": command}, tmp_path / "ws", settings, env)


def test_a_command_sees_the_secrets_and_its_output_hides_their_values(
    tmp_path: Path, settings: Settings
) -> None:
    result = terminal(
        tmp_path,
        settings,
        '[ "$API_TOKEN" = "' + TOKEN + '" ] && echo same; echo "t=$API_TOKEN s=$SHORT e=[$EMPTY]"',
        ENV,
    )
    assert not result.is_error, result.text
    assert result.text == f"same\nt={HIDDEN} s=abc e=[]\n\n[exit code 0]"
    # Also on stderr, and in a failing command's output.
    failed = terminal(tmp_path, settings, 'echo "$API_TOKEN" >&2; exit 2', ENV)
    assert failed.is_error and TOKEN not in failed.text and HIDDEN in failed.text


def test_no_server_setting_reaches_a_command(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked once against a broken variant (subprocess.run without env=): the command
    printed AGENT_SERVER_SECRET_KEY and the test failed."""
    monkeypatch.setenv("AGENT_SERVER_SECRET_KEY", "server-fernet-key-0a1b2c")
    monkeypatch.setenv("AGENT_SERVER_LLM_API_KEY", "server-llm-key-3d4e5f")
    monkeypatch.setenv("agent_server_session_api_keys", "server-session-6a7b8c")
    monkeypatch.setenv("OTHER_VARIABLE", "kept")
    for env in (None, {**ENV, "AGENT_SERVER_INJECTED": "from-a-secret"}):
        result = terminal(tmp_path, settings, "env", env)
        assert not result.is_error, result.text
        assert "server-" not in result.text and "from-a-secret" not in result.text
        assert "OTHER_VARIABLE=kept" in result.text and "PATH=" in result.text
    environment = command_environment(ENV)
    assert environment["API_TOKEN"] == TOKEN and environment["OTHER_VARIABLE"] == "kept"
    assert not [name for name in environment if name.upper().startswith("AGENT_SERVER_")]


def test_a_value_cut_by_the_output_limit_leaves_no_part_behind(
    tmp_path: Path, settings: Settings
) -> None:
    """The output keeps its last MAX_OUTPUT characters: hidden after the cut, the value's
    end would survive at the start of the kept output. Checked once against that broken
    variant (hide_secrets after the cut): the test failed."""
    tail = MAX_OUTPUT - 6
    command = f'printf "%s" "$API_TOKEN"; head -c {tail} /dev/zero | tr "\\0" x'
    result = terminal(tmp_path, settings, command, ENV)
    assert not result.is_error
    assert TOKEN[-6:] not in result.text and result.text.startswith(HIDDEN[-6:] + "x")


def test_hiding_is_one_pass_longest_first() -> None:
    """In two passes, "secret" would be hidden again inside the HIDDEN left by the first."""
    env = {"A": "secret", "B": "my-secret-value", "C": "abc"}
    assert hide_secrets("my-secret-value, secret, abc", env) == f"{HIDDEN}, {HIDDEN}, abc"
    assert hide_secrets("anything", None) == hide_secrets("anything", {}) == "anything"


def test_every_tool_result_and_error_hides_the_values(tmp_path: Path, settings: Settings) -> None:
    ws = tmp_path / "ws"
    (ws / "notes").mkdir(parents=True)
    (ws / "notes" / f"{TOKEN}.txt").write_text(f"token: {TOKEN}\n")
    view = FILE_EDITOR.run({"command": "view", "path": f"notes/{TOKEN}.txt"}, ws, settings, ENV)
    assert view.text == f"     1\ttoken: {HIDDEN}"
    listing = FILE_EDITOR.run({"command": "view", "path": "notes"}, ws, settings, ENV)
    assert listing.text == f"{HIDDEN}.txt"
    # Without the secrets (a caller that passes none), the same tool shows what it reads.
    assert TOKEN in FILE_EDITOR.run({"command": "view", "path": "notes"}, ws, settings).text

    def raises(args: dict[str, Any], _ws: Path, _settings: Settings, _env: Env) -> ToolResult:
        raise RuntimeError("x" * (MAX_ERROR - 20) + TOKEN)

    error = Tool("boom", "raises", {}, raises).run({}, ws, settings, ENV)
    assert error.is_error and TOKEN[:6] not in error.text and error.text.endswith(HIDDEN[:6])


def test_secrets_are_hidden_in_a_results_fields_too(tmp_path: Path) -> None:
    """The task tracker's list goes into the observation as fields, not text: hidden as well
    (checked against Tool.run hiding only the text). So is a credential this process knows
    (REDACTOR), such as its own LLM key printed from /proc by a command."""
    from app.agent.tools import TASK_TRACKER
    from app.vault.redact import MASK, REDACTOR

    plan = {"command": "plan", "task_list": [{"title": f"use {TOKEN}", "notes": "server-key-42"}]}
    with REDACTOR.hiding(["server-key-42"]):
        result = TASK_TRACKER.run(plan, tmp_path, Settings(_env_file=None), ENV)  # type: ignore[call-arg]
    assert result.fields is not None
    [task] = result.fields["task_list"]
    assert task["title"] == f"use {HIDDEN}" and task["notes"] == MASK
    assert TOKEN not in result.text and "server-key-42" not in result.text
