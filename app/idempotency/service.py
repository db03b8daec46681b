"""Pruning the idempotency keys past their expiry."""

from app.clock import utcnow
from app.db.session import Database
from app.idempotency import repository

PRUNE_BATCH = 500


async def prune_expired(db: Database, batch: int = PRUNE_BATCH) -> int:
    """Delete every expired key, `batch` rows per short write transaction (no long lock);
    how many were deleted."""
    now = utcnow()
    pruned = 0
    while True:
        async with db.session(write=True) as session:
            deleted = await repository.delete_expired(session, now, batch)
        pruned += deleted
        if deleted < batch:
            return pruned
