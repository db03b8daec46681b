"""The SDK validator itself: it must be able to say no, or the shape test proves nothing."""

from typing import Any

from tests.openhands.sdk import SdkEvents

ENVELOPE = {"id": "e1", "timestamp": "2026-01-01T00:00:00.000000Z"}
ACTION = {
    **ENVELOPE,
    "kind": "ActionEvent",
    "source": "agent",
    "thought": [],
    "tool_name": "terminal",
    "tool_call_id": "call_1",
    "tool_call": {
        "id": "call_1",
        "name": "terminal",
        "arguments": '{"command": "echo hi"}',
        "origin": "completion",
    },
    "llm_response_id": "resp_1",
    "action": {"kind": "TerminalAction", "command": "echo hi"},
}
STATE = {**ENVELOPE, "kind": "ConversationStateUpdateEvent", "source": "environment"}


async def test_the_sdk_accepts_its_shapes_and_refuses_others(sdk_events: SdkEvents) -> None:
    """Our shapes as they were (a `seq` key, ActionEvent.arguments, an InterruptEvent reason,
    a dotted kind, a null timestamp, an execution status the SDK has no value for) are
    refused, each for its own reason."""
    good: list[dict[str, Any]] = [
        ACTION,
        {**ENVELOPE, "kind": "PauseEvent", "source": "user"},
        {**ENVELOPE, "kind": "MessageEvent", "source": "user", "llm_message": {"role": "user"}},
        {**STATE, "key": "execution_status", "value": "running"},
        {**STATE, "key": "full_state", "value": {"execution_status": "finished"}},
    ]
    bad: list[Any] = [
        {**ACTION, "seq": 1},
        {**ACTION, "arguments": {"command": "echo hi"}},
        {**ENVELOPE, "kind": "InterruptEvent", "source": "user", "reason": "stop"},
        {**ENVELOPE, "kind": "openhands.sdk.event.PauseEvent", "source": "user"},
        {**ENVELOPE, "kind": "PauseEvent", "source": "user", "timestamp": None},
        {**ACTION, "action": {"kind": "ThinkAction", "command": "x"}},
        {**STATE, "key": "execution_status", "value": "queued"},
        {**STATE, "key": "full_state", "value": {"execution_status": "completed"}},
        "not an object",
    ]
    assert await sdk_events(good) == []
    verdicts = await sdk_events.check(good)
    assert [v.kind for v in verdicts] == [event["kind"] for event in good]
    assert verdicts[0].nested == ["TerminalAction"]
    errors = await sdk_events(bad)
    assert len(errors) == len(bad), errors
    reasons = ["seq", "arguments", "reason", "Unknown kind", "timestamp", "thought", "'queued'"]
    reasons += ["'completed'", "valid dictionary"]
    for error, reason in zip(errors, reasons, strict=True):
        assert reason in error, (reason, error)
