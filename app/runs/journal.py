"""A run's journal: every write a run makes, each fenced by its lease.

One journal per lease. It holds what the run has to write (the iteration count, the LLM
calls and the conversation's stats they add up to, the actions not answered yet) and writes
it in two ways, both starting with the fence (an UPDATE of the run row that matches only
while this lease is live), so a runner whose lease was lost writes nothing more:

- `append`: a step's events, in one trip (runs.fenced_append), with the LLM calls recorded
  since the last write, the new stats and the iteration count;
- `finish`: the run's end (or its return to the queue at a shutdown), in one ORM
  transaction: the errors of unanswered actions, the run's status, the conversation's.

A write is never cut in half by a cancellation: it lands or not as a whole, and the journal
learns which before the cancellation goes on.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.agent.base import Interrupted, LLMCallRecord
from app.agent.context import OpenActions
from app.clock import utcnow
from app.conversations.repository import lock_conversation
from app.conversations.state import record_full_state, set_execution_status
from app.db.session import Database
from app.events import service as events_service
from app.events.schemas import AgentErrorEvent, ConversationErrorEvent, EventBase
from app.events.service import event_row, stored_as_shown
from app.metrics import RUN_LEASES_LOST, STEP_DB_SECONDS
from app.models import ExecutionStatus
from app.runs import repository, usage
from app.runs.fenced_append import Appender, FencedAppend
from app.runs.repository import Lease
from app.runs.stops import CUT_OFF, FINISHED, GIVE_BACK, WAITING, Stop, unanswered

T = TypeVar("T")


class LeaseLost(Exception):
    """The run's lease is no longer ours: stop, write nothing."""


class MoreInput(Exception):
    """A user message arrived while the agent was finishing: keep going."""


async def complete_despite_cancel(work: Awaitable[T]) -> tuple[T, bool]:
    """Await `work` to its end even if the caller is cancelled meanwhile, and say whether it
    was: the caller records what the write did, then raises the cancellation."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while True:
        try:
            return await asyncio.shield(task), cancelled
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            cancelled = True


class Journal:
    def __init__(self, db: Database, appender: Appender, lease: Lease) -> None:
        self.db = db
        self.appender = appender
        self.lease = lease
        self.iterations = 0  # a run given back at a shutdown goes on counting
        self.stats: dict[str, Any] = usage.start(None)
        self.open_actions = OpenActions()
        self._lost = False
        self._loss_counted = False
        self._ending = False  # the run's end (or give-back) is being written
        self._known_seq = 0  # the conversation's last seq as this run last saw it
        self._calls: list[LLMCallRecord] = []  # recorded, not written yet
        self._closed = False  # no more step writes (a sync thread was left behind)
        self._writing = 0  # step writes in flight
        self._settled = asyncio.Event()  # set while none is
        self._settled.set()
        self._wait_ms = 0.0  # this step's wall time on database calls
        self._work_ms = 0.0  # the database's own time on them

    def resume(self, iterations: int, stats: dict[str, Any] | None, history: Sequence[Any]) -> None:
        """Start from the stored run and conversation, and the events so far."""
        self.iterations = iterations
        self.stats = usage.start(stats)
        for event in history:
            self.open_actions.see(event)
        self._known_seq = max((int(e["seq"]) for e in history), default=0)

    async def record(self, call: LLMCallRecord) -> None:
        """Kept in memory; written with the next events (or when the run ends). Counted in
        the metrics now, once per call."""
        usage.observe(call)
        self._calls.append(call)

    @property
    def lost(self) -> bool:
        return self._lost

    @lost.setter
    def lost(self, value: bool) -> None:
        """The runner found the lease gone (the worker's renewal was refused, or the run
        shows another status or epoch). Once the run's end is being written that is the end
        itself, seen early, not a loss: not counted then."""
        if value and not self._ending:
            self._count_loss()
        self._lost = value

    def _count_loss(self) -> None:
        if not self._loss_counted:
            self._loss_counted = True
            RUN_LEASES_LOST.inc()

    def _lose(self) -> LeaseLost:
        """A fenced write was refused: the lease is gone for certain."""
        self._count_loss()
        self._lost = True
        return LeaseLost(f"run {self.lease.run_id} lost its lease")

    def _take_calls(self) -> tuple[list[LLMCallRecord], dict[str, Any]]:
        """The calls to write now and the stats with them."""
        calls = list(self._calls)
        stats = self.stats
        for call in calls:
            stats = usage.add(stats, call)
        return calls, stats

    def _written(self, calls: list[LLMCallRecord], stats: dict[str, Any]) -> None:
        del self._calls[: len(calls)]
        self.stats = stats

    # ---- a step's events, in one trip ---------------------------------------------------

    async def append(self, events: Sequence[EventBase]) -> list[dict[str, Any]]:
        """Append events (the step context's `persist`); returns them as stored."""
        if self._closed:
            raise Interrupted("the run was given back: its step writes nothing more")
        self._writing += 1
        self._settled.clear()
        try:
            return await self._append(events)
        finally:
            self._writing -= 1
            if not self._writing:
                self._settled.set()

    async def _append(self, events: Sequence[EventBase]) -> list[dict[str, Any]]:
        started = time.perf_counter()
        calls, stats = self._take_calls()
        rows = [event_row(event) for event in events]
        job = FencedAppend(
            lease=self.lease,
            now=utcnow(),
            iterations=self.iterations,
            events=rows,
            stats=stats if calls else None,
            calls=[usage.call_row(call) for call in calls],
        )
        try:
            appended, cancelled = await complete_despite_cancel(self.appender.append(job))
        finally:
            self._wait_ms += (time.perf_counter() - started) * 1000
        if appended is None:
            raise self._lose()
        self.db.announce({self.lease.conversation_id: appended.last_seq})
        self._work_ms += appended.db_ms
        self._written(calls, stats)
        if appended.last_seq - len(rows) == self._known_seq:  # none appended since our look
            self._known_seq = appended.last_seq
        stored = stored_as_shown(job.event_rows(appended.last_seq, appended.timestamp))
        for event in stored:
            self.open_actions.see(event)
        if cancelled:
            raise asyncio.CancelledError()
        return stored

    def close(self) -> None:
        """Refuse the step writes still to come (of a sync thread left behind)."""
        self._closed = True

    # ---- reads between steps ------------------------------------------------------------

    async def user_messages(self, after_seq: int) -> list[dict[str, Any]]:
        """User messages after `after_seq`. One cheap look at the conversation's last seq
        first: the events are read only when someone else appended since the last look."""
        started = time.perf_counter()
        try:
            latest, db_ms = await self.appender.last_seq(self.lease.conversation_id)
            self._work_ms += db_ms
            if latest is None or latest <= self._known_seq:
                return []
            async with self.db.session(write=False) as session:
                new = await self._user_messages(session, after_seq)
            self._known_seq = latest
            return new
        finally:
            self._wait_ms += (time.perf_counter() - started) * 1000

    async def _user_messages(self, session: AsyncSession, after_seq: int) -> list[dict[str, Any]]:
        return await events_service.read_after(
            session, self.lease.conversation_id, after_seq, kinds=["MessageEvent"], source="user"
        )

    def end_step(self) -> None:
        """Count the step in memory (the next write records it) and its database time."""
        STEP_DB_SECONDS.labels("wait").observe(self._wait_ms / 1000)
        STEP_DB_SECONDS.labels("work").observe(self._work_ms / 1000)
        self._wait_ms = self._work_ms = 0.0
        self.iterations += 1

    # ---- the end ------------------------------------------------------------------------

    async def finish(self, stop: Stop, user_seq: int) -> Stop:
        """Record how the run ended, in one fenced transaction; returns the stop recorded
        (a shutdown that cut a tool call off pauses the run instead). Raises MoreInput when
        the run finished but a user message after `user_seq` came in meanwhile."""
        self._ending = True
        await self._settled.wait()  # a write of a sync step left behind may still land
        if stop is GIVE_BACK and self.open_actions:
            # A tool call was cut off: it may have run, in part or in full, or not at all. It
            # is never run again silently: the action gets an error and a person decides.
            stop = CUT_OFF
        # Actions waiting for confirmation stay open: the user accepts or rejects them.
        dangling: list[EventBase] = [
            AgentErrorEvent(
                error=unanswered(tool or "tool", stop), tool_name=tool or "", tool_call_id=call_id
            )
            for call_id, tool in self.open_actions.items()
            if stop is not WAITING
        ]
        if stop.error is not None:
            dangling.append(ConversationErrorEvent(code="RunFailed", detail=stop.error))

        async def write(session: AsyncSession) -> None:
            if stop is FINISHED:
                # Under the conversation's row lock (SQLite: the write lock), so a user message
                # is either seen here or appended after this run has ended, when `run: true`
                # starts a new run.
                await lock_conversation(session, self.lease.conversation_id)
                if await self._user_messages(session, user_seq):
                    raise MoreInput()
            if dangling:
                await events_service.append(session, self.lease.conversation_id, dangling)
            if stop is GIVE_BACK:
                await repository.requeue(session, self.lease)
                return  # the conversation stays `running`: its run waits in the queue again
            await repository.finish(
                session,
                self.lease.run_id,
                status=stop.run_status,
                stop_reason=stop.stop_reason,
                error=stop.error,
                now=utcnow(),
                only_if_epoch=self.lease.epoch,
            )
            moved = await set_execution_status(
                session,
                self.lease.conversation_id,
                stop.conversation_status,
                allowed_from=(ExecutionStatus.RUNNING,),
            )
            if moved:
                await record_full_state(session, self.lease.conversation_id)

        try:
            _, cancelled = await complete_despite_cancel(self._transaction(write))
        except MoreInput:
            self._ending = False  # the run goes on
            raise
        if cancelled:
            raise asyncio.CancelledError()
        return stop

    async def _transaction(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """One ORM write transaction that starts with the fence and carries the iteration
        count, the LLM calls recorded since the last write and the new stats."""
        calls, stats = self._take_calls()
        async with self.db.session(write=True) as session:
            now = utcnow()
            if not await repository.hold(session, self.lease, now, iterations=self.iterations):
                raise self._lose()
            if calls:
                rows = [usage.call_row(call) for call in calls]
                await repository.insert_calls(session, usage.placed(rows, self.lease, now))
                await repository.set_stats(session, self.lease.conversation_id, stats)
            result = await work(session)
        self._written(calls, stats)
        return result
