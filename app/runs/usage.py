"""LLM usage: one llm_calls row per call, rolled up into the conversation's stats."""

import uuid

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.agent.base import LLMCallRecord
from app.clock import utcnow
from app.models import Conversation, LLMCall
from app.runs.repository import Lease


async def record(session: AsyncSession, lease: Lease, call: LLMCallRecord) -> None:
    await session.execute(
        insert(LLMCall).values(
            id=uuid.uuid4(),
            conversation_id=lease.conversation_id,
            run_id=lease.run_id,
            model=call.model,
            prompt_tokens=call.prompt_tokens,
            completion_tokens=call.completion_tokens,
            cost_usd=call.cost_usd,
            latency_ms=call.latency_ms,
            error=call.error,
            created_at=utcnow(),
        )
    )
    await session.execute(
        update(Conversation)
        .where(Conversation.id == lease.conversation_id)
        .values(stats=await rollup(session, lease.conversation_id))
        .execution_options(synchronize_session=False)
    )


async def rollup(session: AsyncSession, conversation_id: uuid.UUID) -> dict[str, object]:
    """Stats recomputed from llm_calls (not incremented), so no update can be lost."""
    stmt = select(
        func.count(),
        func.count(LLMCall.error),
        func.coalesce(func.sum(LLMCall.prompt_tokens), 0),
        func.coalesce(func.sum(LLMCall.completion_tokens), 0),
        func.sum(LLMCall.cost_usd),
        func.count(LLMCall.cost_usd),
        func.coalesce(func.sum(LLMCall.latency_ms), 0.0),
    ).where(LLMCall.conversation_id == conversation_id)
    calls, errors, prompt, completion, cost, priced, latency = (await session.execute(stmt)).one()
    return {
        "llm_calls": int(calls),
        "llm_errors": int(errors),
        "prompt_tokens": int(prompt or 0),
        "completion_tokens": int(completion or 0),
        # null when no call had a known price
        "cost_usd": None if not priced or cost is None else round(float(cost), 6),
        "llm_latency_ms": round(float(latency or 0.0), 1),
    }
