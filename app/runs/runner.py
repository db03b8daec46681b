"""The runner: drives one claimed run, step by step, holding its lease.

No transaction is held across a step: each write is its own short transaction that first
checks the lease (see runs.journal). A runner whose lease was lost writes nothing more and
stops.

On shutdown the worker asks each runner to give its run back at the next step boundary
(`give_back`), and cuts off the steps still going when the grace runs out (`cut`): the run
goes back to the queue, or is paused when a tool call was cut off (see `_finish`).
"""

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from app.agent.base import AgentBase, Interrupted, StepContext, StepOutcome
from app.agent.confirmation import confirms_actions
from app.config import Settings
from app.db.session import Database
from app.events import service as events_service
from app.models import Conversation, Run, RunStatus
from app.runs import repository
from app.runs.fenced_append import Appender
from app.runs.journal import Journal, LeaseLost, MoreInput
from app.runs.repository import ControlFlags, Lease
from app.runs.stops import (
    FINISHED,
    GIVE_BACK,
    INTERRUPTED,
    MAX_ITERATIONS,
    PAUSED,
    WAITING,
    Stop,
    failed,
)
from app.skills import service as skills_service
from app.vault.redact import REDACTOR
from app.vault.service import Vault
from app.workspace.paths import resolve

logger = logging.getLogger(__name__)
T = TypeVar("T")
# A sync agent's thread that is cut off gets this long to reach an interruption check; one
# stuck in a blocking call (a sync LLM call, a tool) is then left behind, its writes refused.
SYNC_CUT_WAIT_SECONDS = 1.0


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
    """The step loop of one claimed run, and its control state: pause, interrupt, lease
    lost, give back (shutdown) and cut off (the shutdown's grace ran out). Every write goes
    through the run's journal."""

    def __init__(
        self,
        *,
        db: Database,
        settings: Settings,
        lease: Lease,
        resolve_agent: Callable[[dict[str, Any]], type[AgentBase]],
        pools: Pools,
        appender: Appender,
        vault: Vault,
    ) -> None:
        self.db = db
        self.vault = vault
        self._hidden: list[str] = []  # this run's credentials, redacted from logs meanwhile
        self.settings = settings
        self.lease = lease
        self.resolve_agent = resolve_agent
        self.pools = pools
        self.journal = Journal(db, appender, lease)
        self._pause = False
        self._give_back = False  # shutting down: stop at the next step boundary
        self._cut = asyncio.Event()  # the shutdown grace ran out: the step is cut off
        self._step_task: asyncio.Future[StepOutcome] | None = None
        self._ctx: StepContext | None = None
        self._user_seq = 0  # the last user message taken into the context
        self._agent: AgentBase | None = None
        self._history: list[dict[str, Any]] | None = None

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
        conversation, run, history = await self._load()
        agent_cls = self.resolve_agent(conversation.agent)
        spec, secret_values, environment = self.vault.unseal_for_run(
            conversation.agent, conversation.secrets
        )
        self._hidden += REDACTOR.add(secret_values)
        self._agent = agent_cls(spec, self.settings)
        self.journal.resume(run.iterations, conversation.stats, history)
        self._ctx = self._context(conversation, await self._workspace(conversation))
        self._ctx.env = environment
        prompt = await skills_service.system_prompt_for_run(self.db, self._agent, history)
        if prompt is not None:
            history += await self.journal.append([prompt])
        self._user_seq = max((int(e["seq"]) for e in history), default=0)
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
        self.journal.close()
        logger.warning("run %s: its step did not stop in time; giving it back", self.run_id)
        return GIVE_BACK

    async def _load(self) -> tuple[Conversation, Run, list[dict[str, Any]]]:
        async with self.db.session(write=False) as session:
            loaded = await repository.load_for_run(session, self.lease)
            if loaded is None:
                raise LeaseLost("conversation deleted")
            history = await events_service.read_after(session, self.lease.conversation_id)
        return *loaded, history

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
            iteration=self.journal.iterations,
            confirm_actions=confirms_actions(conversation.confirmation_policy),
            loop=asyncio.get_running_loop(),
            tool_pool=self.pools.tool_pool,
            persist=self.journal.append,
            record=self.journal.record,
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
                if self.journal.lost:
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
            if self.journal.lost:
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
        """User messages sent while the run was going: appended to the context in memory."""
        for event in await self.journal.user_messages(self._user_seq):
            self._user_seq = max(self._user_seq, int(event["seq"]))
            message = event["llm_message"]
            text = "\n".join(p.get("text", "") for p in message.get("content", []))
            ctx.messages.append({"role": "user", "content": text})

    async def _after_step(self, ctx: StepContext, outcome: StepOutcome) -> Stop | None:
        """Count the step (the next write records it); the stop it leads to, if any."""
        self.journal.end_step()
        ctx.iteration = self.journal.iterations
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
        stop = await self.journal.finish(stop, self._user_seq)
        if stop.stop_reason == "shutdown":
            logger.info("run %s given back: %s", self.run_id, stop.run_status.value)

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
        self.journal.lost = True
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
