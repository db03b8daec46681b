"""Run API schemas."""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from app.models import LLMCall, Run, RunStatus
from app.runs.calls_repository import Usage
from app.validators import reject_unstorable


class RunUsage(BaseModel):
    """The run's LLM calls: counts, tokens, cost and latency (failed calls included)."""

    llm_calls: int = 0
    llm_errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    # null when no call of the run had a price litellm knows
    cost_usd: float | None = None
    latency_ms_total: float = 0.0
    latency_ms_mean: float | None = None

    @classmethod
    def of(cls, usage: Usage) -> "RunUsage":
        return cls(
            llm_calls=usage.llm_calls,
            llm_errors=usage.llm_errors,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.prompt_tokens + usage.completion_tokens,
            cost_usd=usage.cost_usd,
            latency_ms_total=usage.latency_ms_total,
            latency_ms_mean=usage.latency_ms_total / usage.llm_calls if usage.llm_calls else None,
        )


class RunRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    conversation_id: uuid.UUID
    status: RunStatus
    stop_reason: str | None
    error: str | None
    iterations: int
    worker_id: str | None
    lease_epoch: int
    lease_expires_at: datetime | None
    pause_requested: bool
    interrupt_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    usage: RunUsage = Field(default_factory=RunUsage)

    @classmethod
    def with_usage(cls, run: Run, usage: Usage) -> "RunRead":
        read = cls.model_validate(run)
        read.usage = RunUsage.of(usage)
        return read


class RunPage(BaseModel):
    items: list[RunRead]
    next_page_id: str | None = None


class ConfirmationAnswer(BaseModel):
    """The user's answer to the actions a conversation waits on (confirmation mode)."""

    model_config = ConfigDict(extra="forbid")
    _storable = model_validator(mode="before")(reject_unstorable)
    accept: bool
    reason: Annotated[str, StringConstraints(max_length=4096)] = "User rejected the action"


class LLMCallRead(BaseModel):
    """One LLM request of a conversation (its run's, when made in one)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    conversation_id: uuid.UUID
    run_id: uuid.UUID | None
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None
    latency_ms: float
    error: str | None
    created_at: datetime


class LLMCallPage(BaseModel):
    items: list[LLMCallRead]
    next_page_id: str | None = None

    @classmethod
    def of(cls, calls: Sequence[LLMCall], next_page_id: str | None) -> "LLMCallPage":
        items = [LLMCallRead.model_validate(call) for call in calls]
        return cls(items=items, next_page_id=next_page_id)
