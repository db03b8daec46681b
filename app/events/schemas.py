"""Event models: one discriminated union over `kind`, in the OpenHands SDK's shapes.

An event's JSON is `kind`, `id`, `timestamp`, `source`, then its kind-specific fields, and
validates with the SDK's own `Event.model_validate` (which refuses unknown fields). The
event's `seq` travels beside it (the SSE `id:`, the page cursor), or in it on request
(`with_seq=true`). The store keeps the envelope in columns and the kind-specific fields in
`payload`, as the API shows them.
"""

import uuid
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    model_validator,
)

from app.validators import MAX_JSON_DEPTH, MAX_JSON_VALUES, reject_unstorable

Source = Literal["user", "agent", "environment"]
ENVELOPE_FIELDS = frozenset({"kind", "id", "seq", "timestamp", "source"})

# What the body filter searches of an event: its text up to this many characters.
SEARCH_TEXT_CHARS = 64 * 1024

# Bounds on a user message (POST .../events, a conversation's initial_message, a WebSocket
# frame). A text part holds a quarter of the default 4 MiB body limit, so a message of the
# largest accepted body fits in a few parts.
MAX_PARTS = 100
MAX_TEXT_CHARS = 1024 * 1024
MAX_IMAGE_URLS = 20
MAX_URL_CHARS = 1024 * 1024  # data: URLs carry the image itself


# OpenHands' prompt-caching hint on a content part; stored only when set.
CachePrompt = Annotated[bool, Field(exclude_if=lambda value: value is False)]


class TextContent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"] = "text"
    text: str
    cache_prompt: CachePrompt = False


class ImageContent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["image"] = "image"
    image_urls: list[str]
    cache_prompt: CachePrompt = False


def _content_type(value: Any) -> str | None:
    if isinstance(value, dict):
        # Without `type`, the fields tell (both models default it): image_urls means image.
        default = "image" if "image_urls" in value and "text" not in value else "text"
        kind = value.get("type", default)
        return kind if isinstance(kind, str) else None
    return getattr(value, "type", None)


Content = Annotated[
    Annotated[TextContent, Tag("text")] | Annotated[ImageContent, Tag("image")],
    Discriminator(_content_type),
]


def _texts(content: list[TextContent] | list[Content]) -> list[str]:
    return [part.text for part in content if isinstance(part, TextContent)]


class Message(BaseModel):
    """An LLM message; extra fields (tool_calls, name, ...) are kept as given."""

    model_config = ConfigDict(extra="allow")
    role: Literal["user", "system", "assistant", "tool"]
    content: list[Content] = Field(default_factory=list)


class EventBase(BaseModel):
    model_config = ConfigDict(extra="allow")
    default_source: ClassVar[Source] = "environment"

    kind: str
    id: str = Field(default_factory=lambda: str(uuid.uuid4()), max_length=64)
    seq: int | None = None
    timestamp: datetime | None = None
    source: Source = "environment"

    def text_parts(self) -> list[str]:
        """The event's human-readable text, for the body filter."""
        return []

    def search_text(self) -> str:
        """What the body filter matches: the text parts joined by newlines, case-folded, cut
        to their first SEARCH_TEXT_CHARS characters. A body filter finds text only within
        that prefix; the event itself is stored and returned whole."""
        pieces: list[str] = []
        size = 0
        for part in self.text_parts():
            if not part:
                continue
            piece = part[: SEARCH_TEXT_CHARS - size]
            pieces.append(piece)
            size += len(piece) + 1
            if size >= SEARCH_TEXT_CHARS:
                break
        return "\n".join(pieces).casefold()[:SEARCH_TEXT_CHARS]

    def payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude=set(ENVELOPE_FIELDS))


class MessageEvent(EventBase):
    kind: Literal["MessageEvent"] = "MessageEvent"
    source: Source = "user"
    llm_message: Message
    activated_skills: list[str] = Field(default_factory=list)
    extended_content: list[TextContent] = Field(default_factory=list)
    sender: str | None = Field(default=None, exclude_if=lambda value: value is None)

    def text_parts(self) -> list[str]:
        return _texts(self.llm_message.content) + _texts(self.extended_content)


class SystemPromptEvent(EventBase):
    """The system prompt (with the skills rendered in, each with its version) and the tools,
    as the SDK's tool definitions (`kind`, `title`, `action_type`, ...)."""

    kind: Literal["SystemPromptEvent"] = "SystemPromptEvent"
    source: Source = "agent"
    system_prompt: TextContent
    tools: list[dict[str, Any]] = Field(default_factory=list)

    def text_parts(self) -> list[str]:
        return [self.system_prompt.text]


class ToolCall(BaseModel):
    """The LLM's tool call as it asked for it: `arguments` is the raw JSON text."""

    id: str
    name: str
    arguments: str
    origin: Literal["completion", "responses"] = "completion"


class ActionEvent(EventBase):
    """A tool call. `action` is the call's arguments as the tool's SDK action (`kind`:
    `FinishAction`, `TerminalAction`, ...), null when they do not fit it."""

    kind: Literal["ActionEvent"] = "ActionEvent"
    source: Source = "agent"
    thought: list[TextContent] = Field(default_factory=list)
    tool_name: str
    tool_call_id: str
    tool_call: ToolCall
    action: dict[str, Any] | None = None
    llm_response_id: str
    security_risk: Literal["UNKNOWN", "LOW", "MEDIUM", "HIGH"] = "UNKNOWN"

    def text_parts(self) -> list[str]:
        return [*_texts(self.thought), self.tool_name, self.tool_call.arguments]


class ObservationEvent(EventBase):
    """A tool's result: `observation` is the tool's SDK observation (`kind`, `content`,
    `is_error`, and the tool's own fields)."""

    kind: Literal["ObservationEvent"] = "ObservationEvent"
    source: Source = "environment"
    tool_name: str
    tool_call_id: str
    action_id: str
    observation: dict[str, Any]

    def text_parts(self) -> list[str]:
        content = self.observation.get("content")
        if not isinstance(content, list):
            return []
        return [str(p.get("text", "")) for p in content if isinstance(p, dict)]


class UserRejectObservation(EventBase):
    """An action the user rejected in confirmation mode (it never ran)."""

    kind: Literal["UserRejectObservation"] = "UserRejectObservation"
    source: Source = "environment"
    tool_name: str
    tool_call_id: str
    action_id: str
    rejection_reason: str = "User rejected the action"
    rejection_source: Literal["user", "hook"] = "user"

    def text_parts(self) -> list[str]:
        return [self.rejection_reason]


class Condensation(EventBase):
    """The agent's context condensed: the LLM no longer sees `forgotten_event_ids`; it sees
    `summary` instead, after the first `summary_offset` events it still sees (the events
    themselves stay stored and searchable)."""

    kind: Literal["Condensation"] = "Condensation"
    source: Source = "environment"
    forgotten_event_ids: list[str]
    summary: str | None = None
    summary_offset: int | None = None
    llm_response_id: str

    def text_parts(self) -> list[str]:
        return [self.summary] if self.summary else []


class AgentErrorEvent(EventBase):
    kind: Literal["AgentErrorEvent"] = "AgentErrorEvent"
    source: Source = "agent"
    error: str
    tool_name: str = ""
    tool_call_id: str = ""

    def text_parts(self) -> list[str]:
        return [self.error]


class ConversationErrorEvent(EventBase):
    kind: Literal["ConversationErrorEvent"] = "ConversationErrorEvent"
    source: Source = "environment"
    code: str
    detail: str

    def text_parts(self) -> list[str]:
        return [self.code, self.detail]


class ConversationStateUpdateEvent(EventBase):
    kind: Literal["ConversationStateUpdateEvent"] = "ConversationStateUpdateEvent"
    source: Source = "environment"
    key: str
    value: Any = None


class PauseEvent(EventBase):
    kind: Literal["PauseEvent"] = "PauseEvent"
    source: Source = "user"


class InterruptEvent(EventBase):
    kind: Literal["InterruptEvent"] = "InterruptEvent"
    source: Source = "user"


AnyEvent = Annotated[
    MessageEvent
    | SystemPromptEvent
    | ActionEvent
    | ObservationEvent
    | UserRejectObservation
    | Condensation
    | AgentErrorEvent
    | ConversationErrorEvent
    | ConversationStateUpdateEvent
    | PauseEvent
    | InterruptEvent,
    Field(discriminator="kind"),
]

EVENT_KINDS: frozenset[str] = frozenset(
    cls.model_fields["kind"].default
    for cls in (
        MessageEvent,
        SystemPromptEvent,
        ActionEvent,
        ObservationEvent,
        UserRejectObservation,
        Condensation,
        AgentErrorEvent,
        ConversationErrorEvent,
        ConversationStateUpdateEvent,
        PauseEvent,
        InterruptEvent,
    )
)


class UserTextContent(TextContent):
    """A text part of a user message (any other field is 422, as in the OpenHands SDK)."""

    text: str = Field(
        max_length=MAX_TEXT_CHARS,
        description=f"At most {MAX_TEXT_CHARS} characters; the body filter of event search"
        f" matches within the message's first {SEARCH_TEXT_CHARS} characters.",
    )


class UserImageContent(ImageContent):
    """An image part of a user message (any other field is 422, as in the OpenHands SDK)."""

    image_urls: list[Annotated[str, StringConstraints(max_length=MAX_URL_CHARS)]] = Field(
        max_length=MAX_IMAGE_URLS,
        description=f"At most {MAX_IMAGE_URLS} http(s) or data: URLs of at most"
        f" {MAX_URL_CHARS} characters each.",
    )


UserContent = Annotated[
    Annotated[UserTextContent, Tag("text")] | Annotated[UserImageContent, Tag("image")],
    Discriminator(_content_type),
]


class UserMessageCreate(BaseModel):
    __doc__ = (
        "Body of POST /conversations/{id}/events. Like every request body it may nest at most"
        f" {MAX_JSON_DEPTH} levels of arrays and objects and hold at most {MAX_JSON_VALUES}"
        " values and keys (422 beyond)."
    )

    _storable = model_validator(mode="before")(reject_unstorable)

    role: Literal["user"] = "user"
    content: list[UserContent] = Field(
        min_length=1, max_length=MAX_PARTS, description=f"1 to {MAX_PARTS} parts"
    )
    sender: Annotated[str, StringConstraints(max_length=256)] | None = Field(
        default=None, description="Who sent it, when not the conversation's user (OpenHands)"
    )
    id: Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,64}$")] | None = Field(
        default=None,
        description="The event's id, chosen by the client (1-64 visible ASCII characters;"
        " a UUID is best). A retry with an id the conversation already has appends nothing"
        " and answers that event. Absent: the server makes one.",
    )
    run: bool = False


class EventPage(BaseModel):
    items: list[AnyEvent]
    next_page_id: str | None = None
