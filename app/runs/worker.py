"""The worker loop of one server process: claims queued runs and runs them.

`max_concurrent_runs` caps every run of the process, async and sync agents alike; runs
beyond it stay queued in the database and start in order as slots free. Sync-only agents run
on the run pool (threads `conversation-run-*`); tools run on their own pool (`tool-*`), so
tool calls fanned out by a step can never wait for a run-pool thread.

Shutdown (`stop`) gives the runs back instead of dropping them: claiming stops at once, every
runner ends at its next step boundary, and when `shutdown_grace_seconds` run out the steps
still going are cut off. Each run goes back to the queue (or is paused, when a tool call was
cut off), in one fenced write; leases are renewed until then.
"""

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from app.agent.base import DEFAULT_AGENT_KIND, AgentBase, agent_class, agent_kinds
from app.agent.loader import AGENTS
from app.clock import utcnow
from app.config import Settings
from app.db.notify import RUNS_CHANNEL, Listener
from app.db.session import Database
from app.errors import Unprocessable
from app.runs import repository
from app.runs.appenders import appender
from app.runs.repository import Lease
from app.runs.runner import Pools, Runner
from app.runs.sweeper import sweep_once
from app.vault.service import Vault

logger = logging.getLogger(__name__)
# Bounded waits at shutdown besides the grace: the cut-off runs get CUT_SECONDS to give their
# runs back (Runner's wait for a sync thread fits in); a claim in flight, runners cancelled
# after that and the loops' last turn get END_SECONDS each. None is spent when nothing hangs.
CUT_SECONDS = 3.0
END_SECONDS = 1.0


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
        self.vault = Vault.from_settings(settings)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.pools = Pools(
            run_pool=ThreadPoolExecutor(
                settings.max_concurrent_runs, thread_name_prefix="conversation-run"
            ),
            tool_pool=ThreadPoolExecutor(settings.tool_pool_size, thread_name_prefix="tool"),
        )
        # Each append is one short statement: a few connections serve many runs.
        self.appender = appender(db, max_connections=max(2, min(settings.max_concurrent_runs, 8)))
        self.runners: dict[uuid.UUID, Runner] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._control_wake = asyncio.Event()
        self._stopping = False  # no more claims
        self._stopped = asyncio.Event()
        self._closing = False  # the runners are done: the control loop ends too

    async def start(self, listener: Listener | None = None) -> None:
        """`listener` (Postgres): other processes' queued runs and flags arrive through it."""
        if listener is not None:
            await listener.subscribe(RUNS_CHANNEL, self._on_runs_notice, self.claim_now)
        await self.appender.open()
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="run-claimer"),
            asyncio.create_task(self._sweep_loop(), name="run-sweeper"),
            asyncio.create_task(self._control_loop(), name="run-control"),
        ]

    async def stop(self) -> None:
        """Give every run back, then end the loops at their next turn (not in the middle of a
        query). Stop claiming now; ask each runner to end at its next step boundary; after
        shutdown_grace_seconds cut off the steps still going. Each runner then gives its run
        back (see Runner): queued again, or paused if a tool call was cut off. Leases are
        renewed meanwhile. A runner that does not end even then is cancelled: its lease lapses
        and the sweeper of a live process fails the run as worker_lost. Returns within grace +
        CUT_SECONDS + 3 * END_SECONDS (and the appender's close) whatever the runs do."""
        self._stopping = True
        self._stopped.set()
        self._wake.set()
        claimer = self._loops[:1]
        if claimer:  # a claim in flight launches its runs, which are then given back too
            await asyncio.wait(claimer, timeout=END_SECONDS)
        for runner in list(self.runners.values()):
            runner.give_back()
        pending = await self._wait_runs(self.settings.shutdown_grace_seconds)
        if pending:
            logger.warning("shutdown: cutting off %d runs still in a step", len(pending))
            for runner in list(self.runners.values()):
                runner.cut()
            pending = await self._wait_runs(CUT_SECONDS)
        for task in pending:
            task.cancel()
        if pending:
            await self._wait_runs(END_SECONDS)
        self._closing = True
        self._control_wake.set()
        pending = {*self._loops, *self._tasks}
        if pending:
            _done, pending = await asyncio.wait(pending, timeout=END_SECONDS)
        for task in pending:
            task.cancel()
        if pending:
            logger.error("worker stop: %d tasks did not end", len(pending))
        self.pools.run_pool.shutdown(wait=False, cancel_futures=True)
        self.pools.tool_pool.shutdown(wait=False, cancel_futures=True)
        await self.appender.close()

    async def _wait_runs(self, seconds: float) -> set[asyncio.Task[None]]:
        """Wait up to `seconds` for the runner tasks; returns those still going."""
        if not self._tasks:
            return set()
        _done, pending = await asyncio.wait(set(self._tasks), timeout=seconds)
        return pending

    def claim_now(self) -> None:
        """A run may have been queued: the claimer looks now, not at its next poll."""
        self._wake.set()

    def check_flags_now(self, run_id: uuid.UUID) -> None:
        """A control flag of `run_id` may have changed: if this process runs it, the control
        loop reads the flags now."""
        if run_id in self.runners:
            self._control_wake.set()

    def run_changed(self, run_id: uuid.UUID | None) -> None:
        """A run was queued, or a running run's flag set: claim and check flags now."""
        self.claim_now()
        if run_id is not None:
            self.check_flags_now(run_id)

    def _on_runs_notice(self, payload: str) -> None:
        """A NOTIFY on RUNS_CHANNEL from any process (payload: a run id)."""
        try:
            run_id: uuid.UUID | None = uuid.UUID(payload)
        except ValueError:
            run_id = None
        self.run_changed(run_id)

    async def _claim_loop(self) -> None:
        try:
            # The agent classes (and litellm) load in the background: the server starts
            # that load once its own start-up is done.
            await AGENTS.wait(start=False)
        except Exception:
            logger.error("the agents could not be loaded: this process claims no runs")
            return
        while not self._stopping:
            try:
                free = self.settings.max_concurrent_runs - len(self.runners)
                if free > 0:
                    leases = await self._claim(free)
                    for lease in leases:
                        self._launch(lease)
                    if len(leases) == free:
                        continue
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("claiming runs failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.worker_poll_seconds)
            self._wake.clear()

    async def _claim(self, limit: int) -> list[Lease]:
        """Claim up to `limit` queued runs, oldest first, in one short write."""
        async with self.db.session(write=False) as session:
            if not await repository.any_queued(session):
                return []
        async with self.db.session(write=True) as session:
            # The conversation shows `running` from the start of its run (queued or not).
            return await repository.claim(
                session, self.worker_id, self.settings.run_lease_seconds, utcnow(), limit
            )

    async def _control_loop(self) -> None:
        """For every run this process holds, in one query each: read pause/interrupt flags
        (set by any process) every control_poll_seconds, renew leases every third of them.
        It goes on through a shutdown until the runs are given back."""
        renew_every = self.settings.run_lease_seconds / 3
        next_renewal = time.monotonic() + renew_every
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._control_wake.wait(), self.settings.control_poll_seconds
                )
            self._control_wake.clear()
            runners = list(self.runners.values())
            if not runners or self._closing:
                continue
            try:
                async with self.db.session(write=False) as session:
                    flags = await repository.control_flags(session, [r.run_id for r in runners])
                for runner in runners:
                    runner.apply(flags.get(runner.run_id))
                if time.monotonic() >= next_renewal:
                    await self._renew([r for r in runners if r.run_id in flags])
                    next_renewal = time.monotonic() + renew_every
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup: try again; the leases cover a while
                logger.exception("run control check failed; retrying")

    async def _renew(self, runners: list[Runner]) -> None:
        async with self.db.session(write=True) as session:
            renewed = await repository.renew_many(
                session, [r.lease for r in runners], self.settings.run_lease_seconds, utcnow()
            )
        for runner in runners:
            if runner.run_id not in renewed:
                runner.lose()

    def _launch(self, lease: Lease) -> None:
        runner = Runner(
            db=self.db,
            settings=self.settings,
            lease=lease,
            resolve_agent=resolve_agent,
            pools=self.pools,
            appender=self.appender,
            vault=self.vault,
        )
        self.runners[lease.run_id] = runner
        if self._stopping:  # claimed as the shutdown began
            runner.give_back()
        task = asyncio.create_task(runner.run(), name=f"run-{lease.run_id}")
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            self.runners.pop(lease.run_id, None)
            self._wake.set()

        task.add_done_callback(done)

    async def _sweep_loop(self) -> None:
        while not self._stopping:
            try:
                await sweep_once(self.db)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("sweeping expired runs failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), self.settings.sweeper_interval_seconds)
