"""The LLM's context from stored events (OpenAI chat messages), and what condensing it
forgets.

The latest system prompt leads (it is recorded when the first run starts, after the first
user message). A `Condensation` event makes the LLM forget the events it names and see its
summary instead, after the first `summary_offset` events it still sees; the events stay
stored and searchable. Only the latest condensation's summary is shown: it summarises the
earlier ones.
"""

from typing import Any

# Kinds that become LLM messages (an AgentErrorEvent only when it answers a tool call).
LLM_KINDS = frozenset(
    {"MessageEvent", "ActionEvent", "ObservationEvent", "AgentErrorEvent", "UserRejectObservation"}
)
ANSWER_KINDS = frozenset({"ObservationEvent", "AgentErrorEvent", "UserRejectObservation"})


class OpenActions(dict[str, str]):
    """tool_call_id -> tool_name of the actions not answered yet, as events go by in seq
    order (the runner's, and the sweeper's for a run whose worker was lost)."""

    def see(self, event: dict[str, Any]) -> None:
        call_id = event.get("tool_call_id")
        if not call_id:
            return
        if event["kind"] == "ActionEvent":
            self[call_id] = event.get("tool_name") or ""
        elif event["kind"] in ANSWER_KINDS:
            self.pop(call_id, None)


SUMMARY_PREFIX = "Summary of the earlier part of this conversation (condensed):\n"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def event_to_messages(event: dict[str, Any], messages: list[dict[str, Any]]) -> None:
    """Extend the LLM context with one stored event (OpenAI chat format)."""
    kind = event["kind"]
    if kind == "SystemPromptEvent":
        messages.append({"role": "system", "content": event["system_prompt"]["text"]})
    elif kind == "MessageEvent":
        message = event["llm_message"]
        messages.append({"role": message["role"], "content": _text(message.get("content"))})
    elif kind == "ActionEvent":
        tool_call = event["tool_call"]
        call = {
            "id": tool_call["id"],
            "type": "function",
            "function": {"name": tool_call["name"], "arguments": tool_call["arguments"]},
        }
        last = messages[-1] if messages else None
        same_response = (
            last is not None
            and last.get("role") == "assistant"
            and last.get("_response_id") == event.get("llm_response_id")
        )
        if same_response and last is not None:
            last["tool_calls"].append(call)
        else:
            thought = _text(event.get("thought"))
            messages.append(
                {
                    "role": "assistant",
                    "content": thought or None,
                    "tool_calls": [call],
                    "_response_id": event.get("llm_response_id"),
                }
            )
    elif kind == "ObservationEvent":
        text = _text((event.get("observation") or {}).get("content"))
        messages.append({"role": "tool", "tool_call_id": event["tool_call_id"], "content": text})
    elif kind == "UserRejectObservation":
        text = f"The user rejected this action: {event['rejection_reason']}"
        messages.append({"role": "tool", "tool_call_id": event["tool_call_id"], "content": text})
    elif kind == "AgentErrorEvent" and event.get("tool_call_id"):
        text = event["error"]
        messages.append({"role": "tool", "tool_call_id": event["tool_call_id"], "content": text})


def _visible(history: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The events the LLM sees after the system prompt, and the latest condensation."""
    condensations = [e for e in history if e["kind"] == "Condensation"]
    forgotten: set[str] = set()
    for condensation in condensations:
        forgotten.update(condensation.get("forgotten_event_ids") or [])
    visible = [e for e in history if e["kind"] in LLM_KINDS and e["id"] not in forgotten]
    return visible, (condensations[-1] if condensations else None)


def context_messages(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The LLM's messages for a conversation's stored events.

    Chat APIs want every tool call answered right after the assistant message that makes it:
    so an action without an answer (waiting for confirmation, cut off, forgotten apart from
    its answer) is left out with any answer whose call is not there, and each call's answer
    follows its LLM response even when a user message was recorded in between."""
    messages: list[dict[str, Any]] = []
    for prompt in [e for e in history if e["kind"] == "SystemPromptEvent"][-1:]:
        event_to_messages(prompt, messages)
    visible, condensation = _visible(history)
    answers = {
        e["tool_call_id"]: e for e in visible if e["kind"] in ANSWER_KINDS and e.get("tool_call_id")
    }
    calls = {e.get("tool_call_id") for e in visible if e["kind"] == "ActionEvent"}
    visible = [
        e
        for e in visible
        if not (e["kind"] == "ActionEvent" and e.get("tool_call_id") not in answers)
        and not (e["kind"] in ANSWER_KINDS and e.get("tool_call_id") not in calls)
    ]
    summary = (condensation or {}).get("summary")
    offset = (condensation or {}).get("summary_offset") or 0
    answered: set[str] = set()
    for index, event in enumerate(visible):
        if summary and index == offset:
            messages.append({"role": "user", "content": SUMMARY_PREFIX + summary})
        if event["kind"] in ANSWER_KINDS:
            if event.get("tool_call_id") not in answered:
                event_to_messages(event, messages)  # an error that answers no call
            continue
        event_to_messages(event, messages)
        if event["kind"] == "ActionEvent" and not _same_response(visible, index + 1, event):
            for call in messages[-1].get("tool_calls") or []:
                answered.add(call["id"])
                event_to_messages(answers[call["id"]], messages)
    if summary and offset >= len(visible):
        messages.append({"role": "user", "content": SUMMARY_PREFIX + summary})
    return messages


def _same_response(visible: list[dict[str, Any]], index: int, action: dict[str, Any]) -> bool:
    """Whether visible[index] is another call of `action`'s LLM response."""
    if index >= len(visible):
        return False
    event = visible[index]
    return event["kind"] == "ActionEvent" and event.get("llm_response_id") == action.get(
        "llm_response_id"
    )


def to_forget(history: list[dict[str, Any]], keep_last: int) -> tuple[list[dict[str, Any]], int]:
    """What a condensation forgets now: every event the LLM still sees except the first user
    message and about the last `keep_last`, never splitting a tool call from its answer or
    the calls of one LLM response; and the summary's offset. Empty when that is nothing."""
    visible, _ = _visible(history)
    start = 1 if visible and visible[0]["kind"] == "MessageEvent" else 0
    cut = max(start, len(visible) - keep_last)
    while cut > start and _inside_a_turn(visible, cut):
        cut -= 1
    return visible[start:cut], start


def _inside_a_turn(visible: list[dict[str, Any]], index: int) -> bool:
    """Whether cutting before visible[index] separates a tool call from its answer or the
    calls of one LLM response."""
    event, before = visible[index], visible[index - 1]
    if event["kind"] in ANSWER_KINDS:
        return True
    return (
        event["kind"] == "ActionEvent"
        and before["kind"] == "ActionEvent"
        and before.get("llm_response_id") == event.get("llm_response_id")
    )


def render(events: list[dict[str, Any]], limit: int) -> str:
    """The events as text for a summariser, each cut to `limit` characters."""
    messages: list[dict[str, Any]] = []
    for event in events:
        event_to_messages(event, messages)
    lines = []
    for message in messages:
        text = _text(message.get("content"))
        calls = [c["function"] for c in message.get("tool_calls") or []]
        if calls:
            text += "".join(f"\n[calls {c['name']}({c['arguments']})]" for c in calls)
        lines.append(f"{message['role']}: {text[:limit]}")
    return "\n\n".join(lines)
