"""Upkeep that runs in every server process, every AGENT_SERVER_HOUSEKEEPING_INTERVAL_SECONDS:
pruning expired idempotency keys and, when AGENT_SERVER_RETENTION_DAYS is set, deleting the
conversations past it. Each job works in short batches of its own; several processes doing
it at once only find less to delete."""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from app.config import Settings
from app.db.availability import unavailable_reason
from app.db.session import Database
from app.idempotency.service import prune_expired
from app.retention.service import prune as prune_conversations

logger = logging.getLogger(__name__)


class Housekeeping:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="housekeeping")

    async def stop(self) -> None:
        self._stopped.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run_once(self) -> None:
        """Every job once; a job that fails is logged and the others still run."""
        await self._job("pruning expired idempotency keys", self._keys)
        if self.settings.retention_days is not None:
            await self._job("deleting conversations past retention", self._retention)

    async def _keys(self) -> None:
        pruned = await prune_expired(self.db)
        if pruned:
            logger.info("pruned %d expired idempotency keys", pruned)

    async def _retention(self) -> None:
        assert self.settings.retention_days is not None
        older_than = timedelta(days=self.settings.retention_days)
        deleted = await prune_conversations(self.db, older_than=older_than)
        if deleted:
            logger.info(
                "deleted %d conversations idle for over %g days",
                deleted,
                self.settings.retention_days,
            )

    async def _job(self, what: str, job: Callable[[], Awaitable[None]]) -> None:
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = unavailable_reason(exc)
            if reason is None:
                logger.exception("%s failed; trying again next time", what)
            else:  # a passing condition of the database, not a bug
                logger.warning("%s: not now (%s); trying again next time", what, reason)

    async def _loop(self) -> None:
        """One interval after start, then every interval (a start does no work of its own)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stopped.wait(), self.settings.housekeeping_interval_seconds
                )
            if self._stopped.is_set():
                return
            await self.run_once()
