"""Importing the built-in agents registers them; litellm is set up here, once per process.

litellm takes seconds to import, so a server loads it in the background (`AGENTS.start()`,
once start-up is done): `/health` answers at once, `/ready` and the run worker wait for it.
"""

import asyncio
import gc
import logging
import os
import threading
import time
from concurrent.futures import Future

from app.logging_config import route_litellm_logs

logger = logging.getLogger(__name__)


class AgentLoading:
    """The one background load of the built-in agents in this process (a daemon thread, so a
    process that stops meanwhile does not wait for it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = False
        # Its result: the seconds the load took. Running from the start, so cancelling a
        # waiter cannot cancel the load itself.
        self._future: Future[float] = Future()
        self._future.set_running_or_notify_cancel()

    def start(self) -> None:
        """Start loading unless it has begun."""
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._load, name="load-agents", daemon=True).start()

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            load_agents()
            # litellm brings a very large heap of long-lived objects: move it out of the
            # garbage collector's generations, so full collections under load stay short
            # (they stall the event loop, and every request with it).
            gc.collect()
            gc.freeze()
        except BaseException as exc:
            logger.error("loading the agents (litellm) failed: %s", exc, exc_info=exc)
            self._future.set_exception(exc)
        else:
            seconds = time.perf_counter() - started
            logger.info("start-up: agents and litellm loaded in %.2f s", seconds)
            self._future.set_result(seconds)

    @property
    def state(self) -> str:
        """ "not started", "loading", "loaded" or "failed"."""
        if not self._started:
            return "not started"
        if not self._future.done():
            return "loading"
        return "failed" if self._future.exception() is not None else "loaded"

    async def wait(self, start: bool = True) -> None:
        """Wait for the load (starting it first unless `start` is false); raises what the
        load raised."""
        if start:
            self.start()
        await asyncio.wrap_future(self._future)


AGENTS = AgentLoading()


def load_agents() -> None:
    """Import the built-in agents and set litellm up: slow (imports, file reads), so never on
    the event loop. Idempotent; `AGENTS` calls it once per process."""
    # Without network litellm would try to download its price map at import and retry for
    # seconds; the copy it ships is used instead unless the user chose otherwise.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import httpx
    import litellm

    import app.agent.llm_agent
    import app.agent.sdk_agent  # noqa: F401  (registers the OpenHands SDK's Agent)

    # litellm prints "Give Feedback / Get Help" banners on every failed call; errors reach
    # our logs and the run's events instead.
    litellm.suppress_debug_info = True
    route_litellm_logs()

    _warm_up(litellm)
    if litellm.aclient_session is None:
        # One shared HTTP client, built here: otherwise litellm builds one per new client
        # configuration on the event loop, reading CA files from disk while it does.
        litellm.aclient_session = httpx.AsyncClient(follow_redirects=True)


def _warm_up(litellm: object) -> None:
    """Run one call into a closed local port, in a throwaway loop: the first call imports
    the rest of litellm's and the OpenAI SDK's modules, which would otherwise happen on the
    server's event loop (~0.5 s) during the first real run."""

    async def call() -> None:
        await litellm.acompletion(  # type: ignore[attr-defined]
            model="openai/warm-up",
            api_base="http://127.0.0.1:9/v1",
            api_key="warm-up",
            messages=[{"role": "user", "content": "warm up"}],
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
            max_retries=0,
            timeout=2,
        )

    try:
        asyncio.run(call())
    except Exception as exc:  # expected: nothing listens there
        logger.debug("litellm warm-up call failed as expected: %s", type(exc).__name__)
