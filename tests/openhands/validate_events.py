"""Validate event JSON with the OpenHands SDK's own models; run by the SDK venv's interpreter.

    $OPENHANDS_SDK_PYTHON -I tests/openhands/validate_events.py

Reads one JSON value a line on stdin and answers each with one JSON line on stdout, in order:
{"kind": the class `Event.model_validate` resolved it to (null if it refused it),
"nested": the kinds of its `action` / `observation` / `tools` as resolved, "error": null or
why the SDK refused it, or why the client would fail on it (an execution status it does not
know)}. This is what an unchanged SDK client does with every item of `events/search` and
every WebSocket frame. It imports only the SDK (never this project):
`openhands.tools` too, which registers the kinds of the tools a client knows (TerminalTool,
FileEditorTool, TaskTrackerTool and their actions and observations).
"""

import json
import sys
from typing import Any

MAX_PROBLEMS = 8  # per event; the rest are counted
MAX_MESSAGE = 200  # characters of each (the SDK's "unknown kind" lists every kind it knows)


def _problems(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return f"{type(exc).__name__}: {exc}"
    found = [
        f"{'.'.join(map(str, e['loc'])) or '(event)'}: {e['msg'][:MAX_MESSAGE]}" for e in errors()
    ]
    more = len(found) - MAX_PROBLEMS
    return "; ".join(found[:MAX_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")


def _nested(event: Any) -> list[str]:
    kinds = []
    for name in ("action", "observation"):
        value = getattr(event, name, None)
        if value is not None:
            kinds.append(type(value).__name__)
    kinds += [type(tool).__name__ for tool in getattr(event, "tools", None) or []]
    return kinds


def _status_problem(event: Any) -> str | None:
    """An execution status the SDK does not know: the client takes the event, then its
    `state.execution_status` raises ValueError (RemoteState reads the value as the enum)."""
    from openhands.sdk import ConversationExecutionStatus

    if type(event).__name__ != "ConversationStateUpdateEvent":
        return None
    if event.key == "execution_status":
        where, status = "value", event.value
    elif event.key == "full_state" and isinstance(event.value, dict):
        where, status = "value.execution_status", event.value.get("execution_status")
    else:
        return None
    try:
        ConversationExecutionStatus(status)
    except ValueError:
        known = [member.value for member in ConversationExecutionStatus]
        return f"{where}: {status!r} is not a ConversationExecutionStatus ({', '.join(known)})"
    return None


def main() -> None:
    answers = sys.stdout
    sys.stdout = sys.stderr  # whatever the SDK prints must not mix with the answers
    import openhands.sdk
    import openhands.tools  # registers the kinds of the tools, their actions and observations

    validate = openhands.sdk.event.Event.model_validate
    for line in sys.stdin:
        answer: dict[str, Any] = {"kind": None, "nested": [], "error": None}
        try:
            event = validate(json.loads(line))
        except Exception as exc:  # every refusal is an answer, never the end of the run
            answer["error"] = _problems(exc)
        else:
            answer["kind"] = type(event).__name__
            answer["nested"] = _nested(event)
            answer["error"] = _status_problem(event)
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
