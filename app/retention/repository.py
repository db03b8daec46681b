"""Retention queries: which conversations have expired, and deleting them.

A conversation's rows in events, event_counts, runs and llm_calls go with it through their
foreign keys' ON DELETE CASCADE (SQLite enforces them: the engine turns foreign_keys on for
every connection), the same single DELETE the API's delete makes.
"""

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, exists, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.types import UTCDateTime
from app.models import ACTIVE_STATUSES, Conversation, Run


def _expired(cutoff: datetime, statuses: Sequence[str] | None) -> ColumnElement[bool]:
    """Last activity (the last event, else the last update, else creation) before `cutoff`,
    the status one of `statuses` (any when None), and no queued or running run."""
    last_activity = func.coalesce(
        Conversation.last_event_at,
        Conversation.updated_at,
        Conversation.created_at,
        type_=UTCDateTime(),
    )
    active_run = exists().where(
        Run.conversation_id == Conversation.id, Run.status.in_(ACTIVE_STATUSES)
    )
    conditions = [last_activity < literal(cutoff, UTCDateTime()), ~active_run]
    if statuses is not None:
        conditions.append(Conversation.execution_status.in_(list(statuses)))
    return and_(*conditions)


async def expired_ids(
    session: AsyncSession,
    cutoff: datetime,
    statuses: Sequence[str] | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[uuid.UUID]:
    """Up to `limit` expired conversations' ids, in id order after `after` (keyset on the
    primary key: each batch starts where the last one ended, skipped rows included)."""
    stmt = select(Conversation.id).where(_expired(cutoff, statuses))
    if after is not None:
        stmt = stmt.where(Conversation.id > after)
    stmt = stmt.order_by(Conversation.id).limit(limit)
    return list((await session.scalars(stmt)).all())


async def delete_expired(
    session: AsyncSession,
    ids: Sequence[uuid.UUID],
    cutoff: datetime,
    statuses: Sequence[str] | None,
) -> int:
    """Delete those of `ids` still expired; how many went.

    The selection's conditions are checked again in the DELETE itself: a message or a run
    start committed since the selection updates the conversation's row (its last event, its
    status), and on Postgres the DELETE, which waits for that row's lock, re-checks its WHERE
    against the new row and leaves it. On SQLite the selection and the DELETE are in one
    write transaction and nothing writes in between.
    """
    stmt = (
        delete(Conversation)
        .where(Conversation.id.in_(list(ids)), _expired(cutoff, statuses))
        .returning(Conversation.id)
        .execution_options(synchronize_session=False)
    )
    return len((await session.execute(stmt)).all())
