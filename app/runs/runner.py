"""The runner: drives one claimed run, step by step, holding its lease.

No transaction is held across a step: each write (events, iteration count, LLM usage, the
final status) is its own short transaction that first checks the lease (fencing). A runner
whose lease was lost writes nothing more and stops.

On shutdown the worker asks each runner to give its run back at the next step boundary
(`give_back`), and cuts off the steps still going when the grace runs out (`cut`): the run
goes back to the queue, or is paused when a tool call was cut off (see `_finish`).
"""

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from app.agent.base import AgentBase, Interrupted, LLMCallRecord, StepContext, StepOutcome
from app.agent.confirmation import confirms_actions
from app.agent.context import ANSWER_KINDS
from app.clock import utcnow
from app.config import Settings
from app.conversations.repository import lock_conversation
from app.conversations.state import record_full_state, transition
from app.db.session import Database
from app.events import service as events_service
from app.events.schemas import AgentErrorEvent, ConversationErrorEvent, EventBase
from app.events.service import event_row, row_to_json
from app.models import Conversation, ExecutionStatus, Run, RunStatus
from app.runs import hot_write, repository, usage
from app.runs.repository import ControlFlags, Lease, set_stats
from app.runs.stops import (
    CUT_OFF,
    FINISHED,
    GIVE_BACK,
    INTERRUPTED,
    MAX_ITERATIONS,
    PAUSED,
    WAITING,
    Stop,
    failed,
    unanswered,
)
from app.skills import service as skills_service
from app.vault.redact import REDACTOR
from app.vault.service import Vault
from app.workspace.paths import resolve

logger = logging.getLogger(__name__)
T = TypeVar("T")
MAX_STEP_TIMINGS = 1000
# A sync agent's thread that is cut off gets this long to reach an interruption check; one
# stuck in a blocking call (a sync LLM call, a tool) is then left behind, its writes refused.
SYNC_CUT_WAIT_SECONDS = 1.0


class LeaseLost(Exception):
    """The run's lease is no longer ours: stop, write nothing."""


class MoreInput(Exception):
    """A user message arrived while the agent was finishing: keep going."""


async def _whole(work: Awaitable[T]) -> tuple[T, bool]:
    """Await `work` to its end even if cancelled meanwhile, so a write lands or not as a whole
    and the caller learns which. Returns the result and whether a cancellation came: the
    caller records what the write did, then goes on with the cancellation."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while True:
        try:
            return await asyncio.shield(task), cancelled
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            cancelled = True


def _retrieve(future: "asyncio.Future[Any]") -> None:
    """Mark the outcome of a thread as seen: one left behind at shutdown may end in an
    error (its writes are refused) that nobody awaits any more."""
    if not future.cancelled():
        future.exception()


@dataclass
class Pools:
    run_pool: ThreadPoolExecutor
    tool_pool: ThreadPoolExecutor


class Runner:
    def __init__(
        self,
        *,
        db: Database,
        settings: Settings,
        lease: Lease,
        resolve_agent: Callable[[dict[str, Any]], type[AgentBase]],
        pools: Pools,
        hot: hot_write.HotWriter,
        vault: Vault,
    ) -> None:
        self.db = db
        self.vault = vault
        self._hidden: list[str] = []  # this run's credentials, redacted from logs meanwhile
        self.hot = hot
        self.settings = settings
        self.lease = lease
        self.resolve_agent = resolve_agent
        self.pools = pools
        self._pause = False
        self._lost = False
        self._give_back = False  # shutting down: stop at the next step boundary
        self._cut = asyncio.Event()  # the shutdown grace ran out: the step is cut off
        self._closed = False  # no more step writes (a sync thread that was left behind)
        self._writing = 0  # step writes in flight
        self._written = asyncio.Event()  # set while none is
        self._written.set()
        self._step_task: asyncio.Future[StepOutcome] | None = None
        self._ctx: StepContext | None = None
        self._open_actions: dict[str, str] = {}  # tool_call_id -> tool_name
        self._user_seq = 0  # the last user message taken into the context
        self._known_seq = 0  # the conversation's last seq as this runner last saw it
        self._agent: AgentBase | None = None
        self._history: list[dict[str, Any]] | None = None
        # Per step: [ms the runner waited on the database, ms the database worked for it]
        self._db_ms = 0.0
        self._db_busy_ms = 0.0
        self._step_db_ms: list[list[float]] = []
        self._iterations = 0
        self._pending_calls: list[LLMCallRecord] = []
        self._stats: dict[str, Any] = usage.start(None)
        self._timings_written: list[list[float]] | None = None

    # ---- database writes, each fenced by the lease -------------------------------------

    async def _fenced(
        self, work: Callable[[AsyncSession, dict[str, Any] | None], Awaitable[T]]
    ) -> T:
        """One short write transaction. It starts with the fence: an UPDATE of the run row
        that matches only while this lease is live (and, on Postgres, locks the row against
        the sweeper until commit); it also carries the iteration count and step timings. LLM
        calls recorded since the last write go in too, and `work` gets the new stats to set
        (None when unchanged)."""
        started = time.perf_counter()
        calls = list(self._pending_calls)
        stats = self._stats
        for call in calls:
            stats = usage.add(stats, call)
        try:
            async with self.db.session(write=True) as session:
                timings = self._step_db_ms
                held = await repository.hold(
                    session,
                    self.lease,
                    utcnow(),
                    iterations=self._iterations,
                    step_db_ms=None if timings is self._timings_written else list(timings),
                )
                if not held:
                    self._lost = True
                    raise LeaseLost(f"run {self.lease.run_id} lost its lease")
                if calls:
                    await usage.insert_calls(session, self.lease, calls)
                result = await work(session, stats if calls else None)
        finally:
            self._db_ms += (time.perf_counter() - started) * 1000
        del self._pending_calls[: len(calls)]
        self._stats = stats
        self._timings_written = timings
        return result

    async def _persist(self, events: Sequence[EventBase]) -> list[dict[str, Any]]:
        """Append events in one fenced trip (see hot_write), with the LLM calls recorded since
        the last write, the new stats, the iteration count and the step timings."""
        if self._closed:
            raise Interrupted("the run was given back: its step writes nothing more")
        self._writing += 1
        self._written.clear()
        try:
            return await self._append(events)
        finally:
            self._writing -= 1
            if not self._writing:
                self._written.set()

    async def _append(self, events: Sequence[EventBase]) -> list[dict[str, Any]]:
        started = time.perf_counter()
        calls = list(self._pending_calls)
        stats = self._stats
        for call in calls:
            stats = usage.add(stats, call)
        timings = self._step_db_ms
        rows = [event_row(event) for event in events]
        job = hot_write.Append(
            lease=self.lease,
            now=utcnow(),
            iterations=self._iterations,
            events=rows,
            step_db_ms=None if timings is self._timings_written else list(timings),
            stats=stats if calls else None,
            calls=[usage.call_row(call) for call in calls],
        )
        # An interrupt cancels the step, never the write half-way: the write lands or not as
        # a whole and the runner learns which (its open actions decide the AgentErrorEvents
        # written at the end), then the cancellation goes on.
        try:
            written, cancelled = await _whole(self.hot.append(job))
        finally:
            self._db_ms += (time.perf_counter() - started) * 1000
        if written is None:
            self._lost = True
            raise LeaseLost(f"run {self.lease.run_id} lost its lease")
        last_seq, stamp, db_ms = written
        self._db_busy_ms += db_ms
        del self._pending_calls[: len(calls)]
        self._stats = stats
        self._timings_written = timings
        first = last_seq - len(rows) + 1
        if first - 1 == self._known_seq:  # nothing else was appended since we last looked
            self._known_seq = last_seq
        stored = [
            row_to_json((r["kind"], r["id"], first + i, stamp, r["source"], r["payload"]))
            for i, r in enumerate(rows)
        ]
        for event in stored:
            self._track(event)
        if cancelled:
            raise asyncio.CancelledError()
        return stored

    async def _record(self, record: LLMCallRecord) -> None:
        """Kept in memory; written with the next events (or when the run ends)."""
        self._pending_calls.append(record)

    def _track(self, event: dict[str, Any]) -> None:
        call_id = event.get("tool_call_id")
        if not call_id:
            return
        if event["kind"] == "ActionEvent":
            self._open_actions[call_id] = event.get("tool_name") or ""
        elif event["kind"] in ANSWER_KINDS:
            self._open_actions.pop(call_id, None)

    # ---- the run ----------------------------------------------------------------------

    async def run(self) -> None:
        try:
            stop = await self._guarded(self._start)
            while True:
                try:
                    await self._finish(stop)
                    break
                except MoreInput:  # a user message came in as the agent finished: go on
                    stop = await self._guarded(self._loop)
        except LeaseLost as exc:
            logger.warning("%s; stopping without further writes", exc)
        except Exception:
            # Could not record the end (the database is unreachable, say): the lease runs
            # out and the sweeper of some process fails the run as worker_lost.
            logger.exception("run %s: could not record its end", self.lease.run_id)
        finally:
            REDACTOR.discard(self._hidden)

    async def _guarded(self, body: Callable[[], Awaitable[Stop]]) -> Stop:
        try:
            return await body()
        except (LeaseLost, asyncio.CancelledError):
            raise
        except Interrupted:
            return self._interrupted()
        except Exception as exc:
            logger.exception("run %s failed", self.lease.run_id)
            return failed(f"{type(exc).__name__}: {exc}")

    async def _start(self) -> Stop:
        conversation, history = await self._load()
        self._stats = usage.start(conversation.stats)
        agent_cls = self.resolve_agent(conversation.agent)
        spec, secret_values, environment = self.vault.unseal_for_run(
            conversation.agent, conversation.secrets
        )
        self._hidden += REDACTOR.add(secret_values)
        self._agent = agent_cls(spec, self.settings)
        self._ctx = self._context(conversation, await self._workspace(conversation))
        self._ctx.env = environment
        prompt = await skills_service.system_prompt_for_run(self.db, self._agent, history)
        if prompt is not None:
            history += await self._persist([prompt])
        for event in history:
            self._track(event)
        self._user_seq = max((int(e["seq"]) for e in history), default=0)
        self._known_seq = max(self._known_seq, self._user_seq)
        self._history = history
        return await self._loop()

    async def _loop(self) -> Stop:
        agent, ctx = self._agent, self._ctx
        assert agent is not None and ctx is not None
        history, self._history = self._history, None
        if type(agent).runs_on_loop():
            if history is not None:
                agent.init_context(ctx, history)
            return await self._async_loop(agent, ctx)
        return await self._in_thread(agent, ctx, history)

    async def _in_thread(
        self, agent: AgentBase, ctx: StepContext, history: list[dict[str, Any]] | None
    ) -> Stop:
        """A sync agent's loop on the run pool. Cut off at shutdown, its thread stops at its
        next interruption check; a thread stuck in a blocking call (a sync LLM call, a tool)
        cannot be stopped: it is left behind with its writes refused, and the run given back."""
        loop = asyncio.get_running_loop()
        thread = loop.run_in_executor(self.pools.run_pool, self._sync_loop, agent, ctx, history)
        thread.add_done_callback(_retrieve)  # it may end after the runner stopped waiting
        cut = asyncio.ensure_future(self._cut.wait())
        try:
            either: list[asyncio.Future[Any]] = [thread, cut]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if not thread.done():
                await asyncio.wait([thread], timeout=SYNC_CUT_WAIT_SECONDS)
        finally:
            cut.cancel()
        if thread.done():
            return thread.result()
        self._closed = True
        logger.warning("run %s: its step did not stop in time; giving it back", self.run_id)
        return GIVE_BACK

    async def _load(self) -> tuple[Conversation, list[dict[str, Any]]]:
        async with self.db.session(write=False) as session:
            conversation = await session.get(
                Conversation, self.lease.conversation_id, options=[undefer(Conversation.secrets)]
            )
            run = await session.get(Run, self.lease.run_id)
            if conversation is None or run is None:
                raise LeaseLost("conversation deleted")
            history = await events_service.history_after(session, conversation.id)
        # A run given back at a shutdown goes on counting (max_iterations is per run).
        self._iterations = run.iterations
        self._step_db_ms = list(run.step_db_ms or [])[-MAX_STEP_TIMINGS:]
        return conversation, history

    async def _workspace(self, conversation: Conversation) -> Path:
        """The tools' directory: the conversation's `workspace.working_dir` under the root,
        resolved (off the loop: it reads links), so a symlink cannot move it out; else
        <root>/<conversation id>."""
        working_dir = (conversation.options or {}).get("workspace", {}).get("working_dir")
        if not isinstance(working_dir, str):
            return self.settings.workspace_root / str(conversation.id)
        return await asyncio.to_thread(resolve, self.settings.workspace_root, working_dir)

    def _context(self, conversation: Conversation, workspace: Path) -> StepContext:
        return StepContext(
            conversation_id=conversation.id,
            run_id=self.lease.run_id,
            agent_spec=conversation.agent,
            settings=self.settings,
            workspace=workspace,
            max_iterations=conversation.max_iterations,
            iteration=self._iterations,
            confirm_actions=confirms_actions(conversation.confirmation_policy),
            loop=asyncio.get_running_loop(),
            tool_pool=self.pools.tool_pool,
            persist=self._persist,
            record=self._record,
        )

    async def _async_loop(self, agent: AgentBase, ctx: StepContext) -> Stop:
        while True:
            if self._give_back:
                return GIVE_BACK
            await self._take_new_user_messages(ctx)
            self._step_task = asyncio.ensure_future(agent.astep(ctx))
            try:
                outcome = await self._step_task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the worker is shutting down
                if self._lost:
                    raise LeaseLost(f"run {self.lease.run_id} lost its lease") from None
                return self._interrupted()
            finally:
                self._step_task = None
            stop = await self._after_step(ctx, outcome)
            if stop is not None:
                return stop

    def _sync_loop(
        self, agent: AgentBase, ctx: StepContext, history: list[dict[str, Any]] | None
    ) -> Stop:
        """The whole loop of a sync agent, on a run-pool thread."""
        if history is not None:
            agent.init_context(ctx, history)
        while True:
            if self._give_back:
                return GIVE_BACK
            self._on_loop(self._take_new_user_messages(ctx))
            outcome = agent.step(ctx)
            if self._lost:
                raise LeaseLost(f"run {self.lease.run_id} lost its lease")
            if ctx.interrupted.is_set():
                return self._interrupted()
            stop = self._on_loop(self._after_step(ctx, outcome))
            if stop is not None:
                return stop

    def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._ctx is not None
        return asyncio.run_coroutine_threadsafe(coro, self._ctx.loop).result()

    async def _take_new_user_messages(self, ctx: StepContext) -> None:
        """User messages sent while the run was going: appended to the context in memory.
        One cheap look at the conversation's last seq first; the events are read only when
        someone else appended since this runner last looked."""
        started = time.perf_counter()
        try:
            latest, db_ms = await self.hot.last_seq(self.lease.conversation_id)
            self._db_busy_ms += db_ms
            if latest is None or latest <= self._known_seq:
                return
            async with self.db.session(write=False) as session:
                new = await self._new_user_messages(session)
            self._known_seq = latest
        finally:
            self._db_ms += (time.perf_counter() - started) * 1000
        for event in new:
            self._user_seq = max(self._user_seq, int(event["seq"]))
            message = event["llm_message"]
            text = "\n".join(p.get("text", "") for p in message.get("content", []))
            ctx.messages.append({"role": "user", "content": text})

    async def _new_user_messages(self, session: AsyncSession) -> list[dict[str, Any]]:
        return await events_service.history_after(
            session,
            self.lease.conversation_id,
            self._user_seq,
            kinds=["MessageEvent"],
            source="user",
        )

    async def _after_step(self, ctx: StepContext, outcome: StepOutcome) -> Stop | None:
        """Count the step in memory; the next write (or the end of the run) records it."""
        timing = [round(self._db_ms, 3), round(self._db_busy_ms, 3)]
        self._step_db_ms = [*self._step_db_ms, timing][-MAX_STEP_TIMINGS:]
        self._db_ms = self._db_busy_ms = 0.0
        self._iterations += 1
        ctx.iteration = self._iterations
        if outcome.finished:
            return FINISHED
        if outcome.waiting:
            return WAITING
        if self._pause:
            return PAUSED
        if ctx.iteration >= ctx.max_iterations:
            return MAX_ITERATIONS
        return None

    async def _finish(self, stop: Stop) -> None:
        # A write of a sync step left behind may still be landing: its events count too.
        await self._written.wait()
        if stop is GIVE_BACK and self._open_actions:
            # A tool call was cut off: it may have run, in part or in full, or not at all. It
            # is never run again silently: the action gets an error and a person decides.
            stop = CUT_OFF
        # Actions waiting for confirmation stay open: the user accepts or rejects them.
        dangling: list[EventBase] = [
            AgentErrorEvent(
                error=unanswered(tool or "tool", stop), tool_name=tool or "", tool_call_id=call_id
            )
            for call_id, tool in self._open_actions.items()
            if stop is not WAITING
        ]
        if stop.error is not None:
            dangling.append(ConversationErrorEvent(code="RunFailed", detail=stop.error))

        async def write(session: AsyncSession, stats: dict[str, Any] | None) -> None:
            if stats is not None:
                await set_stats(session, self.lease.conversation_id, stats)
            if stop is FINISHED:
                # Under the conversation's row lock (SQLite: the write lock), so a user message
                # is either seen here or appended after this run has ended, when `run: true`
                # starts a new run.
                await lock_conversation(session, self.lease.conversation_id)
                if await self._new_user_messages(session):
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
            moved = await transition(
                session,
                self.lease.conversation_id,
                stop.conversation_status,
                allowed_from=(ExecutionStatus.RUNNING,),
            )
            if moved:
                await record_full_state(session, self.lease.conversation_id)

        # Like the step's writes, the last one is never cut in half by a cancellation.
        _, cancelled = await _whole(self._fenced(write))
        if stop.stop_reason == "shutdown":
            logger.info("run %s given back: %s", self.run_id, stop.run_status.value)
        if cancelled:
            raise asyncio.CancelledError()

    # ---- control: lease renewal, pause, interrupt, shutdown -----------------------------

    def apply(self, flags: ControlFlags | None) -> None:
        """Control flags read by the worker for all its runs at once."""
        if (
            flags is None
            or flags.status != RunStatus.RUNNING.value
            or flags.lease_epoch != self.lease.epoch
        ):
            self.lose()
        else:
            if flags.interrupt_requested:
                self._interrupt()
            if flags.pause_requested:
                self._pause = True

    def _interrupt(self) -> None:
        if self._ctx is not None:
            self._ctx.interrupted.set()
        if self._step_task is not None and not self._step_task.done():
            self._step_task.cancel()

    def lose(self) -> None:
        self._lost = True
        self._interrupt()

    def give_back(self) -> None:
        """Shutdown: end at the next step boundary (after pause, max_iterations and finish,
        which take precedence) and give the run back to the queue."""
        self._give_back = True

    def cut(self) -> None:
        """Shutdown, the grace ran out: cut the step off (as an interrupt does), then give
        the run back."""
        self._give_back = True
        self._cut.set()
        self._interrupt()

    def _interrupted(self) -> Stop:
        return GIVE_BACK if self._cut.is_set() else INTERRUPTED

    @property
    def run_id(self) -> uuid.UUID:
        return self.lease.run_id
