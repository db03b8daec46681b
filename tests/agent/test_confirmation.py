"""Which stored actions a conversation waits on (confirmation mode), from its history alone.

The first test was checked against the version that took every unanswered action before the
wait (it returned the long-cut-off one too)."""

from typing import Any

from app.agent.confirmation import confirms_actions, waiting_actions


def _action(call_id: str, response: str) -> dict[str, Any]:
    return {"kind": "ActionEvent", "tool_call_id": call_id, "llm_response_id": response}


def _status(value: str) -> dict[str, Any]:
    return {"kind": "ConversationStateUpdateEvent", "key": "execution_status", "value": value}


WAIT = _status("waiting_for_confirmation")
ANSWER = {"kind": "ObservationEvent", "tool_call_id": "a1"}
MESSAGE = {"kind": "MessageEvent"}


def test_the_calls_of_the_last_response_before_the_wait() -> None:
    old = _action("old", "r0")  # cut off long ago (a lost worker): never run on an accept
    history = [old, MESSAGE, _action("a1", "r1"), ANSWER, _action("b1", "r2"), _action("b2", "r2")]
    waiting = waiting_actions([*history, WAIT, _status("running"), {"kind": "SystemPromptEvent"}])
    assert [a["tool_call_id"] for a in waiting] == ["b1", "b2"]


def test_nothing_waits_once_the_conversation_moved_on() -> None:
    history = [MESSAGE, _action("b1", "r2"), WAIT]
    assert waiting_actions(history)
    assert waiting_actions([*history, MESSAGE]) == []
    rejected = {"kind": "UserRejectObservation", "tool_call_id": "b1"}
    assert waiting_actions([*history, rejected]) == []
    assert waiting_actions([MESSAGE, _action("b1", "r2")]) == []  # never waited


def test_which_policies_confirm() -> None:
    assert confirms_actions({"kind": "AlwaysConfirm"})
    assert confirms_actions({"kind": "ConfirmRisky"})  # every risk is UNKNOWN here
    assert not confirms_actions({"kind": "ConfirmRisky", "confirm_unknown": False})
    assert not confirms_actions({"kind": "NeverConfirm"}) and not confirms_actions(None)
