"""Conversation API schemas: XCreate / XUpdate / XRead."""

import enum
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from app.agent.base import DEFAULT_AGENT_KIND, agent_kinds
from app.agent.tools import ALL_TOOLS
from app.events.schemas import UserMessageCreate
from app.models.conversation import ExecutionStatus
from app.skills.schemas import SkillName
from app.validators import reject_unstorable

SECRET_MASK = "**********"
TagKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
TagValue = Annotated[str, StringConstraints(max_length=256)]
Tags = Annotated[dict[TagKey, TagValue], Field(max_length=50)]
Title = Annotated[str, StringConstraints(max_length=512)]


class LLMConfig(BaseModel):
    """LLM settings; extra fields (temperature, ...) are passed through to the client."""

    model_config = ConfigDict(extra="allow")
    model: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = Field(
        default=None, description="litellm model name; default AGENT_SERVER_LLM_MODEL"
    )
    base_url: str | None = None
    api_key: SecretStr | None = None


class AgentSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    kind: str = Field(default=DEFAULT_AGENT_KIND, description="The agent class that runs it")
    llm: LLMConfig
    system_prompt: str | None = None
    tools: list[str] | None = Field(
        default=None, description=f"Tool names (default: all enabled): {sorted(ALL_TOOLS)}"
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
        data = self.model_dump(mode="json")
        if self.llm.api_key is not None:
            data["llm"]["api_key"] = self.llm.api_key.get_secret_value()
        return data


class ConversationCreate(BaseModel):
    _storable = model_validator(mode="before")(reject_unstorable)

    id: uuid.UUID | None = None
    title: Title | None = None
    tags: Tags = Field(default_factory=dict)
    agent: AgentSpec
    max_iterations: Annotated[int, Field(ge=1, le=100_000)] = 500
    initial_message: UserMessageCreate | None = None


class ConversationUpdate(BaseModel):
    """Fields to change; absent fields are left as they are."""

    _storable = model_validator(mode="before")(reject_unstorable)

    title: Title | None = None
    tags: Tags | None = None

    @field_validator("tags")
    @classmethod
    def _tags_not_null(cls, value: dict[str, str] | None) -> dict[str, str]:
        return {} if value is None else value


class ConversationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str | None
    tags: dict[str, str]
    agent: dict[str, Any]
    execution_status: ExecutionStatus
    max_iterations: int
    stats: dict[str, Any]
    last_seq: int
    version: int
    created_at: datetime
    updated_at: datetime

    @field_validator("agent")
    @classmethod
    def _mask_secrets(cls, agent: dict[str, Any]) -> dict[str, Any]:
        llm = agent.get("llm")
        if isinstance(llm, dict) and llm.get("api_key"):
            agent = {**agent, "llm": {**llm, "api_key": SECRET_MASK}}
        return agent


class ConversationSortOrder(enum.StrEnum):
    CREATED_AT = "CREATED_AT"
    UPDATED_AT = "UPDATED_AT"
    CREATED_AT_DESC = "CREATED_AT_DESC"
    UPDATED_AT_DESC = "UPDATED_AT_DESC"


class ConversationPage(BaseModel):
    items: list[ConversationRead]
    next_page_id: str | None = None
