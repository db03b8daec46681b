"""LLM usage: one llm_calls row per call, rolled up into the conversation's stats.

The run's journal keeps the totals in memory (it is the only writer of its conversation's
stats while its run is active) and writes the rows and the new totals together with the
next events it appends, in the same transaction.
"""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from app.agent.base import LLMCallRecord
from app.events.service import storable
from app.metrics import model_series
from app.runs.repository import Lease

EMPTY = {
    "llm_calls": 0,
    "llm_errors": 0,
    "prompt_tokens": 0,
    "completion_tokens": 0,
    "cost_usd": None,  # null until a call with a known price
    "llm_latency_ms": 0.0,
}


def start(stats: dict[str, Any] | None) -> dict[str, Any]:
    return {**EMPTY, **(stats or {})}


def add(stats: dict[str, Any], call: LLMCallRecord) -> dict[str, Any]:
    cost = stats["cost_usd"]
    if call.cost_usd is not None:
        cost = round((cost or 0.0) + call.cost_usd, 9)
    return {
        **stats,
        "llm_calls": stats["llm_calls"] + 1,
        "llm_errors": stats["llm_errors"] + (call.error is not None),
        "prompt_tokens": stats["prompt_tokens"] + (call.prompt_tokens or 0),
        "completion_tokens": stats["completion_tokens"] + (call.completion_tokens or 0),
        "cost_usd": cost,
        "llm_latency_ms": round(stats["llm_latency_ms"] + call.latency_ms, 3),
    }


def observe(call: LLMCallRecord) -> None:
    """Count one call in the process's metrics, by model."""
    series = model_series(call.model)
    series.calls.inc()
    if call.error is not None:
        series.errors.inc()
    # A counter only goes up: a missing or odd (negative) number adds nothing.
    if call.prompt_tokens is not None and call.prompt_tokens > 0:
        series.prompt_tokens.inc(call.prompt_tokens)
    if call.completion_tokens is not None and call.completion_tokens > 0:
        series.completion_tokens.inc(call.completion_tokens)
    if call.cost_usd is not None and call.cost_usd > 0:
        series.cost_usd.inc(call.cost_usd)
    series.seconds.observe(call.latency_ms / 1000)


def placed(rows: Sequence[dict[str, Any]], lease: Lease, now: datetime) -> list[dict[str, Any]]:
    """llm_calls rows (see call_row) with the conversation, run and time of their write."""
    extra = {"conversation_id": lease.conversation_id, "run_id": lease.run_id, "created_at": now}
    return [{**row, **extra} for row in rows]


def call_row(call: LLMCallRecord) -> dict[str, Any]:
    """An llm_calls row's own values (the writer adds conversation, run and time)."""
    return {
        "id": uuid.uuid4(),
        "model": call.model,
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": call.completion_tokens,
        "cost_usd": call.cost_usd,
        "latency_ms": call.latency_ms,
        "error": storable(call.error),
    }
