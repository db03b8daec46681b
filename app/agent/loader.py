"""Importing the built-in agents registers them (litellm's import is slow: start-up only)."""

import os


def load_agents() -> None:
    # Without network litellm would try to download its price map at import and retry for
    # seconds; the copy it ships is used instead unless the user chose otherwise.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import app.agent.llm_agent  # noqa: F401  (registers LLMAgent)
