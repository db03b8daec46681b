"""The agent interface and the context a step runs in.

An agent implements `step(ctx)` (sync) or overrides `astep(ctx)` (async). The runner
dispatches by capability: an agent class that overrides `astep` runs natively on the event
loop; one that only implements `step` runs its whole loop on the dedicated run pool, so its
`step()` and the callbacks it makes (`ctx.emit_sync`, tools) never run on the loop thread and
never on the default executor.
"""

import asyncio
import threading
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from app.config import Settings
from app.events.schemas import EventBase

T = TypeVar("T")


@dataclass
class StepOutcome:
    """What a step tells the runner: whether the agent has finished the task."""

    finished: bool = False
    # The step recorded actions that wait for the user's confirmation (not run yet).
    waiting: bool = False


class Interrupted(Exception):
    """Raised inside a step when the user interrupted the run."""


@dataclass
class LLMCallRecord:
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None
    latency_ms: float
    error: str | None = None


@dataclass
class StepContext:
    conversation_id: uuid.UUID
    run_id: uuid.UUID
    agent_spec: dict[str, Any]
    settings: Settings
    workspace: Path
    max_iterations: int
    loop: asyncio.AbstractEventLoop
    tool_pool: ThreadPoolExecutor
    persist: Callable[[Sequence[EventBase]], Coroutine[Any, Any, list[dict[str, Any]]]]
    record: Callable[[LLMCallRecord], Coroutine[Any, Any, None]]
    iteration: int = 0
    # The LLM context: built once per run from the stored events, then extended in memory.
    messages: list[dict[str, Any]] = field(default_factory=list)
    interrupted: threading.Event = field(default_factory=threading.Event)
    # Confirmation mode: actions wait for the user before they run (the conversation's
    # confirmation policy when the run started). `pending`: the stored actions the user
    # accepted by running again, to run before the next LLM call (set by init_context).
    confirm_actions: bool = False
    # The conversation's environment secrets (for the terminal tool), read when the run started.
    env: Mapping[str, str] | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)

    async def emit(self, *events: EventBase) -> list[dict[str, Any]]:
        """Persist events now (fenced by the run's lease); returns them as stored."""
        return await self.persist(events)

    def emit_sync(self, *events: EventBase) -> list[dict[str, Any]]:
        """emit() for sync agents, from their run-pool thread."""
        return self._on_loop(self.persist(events))

    async def record_llm_call(self, record: LLMCallRecord) -> None:
        await self.record(record)

    def record_llm_call_sync(self, record: LLMCallRecord) -> None:
        self._on_loop(self.record(record))

    async def run_tool(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking tool on the tool pool (never the run pool or the loop)."""
        return await self.loop.run_in_executor(self.tool_pool, fn, *args)

    def submit_tool(self, fn: Callable[..., T], *args: Any) -> "Future[T]":
        """Start a blocking tool on the tool pool from a sync agent; wait on the future."""
        return self.tool_pool.submit(fn, *args)

    def check_interrupted(self) -> None:
        if self.interrupted.is_set():
            raise Interrupted()

    def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            on_loop = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            coro.close()
            raise RuntimeError("a *_sync callback was called on the event loop; await it instead")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


class AgentBase:
    """Base class of every agent kind."""

    kind: ClassVar[str] = "AgentBase"

    def __init__(self, spec: dict[str, Any], settings: Settings) -> None:
        self.spec = spec
        self.settings = settings

    def init_context(self, ctx: StepContext, history: list[dict[str, Any]]) -> None:
        """Build ctx.messages from the stored events, once per run. Default: nothing."""

    def system_prompt_event(self) -> EventBase | None:
        """The SystemPromptEvent to record before the first step of a conversation."""
        return None

    def step(self, ctx: StepContext) -> StepOutcome:
        raise NotImplementedError(f"{type(self).__name__} implements neither step nor astep")

    async def astep(self, ctx: StepContext) -> StepOutcome:
        """Default: run the sync step in a thread. The runner never uses this default for
        sync-only agents (it runs their whole loop on the run pool instead)."""
        return await asyncio.to_thread(self.step, ctx)

    @classmethod
    def runs_on_loop(cls) -> bool:
        """True when the class overrides astep: it runs natively on the event loop."""
        return cls.astep is not AgentBase.astep


_REGISTRY: dict[str, type[AgentBase]] = {}
DEFAULT_AGENT_KIND = "LLMAgent"
# Known without importing them (litellm loads only in processes that run agents).
BUILTIN_AGENT_KINDS = frozenset({"LLMAgent", "SyncLLMAgent", "Agent"})


def register_agent(cls: type[AgentBase]) -> type[AgentBase]:
    _REGISTRY[cls.kind] = cls
    return cls


def agent_class(kind: str) -> type[AgentBase] | None:
    return _REGISTRY.get(kind)


def agent_kinds() -> list[str]:
    return sorted(BUILTIN_AGENT_KINDS | set(_REGISTRY))
