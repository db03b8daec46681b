"""Conversation API schemas: XCreate / XUpdate / XRead."""

import enum
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    TypeAdapter,
    WrapValidator,
    field_validator,
    model_validator,
)

from app.agent.base import DEFAULT_AGENT_KIND, agent_kinds
from app.agent.tools import ALL_TOOLS
from app.conversations.sdk_schemas import (
    OPTION_FIELDS,
    SdkAgentSpec,
    SdkCreateOptions,
    http_url,
    with_plain_credentials,
)
from app.events.schemas import UserMessageCreate
from app.models.conversation import NEVER_CONFIRM, Conversation, ExecutionStatus
from app.skills.schemas import SkillName
from app.validators import reject_unstorable
from app.vault import specs

TagKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
TagValue = Annotated[str, StringConstraints(max_length=256)]
Tags = Annotated[dict[TagKey, TagValue], Field(max_length=50)]
Title = Annotated[str, StringConstraints(max_length=512)]


Secret = Annotated[SecretStr, StringConstraints(min_length=1, max_length=4096)]
HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")]


class LLMConfig(BaseModel):
    """The conversation's LLM: a litellm model, where to reach it, and model parameters.

    Only the fields below are accepted (any other is 422). Credentials (`api_key`,
    `extra_headers` values, the AWS keys) are write-only: stored encrypted, shown masked.
    The server's own AGENT_SERVER_LLM_BASE_URL and AGENT_SERVER_LLM_API_KEY go together: a
    conversation that sets its own `base_url` must bring its own `api_key`, and the server's
    key is never sent to a URL a conversation chose."""

    model_config = ConfigDict(extra="forbid")
    model: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = Field(
        default=None, description="litellm model name; default AGENT_SERVER_LLM_MODEL"
    )
    base_url: Annotated[str, StringConstraints(max_length=2048)] | None = Field(
        default=None,
        description="An http(s) endpoint; needs `api_key` unless it is the server's own"
        " (AGENT_SERVER_LLM_ALLOWED_BASE_URLS may restrict it)",
    )
    api_key: Secret | None = None
    api_version: Annotated[str, StringConstraints(max_length=64)] | None = None
    extra_headers: Annotated[dict[HeaderName, Secret], Field(max_length=16)] | None = Field(
        default=None, description="HTTP headers for the provider; every value is a secret"
    )
    aws_access_key_id: Secret | None = None
    aws_secret_access_key: Secret | None = None
    aws_session_token: Secret | None = None
    aws_region_name: Annotated[str, StringConstraints(max_length=64)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=1, le=1000)] | None = None
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    seed: Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | None = None
    stop: (
        Annotated[str, StringConstraints(max_length=256)]
        | Annotated[list[Annotated[str, StringConstraints(max_length=256)]], Field(max_length=8)]
        | None
    ) = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    timeout: Annotated[float, Field(gt=0, le=3600)] | None = Field(
        default=None, description="Seconds per LLM call; default AGENT_SERVER_LLM_TIMEOUT_SECONDS"
    )

    _http_url = field_validator("base_url")(http_url)

    def to_storage(self) -> dict[str, Any]:
        """Every field that is set, credentials in plain text (for vault.specs.conceal)."""
        return with_plain_credentials(self, self.model_dump(mode="json", exclude_none=True))


class AgentSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    kind: str = Field(default=DEFAULT_AGENT_KIND, description="The agent class that runs it")
    llm: LLMConfig
    system_prompt: str | None = None
    tools: list[str] | None = Field(
        default=None,
        description="Tool names (default: all enabled; finish and think always):"
        f" {sorted(ALL_TOOLS)}",
    )
    skills: Annotated[list[SkillName], Field(max_length=100)] | None = Field(
        default=None,
        description="Skill names the runs may use (those of them that are enabled when a run"
        " starts); default: every enabled skill. Unknown names are 422.",
    )

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in agent_kinds():
            raise ValueError(f"unknown agent kind {kind!r}; known: {agent_kinds()}")
        return kind

    @field_validator("tools")
    @classmethod
    def _known_tools(cls, tools: list[str] | None) -> list[str] | None:
        unknown = sorted(set(tools or []) - set(ALL_TOOLS))
        if unknown:
            raise ValueError(f"unknown tools {unknown}; known: {sorted(ALL_TOOLS)}")
        return tools

    def to_storage(self) -> dict[str, Any]:
        """The spec with its credentials in plain text (vault.specs.conceal splits them)."""
        data = self.model_dump(mode="json", exclude={"llm"})
        data["llm"] = self.llm.to_storage()
        return data


_OUR_AGENT = TypeAdapter(AgentSpec)
_SDK_AGENT = TypeAdapter(SdkAgentSpec)


def _agent_by_kind(value: Any, _handler: Any) -> AgentSpec | SdkAgentSpec:
    """Kind `Agent` is the OpenHands SDK's spec, any other ours; a 422 names the fields
    under `agent` itself (no union branch in its `loc`)."""
    if isinstance(value, dict) and value.get("kind") == "Agent":
        return _SDK_AGENT.validate_python(value)
    return _OUR_AGENT.validate_python(value)


AnyAgentSpec = Annotated[AgentSpec | SdkAgentSpec, WrapValidator(_agent_by_kind)]


class ConversationCreate(SdkCreateOptions):
    """Our own fields, and the OpenHands SDK's creation settings (sdk_schemas.py). Any other
    field is 422."""

    model_config = ConfigDict(extra="forbid")
    _storable = model_validator(mode="before")(reject_unstorable)

    id: uuid.UUID | None = Field(
        default=None, validation_alias=AliasChoices("id", "conversation_id")
    )
    title: Title | None = None
    tags: Tags = Field(default_factory=dict)
    agent: AnyAgentSpec
    max_iterations: Annotated[int, Field(ge=1, le=100_000)] = 500
    initial_message: UserMessageCreate | None = None

    def options(self) -> dict[str, Any]:
        """The OpenHands settings kept in `conversations.options`."""
        return self.model_dump(mode="json", include=set(OPTION_FIELDS), exclude_none=True)


class ConversationUpdate(BaseModel):
    """Fields to change; absent fields are left as they are (any other field is 422)."""

    model_config = ConfigDict(extra="forbid")
    _storable = model_validator(mode="before")(reject_unstorable)

    title: Title | None = None
    tags: Tags | None = None

    @field_validator("tags")
    @classmethod
    def _tags_not_null(cls, value: dict[str, str] | None) -> dict[str, str]:
        return {} if value is None else value


class ConversationRead(BaseModel):
    """A conversation as GET shows it: our fields and the OpenHands SDK's ConversationInfo
    (`confirmation_policy`, `security_analyzer`, `workspace`, the creation settings given)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str | None
    tags: dict[str, str]
    agent: dict[str, Any]
    execution_status: ExecutionStatus
    max_iterations: int
    stats: dict[str, Any]
    confirmation_policy: dict[str, Any] = Field(default_factory=lambda: dict(NEVER_CONFIRM))
    security_analyzer: dict[str, Any] | None = None
    workspace: dict[str, Any] | None = Field(
        default=None, description="`{kind: LocalWorkspace, working_dir}` as created"
    )
    persistence_dir: str | None = Field(
        default=None,
        description="Names the conversation's rows (there is no directory: the state is SQL)",
    )
    stuck_detection: bool | None = None
    stuck_detection_thresholds: dict[str, Any] | None = None
    tool_module_qualnames: dict[str, str] = Field(default_factory=dict)
    client_tools: list[dict[str, Any]] = Field(default_factory=list)
    agent_definitions: list[dict[str, Any]] = Field(default_factory=list)
    plugins: list[dict[str, Any]] | None = None
    hook_config: dict[str, Any] | None = None
    user_id: str | None = None
    last_seq: int
    version: int
    created_at: datetime
    updated_at: datetime

    @model_validator(mode="before")
    @classmethod
    def _from_row(cls, value: Any) -> Any:
        """A stored conversation: its columns, its `options` spread as top-level fields."""
        if isinstance(value, dict):
            return value
        data = {name: getattr(value, name) for name in _ROW_FIELDS}
        options = getattr(value, "options", None) or {}
        data.update((k, v) for k, v in options.items() if k in OPTION_FIELDS)
        data["persistence_dir"] = f"agent-server:conversations/{value.id}"
        return data

    @field_validator("agent")
    @classmethod
    def _mask_secrets(cls, agent: dict[str, Any]) -> dict[str, Any]:
        return specs.mask(agent)  # stored specs hold masks already; this keeps it so


# The fields read from the stored row's columns (never the deferred, sealed `secrets`).
_ROW_FIELDS = tuple(
    name for name in ConversationRead.model_fields if name in Conversation.__table__.c
)


class ConversationSortOrder(enum.StrEnum):
    CREATED_AT = "CREATED_AT"
    UPDATED_AT = "UPDATED_AT"
    CREATED_AT_DESC = "CREATED_AT_DESC"
    UPDATED_AT_DESC = "UPDATED_AT_DESC"


class ConversationPage(BaseModel):
    items: list[ConversationRead]
    next_page_id: str | None = None
