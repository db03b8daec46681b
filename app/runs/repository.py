"""Run queries: claiming, lease renewal and fencing, and the sweeper's selection."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    String,
    Table,
    func,
    insert,
    literal,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer
from sqlalchemy.sql.dml import Update

from app.db.dialect import insert_ignore_conflict
from app.db.notify import RUNS_CHANNEL
from app.db.types import UTCDateTime
from app.models import ACTIVE_PREDICATE, ACTIVE_STATUSES, Conversation, LLMCall, Run, RunStatus

RUNS = cast(Table, Run.__table__)
LLM_CALLS = cast(Table, LLMCall.__table__)


@dataclass(frozen=True)
class Lease:
    run_id: uuid.UUID
    conversation_id: uuid.UUID
    epoch: int


async def get(session: AsyncSession, run_id: uuid.UUID) -> Run | None:
    return await session.get(Run, run_id)


async def load_for_run(session: AsyncSession, lease: Lease) -> tuple[Conversation, Run] | None:
    """The conversation (with its sealed secrets) and the run a runner starts from; None
    when either is gone."""
    conversation = await session.get(
        Conversation, lease.conversation_id, options=[undefer(Conversation.secrets)]
    )
    run = await session.get(Run, lease.run_id)
    return None if conversation is None or run is None else (conversation, run)


async def reread(session: AsyncSession, run: Run) -> None:
    """Read the run's row again (after a Core UPDATE in this transaction)."""
    await session.refresh(run)


def _is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _notify_workers(session: AsyncSession) -> tuple[Any, ...]:
    """A RETURNING column that notifies the workers of every process (Postgres), or none:
    sent inside the writing statement, so delivered only on commit."""
    if not _is_postgres(session):
        return ()
    return (func.pg_notify(literal(RUNS_CHANNEL), func.cast(Run.id, String)),)


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    """How many runs have each status (statuses no run has are absent), in one grouped query
    (for the metrics, at scrape time)."""
    stmt = select(Run.status, func.count()).group_by(Run.status)
    return {status: count for status, count in await session.execute(stmt)}


async def queued_at_least(session: AsyncSession, limit: int) -> bool:
    """Whether `limit` runs or more are queued: counts at most `limit` rows of the claim
    index, so the check costs the same however long the queue is."""
    queued = select(literal(1)).where(Run.status == RunStatus.QUEUED.value).limit(limit)
    count = await session.scalar(select(func.count()).select_from(queued.subquery()))
    return int(count or 0) >= limit


async def any_queued(session: AsyncSession) -> bool:
    stmt = select(literal(1)).where(Run.status == RunStatus.QUEUED.value).limit(1)
    return (await session.execute(stmt)).first() is not None


async def claim(
    session: AsyncSession, worker_id: str, lease_seconds: float, now: datetime, limit: int
) -> list[Lease]:
    """Claim up to `limit` of the oldest queued runs: pick, then one conditional UPDATE.

    Postgres: the candidates are picked FOR UPDATE SKIP LOCKED (locked until commit), so
    claimers in other processes take different runs. (Not as `IN (subquery ... LIMIT)` inside
    the UPDATE: Postgres may evaluate that subquery more than once and claim too many.)
    SQLite: the write transaction is BEGIN IMMEDIATE, so claimers are serialized. Either way
    the UPDATE re-checks status = queued.
    """
    candidates = (
        select(Run.id)
        .where(Run.status == RunStatus.QUEUED.value)
        .order_by(Run.created_at, Run.id)
        .limit(limit)
    )
    if _is_postgres(session):
        candidates = candidates.with_for_update(skip_locked=True)
    picked = list((await session.execute(candidates)).scalars())
    if not picked:
        return []
    stmt = (
        update(Run)
        .where(Run.id.in_(picked), Run.status == RunStatus.QUEUED.value)
        .values(
            status=RunStatus.RUNNING.value,
            worker_id=worker_id,
            lease_epoch=Run.lease_epoch + 1,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=now,
        )
        .returning(Run.id, Run.conversation_id, Run.lease_epoch, Run.created_at)
        .execution_options(synchronize_session=False)
    )
    rows = sorted((await session.execute(stmt)).all(), key=lambda row: (row[3], str(row[0])))
    return [Lease(row[0], row[1], row[2]) for row in rows]


def _held_by(lease: Lease) -> tuple[ColumnElement[bool], ...]:
    """The run is running under this lease (its expiry is checked where it matters)."""
    return (
        Run.id == lease.run_id,
        Run.status == RunStatus.RUNNING.value,
        Run.lease_epoch == lease.epoch,
    )


def fence_statement(run_id: Any, epoch: Any, now: Any, iterations: Any) -> Update:
    """The fence: matches only while (run_id, epoch) is the run's live lease, and records
    the iteration count. An UPDATE, so on Postgres the run row stays locked until commit and
    the sweeper cannot fail the run mid-write. Values may be bind parameters (the runner's
    fenced append compiles it once)."""
    return (
        update(RUNS)
        .where(
            RUNS.c.id == run_id,
            RUNS.c.status == RunStatus.RUNNING.value,
            RUNS.c.lease_epoch == epoch,
            RUNS.c.lease_expires_at > now,
        )
        .values(iterations=iterations)
        .returning(RUNS.c.id)
    )


async def hold(session: AsyncSession, lease: Lease, now: datetime, *, iterations: int) -> bool:
    """True while this lease is the run's live lease (see fence_statement)."""
    stmt = fence_statement(lease.run_id, lease.epoch, now, iterations)
    return (await session.execute(stmt)).first() is not None


async def set_stats(
    session: AsyncSession, conversation_id: uuid.UUID, stats: dict[str, Any]
) -> None:
    await session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(stats=stats)
        .execution_options(synchronize_session=False)
    )


async def insert_calls(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """llm_calls rows (see runs.usage.call_row)."""
    await session.execute(insert(LLM_CALLS), list(rows))


@dataclass(frozen=True)
class ControlFlags:
    status: str
    lease_epoch: int
    pause_requested: bool
    interrupt_requested: bool


async def control_flags(
    session: AsyncSession, run_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, ControlFlags]:
    """The control flags of many runs in one query (a worker asks for all it holds)."""
    stmt = select(
        Run.id, Run.status, Run.lease_epoch, Run.pause_requested, Run.interrupt_requested
    ).where(Run.id.in_(list(run_ids)))
    return {row[0]: ControlFlags(*row[1:]) for row in await session.execute(stmt)}


async def renew_many(
    session: AsyncSession, leases: Sequence[Lease], lease_seconds: float, now: datetime
) -> set[uuid.UUID]:
    """Renew every lease still held, in one statement; returns the run ids renewed."""
    if not leases:
        return set()
    pairs = [tuple_(literal(lease.run_id, Run.id.type), literal(lease.epoch)) for lease in leases]
    stmt = (
        update(Run)
        .where(
            tuple_(Run.id, Run.lease_epoch).in_(pairs),
            Run.status == RunStatus.RUNNING.value,
            Run.lease_expires_at > now,
        )
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
        .returning(Run.id)
        .execution_options(synchronize_session=False)
    )
    return {row[0] for row in await session.execute(stmt)}


async def finish(
    session: AsyncSession,
    run_id: uuid.UUID,
    *,
    status: RunStatus,
    stop_reason: str,
    now: datetime,
    error: str | None = None,
    only_if_epoch: int | None = None,
    only_if_status: Sequence[RunStatus] = (RunStatus.RUNNING,),
    only_if_expired: bool = False,
) -> bool:
    """End a run with one conditional UPDATE; False when its state no longer matches."""
    stmt = update(Run).where(Run.id == run_id, Run.status.in_([s.value for s in only_if_status]))
    if only_if_epoch is not None:
        stmt = stmt.where(Run.lease_epoch == only_if_epoch)
    if only_if_expired:
        stmt = stmt.where(Run.lease_expires_at < now)
    stmt = stmt.values(
        status=status.value,
        stop_reason=stop_reason,
        error=error,
        finished_at=now,
        lease_expires_at=None,
        # A new epoch fences off whoever held the lease.
        lease_epoch=Run.lease_epoch + 1,
    )
    result = await session.execute(
        stmt.returning(Run.id).execution_options(synchronize_session=False)
    )
    return result.first() is not None


async def requeue(session: AsyncSession, lease: Lease) -> bool:
    """Give a running run back to the queue (a shutting-down worker does): any worker may
    claim it again. A new epoch fences off this lease; False when it was no longer held."""
    stmt = (
        update(Run)
        .where(*_held_by(lease))
        .values(
            status=RunStatus.QUEUED.value,
            worker_id=None,
            lease_expires_at=None,
            lease_epoch=Run.lease_epoch + 1,
        )
        .returning(Run.id, *_notify_workers(session))
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).first() is not None


async def expired(session: AsyncSession, now: datetime, limit: int = 50) -> Sequence[Run]:
    stmt = (
        select(Run)
        .where(Run.status == RunStatus.RUNNING.value, Run.lease_expires_at < now)
        .order_by(Run.lease_expires_at)
        .limit(limit)
    )
    if _is_postgres(session):
        stmt = stmt.with_for_update(skip_locked=True)
    return (await session.execute(stmt)).scalars().all()


async def insert_unless_active(
    session: AsyncSession, conversation_id: uuid.UUID, created_at: datetime
) -> Run | None:
    """Queue a run unless the conversation has an active one: the partial unique index is the
    arbiter (ON CONFLICT DO NOTHING, so no error and no savepoint). The new run, or None."""
    stmt = (
        insert_ignore_conflict(
            session, Run, ["conversation_id"], index_where=text(ACTIVE_PREDICATE)
        )
        .values(id=uuid.uuid4(), conversation_id=conversation_id, created_at=created_at)
        .returning(Run, *_notify_workers(session))
    )
    return (await session.scalars(stmt)).first()


async def active_for(session: AsyncSession, conversation_id: uuid.UUID) -> Run | None:
    stmt = select(Run).where(
        Run.conversation_id == conversation_id, Run.status.in_(ACTIVE_STATUSES)
    )
    if _is_postgres(session):
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalars().first()


async def set_flag(session: AsyncSession, run_id: uuid.UUID, flag: str) -> bool:
    stmt = (
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.RUNNING.value)
        .values({flag: True})
        .returning(Run.id, *_notify_workers(session))
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).first() is not None


async def page(
    session: AsyncSession,
    conversation_id: uuid.UUID,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[Run]:
    stmt = select(Run).where(Run.conversation_id == conversation_id)
    if after is not None:
        bound = tuple_(literal(after[0], UTCDateTime()), literal(after[1], Run.id.type))
        stmt = stmt.where(tuple_(Run.created_at, Run.id) < bound)
    stmt = stmt.order_by(Run.created_at.desc(), Run.id.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()
