"""The worker loop of one server process: claims queued runs and runs them.

`max_concurrent_runs` caps every run of the process, async and sync agents alike; runs
beyond it stay queued in the database and start in order as slots free. Sync-only agents run
on the run pool (threads `conversation-run-*`); tools run on their own pool (`tool-*`), so
tool calls fanned out by a step can never wait for a run-pool thread.
"""

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from app.agent.base import DEFAULT_AGENT_KIND, AgentBase, agent_class, agent_kinds
from app.clock import utcnow
from app.config import Settings
from app.conversations.state import transition
from app.db.session import Database
from app.errors import Unprocessable
from app.models import ExecutionStatus
from app.runs import repository
from app.runs.repository import Lease
from app.runs.runner import Pools, Runner
from app.runs.sweeper import sweep_once

logger = logging.getLogger(__name__)


def resolve_agent(spec: dict[str, Any]) -> type[AgentBase]:
    kind = spec.get("kind") or DEFAULT_AGENT_KIND
    cls = agent_class(str(kind))
    if cls is None:
        raise Unprocessable(f"unknown agent kind {kind!r}", details={"known": agent_kinds()})
    return cls


class Worker:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.pools = Pools(
            run_pool=ThreadPoolExecutor(
                settings.max_concurrent_runs, thread_name_prefix="conversation-run"
            ),
            tool_pool=ThreadPoolExecutor(settings.tool_pool_size, thread_name_prefix="tool"),
        )
        self.runners: dict[uuid.UUID, Runner] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()

    async def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="run-claimer"),
            asyncio.create_task(self._sweep_loop(), name="run-sweeper"),
        ]

    async def stop(self) -> None:
        for task in [*self._loops, *self._tasks]:
            task.cancel()
        for task in [*self._loops, *self._tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.pools.run_pool.shutdown(wait=False, cancel_futures=True)
        self.pools.tool_pool.shutdown(wait=False, cancel_futures=True)

    def wake(self) -> None:
        """A run may have been queued: look now instead of at the next poll."""
        self._wake.set()

    def nudge(self, run_id: uuid.UUID) -> None:
        """A control flag of a run may have changed: its runner checks now."""
        runner = self.runners.get(run_id)
        if runner is not None:
            runner.nudge.set()

    async def _claim_loop(self) -> None:
        while True:
            try:
                if len(self.runners) < self.settings.max_concurrent_runs:
                    lease = await self._claim()
                    if lease is not None:
                        self._launch(lease)
                        continue
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("claiming runs failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.worker_poll_seconds)
            self._wake.clear()

    async def _claim(self) -> Lease | None:
        async with self.db.session(write=False) as session:
            if not await repository.any_queued(session):
                return None
        async with self.db.session(write=True) as session:
            lease = await repository.claim_next(
                session, self.worker_id, self.settings.run_lease_seconds, utcnow()
            )
            if lease is not None:
                await transition(
                    session,
                    lease.conversation_id,
                    ExecutionStatus.RUNNING,
                    allowed_from=(ExecutionStatus.QUEUED,),
                )
            return lease

    def _launch(self, lease: Lease) -> None:
        runner = Runner(
            db=self.db,
            settings=self.settings,
            lease=lease,
            resolve_agent=resolve_agent,
            pools=self.pools,
        )
        self.runners[lease.run_id] = runner
        task = asyncio.create_task(runner.run(), name=f"run-{lease.run_id}")
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            self.runners.pop(lease.run_id, None)
            self._wake.set()

        task.add_done_callback(done)

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await sweep_once(self.db)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("sweeping expired runs failed; retrying")
            await asyncio.sleep(self.settings.sweeper_interval_seconds)
