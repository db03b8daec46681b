"""The security tests use the runs' fixtures (the fake LLM, apps whose worker runs) and the
streams' live server."""

from tests.runs.conftest import fake_llm_server, llm, run_app
from tests.streams.conftest import live

__all__ = ["fake_llm_server", "live", "llm", "run_app"]
