"""Event models: one discriminated union over `kind`, OpenHands agent-server field names.

An event's JSON is `kind`, `id`, `seq`, `timestamp`, `source`, then its kind-specific fields.
The store keeps the envelope in columns and the kind-specific fields in `payload`.
"""

import uuid
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import orjson
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
MAX_EXTRA_FIELDS = 16
MAX_EXTRA_CHARS = 1024


class TextContent(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text"] = "text"
    text: str


class ImageContent(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["image"] = "image"
    image_urls: list[str]


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

    def text_parts(self) -> list[str]:
        return _texts(self.llm_message.content) + _texts(self.extended_content)


class SkillUse(BaseModel):
    """A skill rendered into a system prompt, at the version that was rendered."""

    name: str
    version: int


class SystemPromptEvent(EventBase):
    kind: Literal["SystemPromptEvent"] = "SystemPromptEvent"
    source: Source = "agent"
    system_prompt: TextContent
    tools: list[dict[str, Any]] = Field(default_factory=list)
    skills: list[SkillUse] = Field(
        default_factory=list, description="The skills in system_prompt, with their versions"
    )

    def text_parts(self) -> list[str]:
        return [self.system_prompt.text]


class ActionEvent(EventBase):
    kind: Literal["ActionEvent"] = "ActionEvent"
    source: Source = "agent"
    thought: list[TextContent] = Field(default_factory=list)
    tool_name: str
    tool_call_id: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    action: dict[str, Any] | None = None
    llm_response_id: str | None = None

    def text_parts(self) -> list[str]:
        return [*_texts(self.thought), self.tool_name, orjson.dumps(self.arguments).decode()]


class ObservationEvent(EventBase):
    kind: Literal["ObservationEvent"] = "ObservationEvent"
    source: Source = "environment"
    tool_name: str
    tool_call_id: str
    action_id: str
    content: list[Content] = Field(default_factory=list)
    observation: dict[str, Any] | None = None

    def text_parts(self) -> list[str]:
        return _texts(self.content)


class AgentErrorEvent(EventBase):
    kind: Literal["AgentErrorEvent"] = "AgentErrorEvent"
    source: Source = "agent"
    error: str
    tool_name: str | None = None
    tool_call_id: str | None = None

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
    reason: str | None = None


AnyEvent = Annotated[
    MessageEvent
    | SystemPromptEvent
    | ActionEvent
    | ObservationEvent
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
        AgentErrorEvent,
        ConversationErrorEvent,
        ConversationStateUpdateEvent,
        PauseEvent,
        InterruptEvent,
    )
)


# Extra fields of a user's content part (such as OpenHands' `cache_prompt`) are kept, but
# only as a few plain values: nothing nested or large is stored through them.
ExtraValue = (
    Annotated[str, StringConstraints(max_length=MAX_EXTRA_CHARS)] | int | float | bool | None
)
_EXTRAS_HELP = (
    f"Other fields are kept as given: at most {MAX_EXTRA_FIELDS}, each a string of at most"
    f" {MAX_EXTRA_CHARS} characters, a number, a boolean or null."
)


class _BoundedExtras(BaseModel):
    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, ExtraValue] = Field(init=False)

    @model_validator(mode="after")
    def _few_extras(self) -> "_BoundedExtras":
        if len(self.__pydantic_extra__ or {}) > MAX_EXTRA_FIELDS:
            raise ValueError(f"at most {MAX_EXTRA_FIELDS} extra fields are allowed")
        return self


class UserTextContent(_BoundedExtras, TextContent):
    __doc__ = f"A text part of a user message. {_EXTRAS_HELP}"
    model_config = ConfigDict(json_schema_extra={"maxProperties": MAX_EXTRA_FIELDS + 2})

    text: str = Field(
        max_length=MAX_TEXT_CHARS,
        description=f"At most {MAX_TEXT_CHARS} characters; the body filter of event search"
        f" matches within the message's first {SEARCH_TEXT_CHARS} characters.",
    )


class UserImageContent(_BoundedExtras, ImageContent):
    __doc__ = f"An image part of a user message. {_EXTRAS_HELP}"
    model_config = ConfigDict(json_schema_extra={"maxProperties": MAX_EXTRA_FIELDS + 2})

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
    run: bool = False


class EventPage(BaseModel):
    items: list[AnyEvent]
    next_page_id: str | None = None
