"""Pruning: deleting the conversations idle for longer than a given age (`agent-server
prune`), a short write transaction per batch so that the API's writers wait at most one batch
for their turn."""

import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta

from app.clock import utcnow
from app.db.session import Database
from app.errors import Unprocessable
from app.models import ExecutionStatus
from app.retention import repository

STATUSES = tuple(status.value for status in ExecutionStatus)


def check_statuses(statuses: Sequence[str] | None) -> list[str] | None:
    """The statuses as a list (None: any status); Unprocessable naming any unknown one."""
    if statuses is None:
        return None
    unknown = [status for status in statuses if status not in STATUSES]
    if unknown:
        raise Unprocessable(
            f"unknown execution status {', '.join(repr(s) for s in unknown)}"
            f" (known: {', '.join(STATUSES)})",
            details={"field": "statuses", "unknown": unknown},
        )
    return list(statuses)


async def prune(
    db: Database,
    *,
    older_than: timedelta,
    statuses: Sequence[str] | None = None,
    dry_run: bool = False,
    batch: int = 100,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Delete every conversation whose last activity (last event, else last update, else
    creation) is more than `older_than` ago and whose execution_status is one of `statuses`
    (any when None), with all its rows; how many were deleted (`dry_run`: would be, and
    nothing is). A conversation with a queued or running run is never deleted: its run still
    works on it.

    Each batch of up to `batch` conversations is selected and deleted in its own write
    transaction; `on_batch` is called after each batch that found any, with the total so far.
    """
    wanted = check_statuses(statuses)
    if older_than <= timedelta(0):
        raise Unprocessable("older_than must be positive", details={"field": "older_than"})
    if batch < 1:
        raise Unprocessable("batch must be at least 1", details={"field": "batch"})
    try:
        cutoff = utcnow() - older_than
    except OverflowError:  # an age reaching back before year 1: nothing is that old
        return 0
    total = 0
    after: uuid.UUID | None = None
    while True:
        async with db.session(write=not dry_run) as session:
            ids = await repository.expired_ids(session, cutoff, wanted, after, batch)
            if ids and not dry_run:
                done = await repository.delete_expired(session, ids, cutoff, wanted)
            else:
                done = len(ids)
        if not ids:
            return total
        total += done
        if on_batch is not None:
            on_batch(total)
        if len(ids) < batch:
            return total
        after = ids[-1]
