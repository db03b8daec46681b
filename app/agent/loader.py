"""Importing the built-in agents registers them; litellm is set up here, at start-up only."""

import os


def load_agents() -> None:
    """Call once at start-up, off the event loop (it reads files and imports slowly)."""
    # Without network litellm would try to download its price map at import and retry for
    # seconds; the copy it ships is used instead unless the user chose otherwise.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import httpx
    import litellm

    import app.agent.llm_agent  # noqa: F401  (registers LLMAgent)

    if litellm.aclient_session is None:
        # One shared HTTP client, built here: otherwise litellm builds one per new client
        # configuration on the event loop, reading CA files from disk while it does.
        litellm.aclient_session = httpx.AsyncClient(follow_redirects=True)
