"""Which parts of an agent spec are credentials, and moving them in and out of it.

An agent spec is stored with every credential replaced by the mask (`agent`), and the
credentials sealed apart (`secrets`, see cipher.py). Only the process running the agent
merges them back (`reveal`). In `agent.llm`, every field that is not a known public model
parameter counts as a credential: `api_key`, `extra_headers`, the AWS keys, and any field
stored by an older version that is not on the list today.
"""

from typing import Any

from app.vault.redact import MASK

# Our agent.llm model parameters (LLMConfig): not credentials, passed to litellm.
MODEL_PARAMETERS = frozenset(
    {
        "model",
        "base_url",
        "api_version",
        "aws_region_name",
        "temperature",
        "top_p",
        "top_k",
        "max_tokens",
        "max_completion_tokens",
        "seed",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "reasoning_effort",
        "timeout",
    }
)
# The OpenHands SDK's LLM fields that are not credentials (conversations/sdk_schemas.py).
SDK_PUBLIC_LLM_FIELDS = frozenset(
    {
        "provider_connection_id",
        "auth_type",
        "subscription_vendor",
        "aws_profile_name",
        "aws_role_name",
        "aws_session_name",
        "aws_bedrock_runtime_endpoint",
        "openrouter_site_url",
        "openrouter_app_name",
        "num_retries",
        "retry_multiplier",
        "retry_min_wait",
        "retry_max_wait",
        "stream_idle_timeout",
        "max_message_chars",
        "max_input_tokens",
        "max_output_tokens",
        "model_canonical_name",
        "api_mode",
        "capability_overrides",
        "input_cost_per_token",
        "output_cost_per_token",
        "ollama_base_url",
        "stream",
        "drop_params",
        "disable_vision",
        "disable_stop_word",
        "caching_prompt",
        "log_completions",
        "log_completions_folder",
        "custom_tokenizer",
        "native_tool_calling",
        "force_string_serializer",
        "inline_image_urls",
        "reasoning_summary",
        "enable_encrypted_reasoning",
        "prompt_cache_retention",
        "extended_thinking_budget",
        "usage_id",
        "is_subscription",
    }
)
# The agent.llm fields that are not credentials: stored and shown as given.
PUBLIC_LLM_FIELDS = MODEL_PARAMETERS | SDK_PUBLIC_LLM_FIELDS
# The credentials of agent.llm that are passed to the LLM client.
LLM_CREDENTIALS = frozenset(
    {"api_key", "extra_headers", "aws_access_key_id", "aws_secret_access_key", "aws_session_token"}
)


# Field names that hold credentials outside agent.llm (masked there, never kept).
NESTED_SECRETS = LLM_CREDENTIALS | {"secrets"}


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: MASK for key in value}
    return MASK


def _scrubbed(value: Any) -> Any:
    """`value` with every credential-named field masked, at any depth."""
    if isinstance(value, dict):
        return {
            key: (_masked(item) if key in NESTED_SECRETS and item is not None else _scrubbed(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_scrubbed(item) for item in value]
    return value


def conceal(agent: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a spec holding credentials into the spec to store (credentials masked) and the
    credentials to seal ({} when there are none). Credentials anywhere else in the spec (an
    OpenHands condenser's or critic's LLM, `agent_context.secrets`) are masked and not kept:
    this server never runs those."""
    agent = {key: value if key == "llm" else _scrubbed(value) for key, value in agent.items()}
    llm = agent.get("llm")
    if not isinstance(llm, dict):
        return agent, {}
    public: dict[str, Any] = {}
    secret: dict[str, Any] = {}
    for key, value in llm.items():
        if key in PUBLIC_LLM_FIELDS:
            public[key] = value
        elif value is not None:
            secret[key] = value
            public[key] = _masked(value)
    return {**agent, "llm": public}, ({"llm": secret} if secret else {})


def mask(agent: dict[str, Any]) -> dict[str, Any]:
    """The spec as shown to clients: every credential masked (stored specs already are)."""
    return conceal(agent)[0]


def reveal(agent: dict[str, Any], secrets: dict[str, Any]) -> dict[str, Any]:
    """The spec with its credentials back in place, for the agent that runs it."""
    llm_secrets = secrets.get("llm")
    if not isinstance(llm_secrets, dict) or not llm_secrets:
        return agent
    return {**agent, "llm": {**(agent.get("llm") or {}), **llm_secrets}}
