"""Importing the built-in agents registers them; litellm is set up here, at start-up only."""

import asyncio
import logging
import os

logger = logging.getLogger(__name__)


def load_agents() -> None:
    """Call once at start-up, off the event loop: it imports slowly and reads files."""
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
