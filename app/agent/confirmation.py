"""Confirmation mode (OpenHands): which policies make actions wait, and which stored actions
are waiting.

A run under such a policy records the LLM's actions and ends `waiting_for_confirmation`
without running them. Running the conversation again accepts them: the next run runs them
before it calls the LLM. Rejecting them records a UserRejectObservation for each
(conversations/confirmation.py). Every action's risk is UNKNOWN here (no analyzer rates it),
so `ConfirmRisky` confirms all of them unless its `confirm_unknown` is false.
"""

from typing import TYPE_CHECKING, Any

from app.agent.context import ANSWER_KINDS

if TYPE_CHECKING:
    from app.agent.base import StepContext

WAITING = "waiting_for_confirmation"
# Events that may follow the move to waiting without ending the wait: state updates, and the
# system prompt a run records when the agent's prompt changed (the accepting run may).
QUIET_KINDS = frozenset({"ConversationStateUpdateEvent", "SystemPromptEvent"})
NEVER_CONFIRMED = frozenset({"finish", "think"})


def confirms_actions(policy: dict[str, Any] | None) -> bool:
    kind = (policy or {}).get("kind")
    if kind == "AlwaysConfirm":
        return True
    if kind == "ConfirmRisky":
        return bool((policy or {}).get("confirm_unknown", True))
    return False


def needs_confirmation(ctx: "StepContext", actions: list[dict[str, Any]]) -> bool:
    """Whether a step's recorded actions wait for the user; as in the SDK, a lone finish or
    think never does."""
    if not ctx.confirm_actions or not actions:
        return False
    return not (len(actions) == 1 and actions[0]["tool_call"]["name"] in NEVER_CONFIRMED)


def waiting_actions(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The actions the conversation waits on: the unanswered calls of the last LLM response
    before its last move to `waiting_for_confirmation`, when nothing but state updates came
    after that move (a later user message or run moved on). Empty when it is not waiting.
    An older unanswered action (cut off by a lost worker, say) is never among them."""
    last_wait = None
    for index, event in enumerate(history):
        if event["kind"] not in QUIET_KINDS:
            last_wait = None
        elif event.get("key") == "execution_status" and event.get("value") == WAITING:
            last_wait = index
    if last_wait is None:
        return []
    before = history[:last_wait]
    actions = [e for e in before if e["kind"] == "ActionEvent"]
    if not actions:
        return []
    response = actions[-1].get("llm_response_id")
    answered = {e.get("tool_call_id") for e in before if e["kind"] in ANSWER_KINDS}
    return [
        e
        for e in actions
        if e.get("llm_response_id") == response and e.get("tool_call_id") not in answered
    ]
