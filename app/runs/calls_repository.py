"""Reads of `llm_calls`: the usage of a page of runs in one grouped query, and a keyset page
of a conversation's (or a run's) calls, newest first."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.types import UTCDateTime
from app.models import LLMCall


@dataclass(frozen=True)
class Usage:
    llm_calls: int = 0
    llm_errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None  # None when no call of the run had a known price
    latency_ms_total: float = 0.0


async def usage_by_run(
    session: AsyncSession, run_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Usage]:
    """Each run's LLM usage (runs without a call are left out), in one query."""
    if not run_ids:
        return {}
    rows = await session.execute(
        select(
            LLMCall.run_id,
            func.count(),
            func.sum(case((LLMCall.error.is_not(None), 1), else_=0)),
            func.coalesce(func.sum(LLMCall.prompt_tokens), 0),
            func.coalesce(func.sum(LLMCall.completion_tokens), 0),
            func.sum(LLMCall.cost_usd),
            func.coalesce(func.sum(LLMCall.latency_ms), 0.0),
        )
        .where(LLMCall.run_id.in_(run_ids))
        .group_by(LLMCall.run_id)
    )
    return {
        run_id: Usage(
            llm_calls=int(calls),
            llm_errors=int(errors or 0),
            prompt_tokens=int(prompt),
            completion_tokens=int(completion),
            cost_usd=None if cost is None else float(cost),
            latency_ms_total=float(latency),
        )
        for run_id, calls, errors, prompt, completion, cost, latency in rows.all()
        if run_id is not None
    }


async def page(
    session: AsyncSession,
    conversation_id: uuid.UUID,
    run_id: uuid.UUID | None,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
) -> list[LLMCall]:
    """Up to `limit` calls of the conversation (of one run when `run_id`), newest first,
    older than the key `before` (created_at, id) when given."""
    query = select(LLMCall).where(LLMCall.conversation_id == conversation_id)
    if run_id is not None:
        query = query.where(LLMCall.run_id == run_id)
    if before is not None:
        bound = tuple_(literal(before[0], UTCDateTime()), literal(before[1], LLMCall.id.type))
        query = query.where(tuple_(LLMCall.created_at, LLMCall.id) < bound)
    query = query.order_by(LLMCall.created_at.desc(), LLMCall.id.desc()).limit(limit)
    return list((await session.scalars(query)).all())
