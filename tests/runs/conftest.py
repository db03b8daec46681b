"""Fixtures for runs: a fake LLM process, and apps whose worker runs for real."""

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tests.runs.agents  # noqa: F401  (registers the test agents)
from app.db.session import Database
from tests.conftest import make_app, serve_app, wait_for
from tests.procs import start_fake_llm, stop

FAST = {
    "worker_poll_seconds": 0.05,
    "control_poll_seconds": 0.05,
    "sweeper_interval_seconds": 0.2,
    "llm_retry_base_seconds": 0.01,
}


class FakeLLM:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.model_url = f"{base_url}/v1"

    async def script(self, *replies: dict[str, Any], latency: float | None = None) -> None:
        body: dict[str, Any] = {"replies": list(replies)}
        if latency is not None:
            body["latency"] = latency
        async with httpx.AsyncClient() as client:
            (await client.post(f"{self.base_url}/_script", json=body)).raise_for_status()

    async def headers(self) -> list[dict[str, Any]]:
        """Per chat request received: its path and its headers (names lower-case)."""
        async with httpx.AsyncClient() as client:
            result: list[dict[str, Any]] = (await client.get(f"{self.base_url}/_headers")).json()
            return result

    async def requests(self) -> list[dict[str, Any]]:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{self.base_url}/_requests")
            result: list[dict[str, Any]] = response.json()
            return result


@pytest.fixture(scope="session")
def fake_llm_server() -> Iterator[str]:
    proc, base = start_fake_llm()
    try:
        yield base
    finally:
        stop(proc)


@pytest.fixture
async def llm(fake_llm_server: str) -> FakeLLM:
    async with httpx.AsyncClient() as client:
        (await client.post(f"{fake_llm_server}/_reset")).raise_for_status()
    return FakeLLM(fake_llm_server)


RunAppFactory = Callable[..., contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def run_app(db: Database, tmp_path: Path) -> RunAppFactory:
    """An app with its worker running; settings override FAST defaults."""

    @contextlib.asynccontextmanager
    async def factory(**settings: Any) -> AsyncIterator[httpx.AsyncClient]:
        merged = {
            **FAST,
            "run_worker_enabled": True,
            "workspace_root": tmp_path / "workspaces",
            **settings,
        }
        app = make_app(db, **merged)
        async with serve_app(app) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client

    return factory


async def wait_run(
    client: httpx.AsyncClient, run_id: object, statuses: set[str], wait: float = 30
) -> dict[str, Any]:
    """The run once its status is one of `statuses`; fails after `wait` seconds."""
    run: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal run
        run = (await client.get(f"/api/runs/{run_id}")).json()
        return run["status"] in statuses

    try:
        await wait_for(reached, f"run {run_id} to be {sorted(statuses)}", limit=wait, every=0.05)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: still {run.get('status')}: {run}") from None
    return run


async def events_of(
    client: httpx.AsyncClient, conversation_id: object, *, with_seq: bool = False
) -> list[dict[str, Any]]:
    """All of a conversation's events as search shows them: with `seq` only on request."""
    items: list[dict[str, Any]] = []
    url = f"/api/conversations/{conversation_id}/events/search"
    page_id = None
    while True:
        params: dict[str, Any] = {"limit": 100, **({"page_id": page_id} if page_id else {})}
        if with_seq:
            params["with_seq"] = "true"
        body = (await client.get(url, params=params)).json()
        assert all(("seq" in e) == with_seq for e in body["items"]), body["items"]
        items += body["items"]
        page_id = body["next_page_id"]
        if page_id is None:
            return items


def states(events: list[dict[str, Any]]) -> list[str]:
    """The state updates in order: each execution_status as its value, each `full_state`
    snapshot (recorded when a run ends) as `full_state=<its execution_status>`."""
    shown = []
    for event in events:
        if event["kind"] != "ConversationStateUpdateEvent":
            continue
        if event["key"] == "full_state":
            shown.append(f"full_state={event['value']['execution_status']}")
        else:
            shown.append(event["value"])
    return shown
