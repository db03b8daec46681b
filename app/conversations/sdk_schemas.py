"""The OpenHands SDK's agent spec and creation settings, as its remote client sends them.

`POST /api/conversations` takes an agent of kind `Agent` (the SDK's `Agent.model_dump`)
besides our own `LLMAgent` spec. Every field of the SDK's `LLM` and `Agent` is accepted and
stored as sent (credentials sealed and masked like ours), so `GET` gives the client back the
agent it validates; only the fields in `FORWARDED_SDK_LLM` reach the LLM provider (see
app/agent/sdk_agent.py). Any other field is 422: the SDK's models forbid extras too.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator

from app.agent.sdk_tools import DEFAULT_SDK_TOOLS, SDK_TOOL_NAMES
from app.vault.specs import LLM_CREDENTIALS

Text = Annotated[str, StringConstraints(max_length=2048)]
Name = Annotated[str, StringConstraints(max_length=256)]
LongText = Annotated[str, StringConstraints(max_length=200_000)]
Secret = Annotated[SecretStr, StringConstraints(min_length=1, max_length=4096)]
SmallDict = Annotated[dict[Name, Any], Field(max_length=64)]
Count = Annotated[int, Field(ge=0, le=10_000_000)]
Seconds = Annotated[float, Field(ge=0, le=86_400)]
Price = Annotated[float, Field(ge=0, le=1_000)]


def http_url(url: str | None) -> str | None:
    """A field validator: an LLM endpoint is an http(s) URL."""
    if url is not None and not url.lower().startswith(("http://", "https://")):
        raise ValueError("base_url must be an http:// or https:// URL")
    return url


def with_plain_credentials(llm: BaseModel, data: dict[str, Any]) -> dict[str, Any]:
    """`data` (the LLM config as JSON) with its credentials in plain text, not masked."""
    for name in LLM_CREDENTIALS:
        value = getattr(llm, name, None)
        if isinstance(value, SecretStr):
            data[name] = value.get_secret_value()
        elif isinstance(value, dict):
            data[name] = {k: v.get_secret_value() for k, v in value.items()}
    return data


class SdkLLM(BaseModel):
    """The SDK's `LLM` (openhands-sdk 1.58): every field, bounded."""

    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    api_key: Secret | None = None
    provider_connection_id: Name | None = None
    auth_type: Name | None = None
    subscription_vendor: Name | None = None
    base_url: Text | None = None
    api_version: Name | None = None
    aws_access_key_id: Secret | None = None
    aws_secret_access_key: Secret | None = None
    aws_session_token: Secret | None = None
    aws_region_name: Name | None = None
    aws_profile_name: Name | None = None
    aws_role_name: Name | None = None
    aws_session_name: Name | None = None
    aws_bedrock_runtime_endpoint: Text | None = None
    openrouter_site_url: Text | None = None
    openrouter_app_name: Name | None = None
    num_retries: Annotated[int, Field(ge=0, le=100)] | None = None
    retry_multiplier: Annotated[float, Field(ge=0, le=1_000)] | None = None
    retry_min_wait: Count | None = None
    retry_max_wait: Count | None = None
    timeout: Annotated[float, Field(gt=0, le=3600)] | None = None
    stream_idle_timeout: Seconds | None = None
    max_message_chars: Count | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    top_k: Annotated[float, Field(ge=0, le=1000)] | None = None
    max_input_tokens: Count | None = None
    max_output_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    model_canonical_name: Name | None = None
    api_mode: Name | None = None
    capability_overrides: SmallDict | None = None
    extra_headers: (
        Annotated[
            dict[
                Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")],
                Secret,
            ],
            Field(max_length=16),
        ]
        | None
    ) = None
    input_cost_per_token: Price | None = None
    output_cost_per_token: Price | None = None
    ollama_base_url: Text | None = None
    stream: bool | None = None
    drop_params: bool | None = None
    disable_vision: bool | None = None
    disable_stop_word: bool | None = None
    caching_prompt: bool | None = None
    log_completions: bool | None = None
    log_completions_folder: Text | None = None
    custom_tokenizer: Name | None = None
    native_tool_calling: bool | None = None
    force_string_serializer: bool | None = None
    inline_image_urls: bool | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    reasoning_summary: Name | None = None
    enable_encrypted_reasoning: bool | None = None
    prompt_cache_retention: Name | None = None
    extended_thinking_budget: Count | None = None
    seed: Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | None = None
    usage_id: Name | None = None
    litellm_extra_body: SmallDict | None = None
    is_subscription: bool | None = None

    _http_url = field_validator("base_url")(http_url)

    def to_storage(self) -> dict[str, Any]:
        """Every field as sent, credentials in plain text (for vault.specs.conceal)."""
        return with_plain_credentials(self, self.model_dump(mode="json", exclude_unset=True))


class SdkToolSpec(BaseModel):
    """A tool of an SDK agent: its registered name and its parameters (not used here)."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    params: SmallDict = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in SDK_TOOL_NAMES:
            raise ValueError(f"unknown tool {name!r}; known: {sorted(SDK_TOOL_NAMES)}")
        return name


class SdkAgentSpec(BaseModel):
    """The SDK's `Agent` (kind `Agent`): run by app/agent/sdk_agent.py with our tools under
    the SDK's names. MCP servers, condensers and critics are not run: a non-empty
    `mcp_config` is 422; `condenser`, `critic`, `agent_context` are stored and shown only."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["Agent"]
    llm: SdkLLM
    tools: Annotated[list[SdkToolSpec], Field(max_length=32)] = Field(default_factory=list)
    mcp_config: SmallDict = Field(default_factory=dict)
    filter_tools_regex: Text | None = None
    include_default_tools: Annotated[list[Name], Field(max_length=8)] = Field(
        default_factory=lambda: list(DEFAULT_SDK_TOOLS)
    )
    agent_context: SmallDict | None = None
    system_prompt: LongText | None = None
    system_prompt_filename: Name | None = None
    security_policy_filename: Name | None = None
    system_prompt_kwargs: SmallDict = Field(default_factory=dict)
    condenser: SmallDict | None = None
    critic: SmallDict | None = None
    tool_concurrency_limit: Annotated[int, Field(ge=1, le=64)] | None = None
    persona: SmallDict | Text | None = None

    @field_validator("mcp_config")
    @classmethod
    def _no_mcp(cls, config: dict[str, Any]) -> dict[str, Any]:
        if config:
            raise ValueError("MCP servers are not supported by this server: mcp_config must be {}")
        return config

    @field_validator("include_default_tools")
    @classmethod
    def _known_defaults(cls, names: list[str]) -> list[str]:
        unknown = sorted(set(names) - set(DEFAULT_SDK_TOOLS))
        if unknown:
            raise ValueError(f"unknown default tools {unknown}; known: {list(DEFAULT_SDK_TOOLS)}")
        return names

    def to_storage(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude={"llm"})
        data["llm"] = self.llm.to_storage()
        return data


class SdkWorkspace(BaseModel):
    """The SDK's `LocalWorkspace`: the tools' working directory, inside
    AGENT_SERVER_WORKSPACE_ROOT (`/a/b` is `<root>/a/b`)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["LocalWorkspace"] = "LocalWorkspace"
    working_dir: Annotated[str, StringConstraints(min_length=1, max_length=1024)]

    @field_validator("working_dir")
    @classmethod
    def _inside_root(cls, path: str) -> str:
        if "\x00" in path or ".." in path.split("/"):
            raise ValueError("working_dir may hold neither NUL characters nor `..` parts")
        return path


class ConfirmationPolicy(BaseModel):
    """`NeverConfirm`, `AlwaysConfirm`, or `ConfirmRisky` (every action's risk is UNKNOWN
    here, so `ConfirmRisky` confirms all of them unless `confirm_unknown` is false)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["NeverConfirm", "AlwaysConfirm", "ConfirmRisky"]
    threshold: Literal["LOW", "MEDIUM", "HIGH"] | None = None
    confirm_unknown: bool | None = None

    def to_storage(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class SecurityAnalyzer(BaseModel):
    """A security analyzer as the SDK sends it (`{"kind": "LLMSecurityAnalyzer"}`): stored
    and shown; this server rates no risks (every action's risk is UNKNOWN)."""

    model_config = ConfigDict(extra="allow")

    kind: Name


class SdkCreateOptions(BaseModel):
    """The SDK's creation settings besides the agent. Stored and returned; hooks, plugins,
    client tools, sub-agents and observability are not run by this server (README)."""

    workspace: SdkWorkspace | None = None
    conversation_id: Annotated[str, StringConstraints(max_length=64)] | None = None
    confirmation_policy: ConfirmationPolicy | None = None
    security_analyzer: SecurityAnalyzer | None = None
    stuck_detection: bool | None = None
    stuck_detection_thresholds: SmallDict | None = None
    tool_module_qualnames: Annotated[dict[Name, Text], Field(max_length=64)] | None = None
    client_tools: Annotated[list[SmallDict], Field(max_length=32)] | None = None
    agent_definitions: Annotated[list[SmallDict], Field(max_length=32)] | None = None
    plugins: Annotated[list[SmallDict], Field(max_length=32)] | None = None
    hook_config: SmallDict | None = None
    user_id: Name | None = None
    observability_metadata: SmallDict | None = None
    observability_tags: Annotated[list[Name], Field(max_length=64)] | None = None
    observability_span_name: Name | None = None
    observability_parent_span_context: Text | None = None
    autotitle: bool | None = None


# The creation settings kept in `conversations.options` and shown as sent: every one but
# those with a column (or, the id, a field) of their own.
OPTION_FIELDS = tuple(
    name
    for name in SdkCreateOptions.model_fields
    if name not in ("conversation_id", "confirmation_policy", "security_analyzer")
)
