"""Event models: one discriminated union over `kind`, OpenHands agent-server field names.

An event's JSON is `kind`, `id`, `seq`, `timestamp`, `source`, then its kind-specific fields.
The store keeps the envelope in columns and the kind-specific fields in `payload`.
"""

import uuid
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from app.validators import reject_unstorable

Source = Literal["user", "agent", "environment"]
ENVELOPE_FIELDS = frozenset({"kind", "id", "seq", "timestamp", "source"})


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
        return "\n".join(part for part in self.text_parts() if part).casefold()

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


class UserMessageCreate(BaseModel):
    """Body of POST /conversations/{id}/events."""

    _storable = model_validator(mode="before")(reject_unstorable)

    role: Literal["user"] = "user"
    content: list[Content] = Field(min_length=1)
    run: bool = False


class EventPage(BaseModel):
    items: list[AnyEvent]
    next_page_id: str | None = None
