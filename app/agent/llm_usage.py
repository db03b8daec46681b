"""One LLM call's record (tokens, cost, latency, or its error), from litellm's answer."""

import time
from typing import Any

import litellm

from app.agent.base import LLMCallRecord
from app.vault.redact import REDACTOR


def call_record(model: str, started: float, response: Any) -> LLMCallRecord:
    usage = getattr(response, "usage", None)
    return LLMCallRecord(
        model=model,
        prompt_tokens=getattr(usage, "prompt_tokens", None),
        completion_tokens=getattr(usage, "completion_tokens", None),
        cost_usd=_cost(response),
        latency_ms=(time.perf_counter() - started) * 1000,
    )


def _cost(response: Any) -> float | None:
    """The call's cost in USD, None when litellm knows no price for the model.

    litellm has already priced the response while returning it (`_hidden_params`): reading
    that avoids pricing it a second time, which for a model without a price is litellm's
    slow path, on the event loop."""
    hidden = getattr(response, "_hidden_params", None)
    if isinstance(hidden, dict) and "response_cost" in hidden:
        known = hidden["response_cost"]
        return float(known) if isinstance(known, int | float) else None
    try:
        return float(litellm.completion_cost(completion_response=response))
    except Exception:  # no price known for this model: cost unknown, not a failure
        return None


def failed_call_record(model: str, started: float, exc: BaseException) -> LLMCallRecord:
    return LLMCallRecord(
        model=model,
        prompt_tokens=None,
        completion_tokens=None,
        cost_usd=None,
        latency_ms=(time.perf_counter() - started) * 1000,
        error=REDACTOR.redact(f"{type(exc).__name__}: {exc}")[:2000],
    )
