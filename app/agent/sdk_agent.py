"""The OpenHands SDK's `Agent` (kind `Agent`), run by our LLM agent.

Its tools (`tools: [{name, params}]`) are ours under the SDK's names (sdk_tools.py); finish
and think are always there, as the SDK's defaults. Of its `LLM`, only the fields below mean
something to litellm and are passed on; the rest (retries, logging, routing, prompt caching,
...) is the SDK's own client behaviour and is stored and shown only. `reasoning_effort` is
passed only for a model litellm knows to reason (the SDK sends `high` for every model).
"""

import functools
from typing import Any

import litellm

from app.agent.base import register_agent
from app.agent.llm_agent import LLMAgent
from app.agent.sdk_tools import our_tools

# SDK LLM field -> litellm argument.
SDK_LLM_ARGUMENTS = {
    "model": "model",
    "base_url": "base_url",
    "api_key": "api_key",
    "timeout": "timeout",
    "api_version": "api_version",
    "aws_access_key_id": "aws_access_key_id",
    "aws_secret_access_key": "aws_secret_access_key",
    "aws_session_token": "aws_session_token",
    "aws_region_name": "aws_region_name",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "max_output_tokens": "max_tokens",
    "seed": "seed",
    "extra_headers": "extra_headers",
}


@functools.lru_cache(maxsize=256)
def _reasons(model: str) -> bool:
    try:
        return bool(litellm.supports_reasoning(model=model))
    except Exception:  # a model litellm does not know: not known to reason
        return False


@register_agent
class SdkAgent(LLMAgent):
    kind = "Agent"

    def _tool_names(self) -> list[str] | None:
        tools = self.spec.get("tools")
        return our_tools(tools if isinstance(tools, list) else [])

    def _llm_fields(self) -> dict[str, Any]:
        llm = self.spec.get("llm") or {}
        fields = {ours: llm[sdk] for sdk, ours in SDK_LLM_ARGUMENTS.items() if sdk in llm}
        effort = llm.get("reasoning_effort")
        if effort not in (None, "none") and _reasons(str(llm.get("model") or "")):
            fields["reasoning_effort"] = effort
        return fields
