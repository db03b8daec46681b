"""The OpenHands contract tests: the SDK's validator (`sdk_events`), the runs' fixtures (the
fake LLM, apps whose worker runs) and the streams' live server."""

import os
from collections.abc import Iterator

import pytest

from tests.openhands.sdk import SdkError, SdkEvents, require_sdk_python
from tests.runs.conftest import fake_llm_server, llm, run_app
from tests.streams.conftest import live

__all__ = ["fake_llm_server", "live", "llm", "run_app", "sdk_events"]

# Started as soon as collection shows a test that needs it: importing the SDK takes seconds,
# spent while the tests before these run.
_early: SdkEvents | None = None


def _sdk_python() -> str | None:
    return os.environ.get("OPENHANDS_SDK_PYTHON") or None


def pytest_collection_finish(session: pytest.Session) -> None:
    global _early
    python = _sdk_python()
    if python and any("sdk_events" in getattr(i, "fixturenames", ()) for i in session.items):
        try:
            _early = SdkEvents(python).start()
        except SdkError:
            _early = None  # the fixture starts it again and reports why it cannot


def pytest_unconfigure(config: pytest.Config) -> None:
    if _early is not None:
        _early.close()


@pytest.fixture(scope="session")
def _sdk_validator() -> Iterator[SdkEvents]:
    python = require_sdk_python("check events with")
    validator = _early or SdkEvents(python).start()
    try:
        yield validator
    finally:
        validator.close()


@pytest.fixture
def sdk_events(_sdk_validator: SdkEvents) -> SdkEvents:
    """Validates event JSON with the SDK's own models: `await sdk_events(events)` gives one
    error per invalid event (empty: all valid); `await sdk_events.check(events)` the kinds
    the SDK resolved. Skips without OPENHANDS_SDK_PYTHON, fails instead if
    REQUIRE_OPENHANDS=1."""
    return _sdk_validator
