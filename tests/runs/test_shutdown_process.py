"""SIGTERM to a real `agent-server serve` process: it gives its run back and exits in time,
and a second server process completes the run.

Processes are started by tests.procs and ended by their own PID (stop() in a finally, so
they end when a test fails too)."""

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from app.models import Conversation, Event, Run
from tests.conftest import BASE_URL, wait_for
from tests.dbutil import create_database, drop_database, is_postgres
from tests.procs import free_port, start_fake_llm, start_server, stop, wait_ready

pytestmark = pytest.mark.slow  # server processes

GRACE = 4.0
EXIT_BOUND = GRACE + 10.0  # generous: it catches a hang, not a slow exit
THINK = {"tool_calls": [{"name": "think", "arguments": {"thought": "next"}}]}


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[None]:
    """These tests drive processes from plain sync code; the loop gate does not apply."""
    yield


@pytest.fixture
def scratch_url(tmp_path: Path) -> Iterator[str]:
    url = create_database(BASE_URL, tmp_path, "shutdown")
    yield url
    drop_database(BASE_URL, url)


def _wait(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    """wait_for() for these sync tests: `check` (blocking) runs in a thread."""
    return asyncio.run(wait_for(lambda: asyncio.to_thread(check), what, timeout, every=0.05))


def _events(base: str, cid: str, with_seq: bool = False) -> list[dict[str, Any]]:
    url = f"{base}/api/conversations/{cid}/events/search"
    params: dict[str, Any] = {"limit": 100, **({"with_seq": "true"} if with_seq else {})}
    items: list[dict[str, Any]] = httpx.get(url, params=params, timeout=10).json()["items"]
    return items


def _read(url: str, run_id: str, cid: str) -> tuple[Run, Conversation, list[Event]]:
    """The run, the conversation and its events as stored, read straight from the database."""

    async def read() -> tuple[Run, Conversation, list[Event]]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                run = (await conn.execute(select(Run).where(Run.id == uuid.UUID(run_id)))).one()
                conv = await conn.execute(
                    select(Conversation).where(Conversation.id == uuid.UUID(cid))
                )
                events = await conn.execute(
                    select(Event).where(Event.conversation_id == uuid.UUID(cid)).order_by(Event.seq)
                )
                return run, conv.one(), list(events.all())
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_sigterm_gives_the_run_back_and_another_process_completes_it(
    scratch_url: str, tmp_path: Path
) -> None:
    """A run of four 1 s LLM steps; SIGTERM during the second: the process lets that step end
    (grace 4 s), queues the run again and exits well within grace + 10 s. A second server
    claims the run and completes it from its events. Checked once against the old stop
    (cancel the runners): the run was left `running` in the database."""
    llm, llm_url = start_fake_llm(latency=1.0)
    servers: list[subprocess.Popen[bytes]] = []
    env = {
        "AGENT_SERVER_DATABASE_URL": scratch_url,
        "AGENT_SERVER_SHUTDOWN_GRACE_SECONDS": str(GRACE),
        "AGENT_SERVER_WORKER_POLL_SECONDS": "0.1",
        "AGENT_SERVER_WORKSPACE_ROOT": str(tmp_path / "workspaces"),
        "AGENT_SERVER_SESSION_API_KEYS": None,
    }

    def serve(name: str) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        log = tmp_path / f"{name}.log"
        with log.open("wb") as out:
            proc = start_server(port, env, stdout=out, stderr=subprocess.STDOUT)
        servers.append(proc)
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, proc, log=log)
        return proc, base

    try:
        httpx.post(f"{llm_url}/_script", json={"replies": [THINK] * 3}).raise_for_status()
        first, base = serve("first")
        agent = {
            "kind": "LLMAgent",
            "llm": {"model": "openai/fake-model", "base_url": f"{llm_url}/v1", "api_key": "k"},
        }
        body = {"agent": agent, "initial_message": {"content": [{"text": "work"}]}}
        cid = httpx.post(f"{base}/api/conversations", json=body, timeout=10).json()["id"]
        run_id = httpx.post(f"{base}/api/conversations/{cid}/run", timeout=10).json()["id"]
        _wait(
            "a first observation",
            lambda: any(e["kind"] == "ObservationEvent" for e in _events(base, cid)),
        )
        begun = time.monotonic()
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=EXIT_BOUND + 5)
        took = time.monotonic() - begun
        log = (tmp_path / "first.log").read_text(errors="replace")
        assert took < EXIT_BOUND, log
        assert first.returncode in (0, -signal.SIGTERM), log

        run, conversation, stored = _read(scratch_url, run_id, cid)
        assert run.status == "queued" and run.worker_id is None, log
        assert run.lease_expires_at is None and run.iterations >= 2
        assert conversation.execution_status == "running"  # its run waits in the queue
        calls = [e.payload["tool_call_id"] for e in stored if e.kind == "ActionEvent"]
        answered = [e.payload["tool_call_id"] for e in stored if e.kind == "ObservationEvent"]
        assert len(calls) == run.iterations and sorted(calls) == sorted(answered), stored
        states = [e.payload["value"] for e in stored if e.kind == "ConversationStateUpdateEvent"]
        assert states == ["running"]
        assert "given back" in log

        second, base = serve("second")
        _wait(
            "the run completed by the second server",
            lambda: (
                httpx.get(f"{base}/api/runs/{run_id}", timeout=10).json()["status"]
                not in ("queued", "running")
            ),
        )
        run_read = httpx.get(f"{base}/api/runs/{run_id}", timeout=10).json()
        events = _events(base, cid, with_seq=True)
        begun = time.monotonic()
        second.send_signal(signal.SIGTERM)  # no run left: it ends at once
        second.wait(timeout=EXIT_BOUND + 5)
        assert time.monotonic() - begun < 5 and second.returncode in (0, -signal.SIGTERM)
    finally:
        for proc in servers:
            stop(proc, timeout=EXIT_BOUND)
        stop(llm)
    assert run_read["status"] == "completed" and run_read["iterations"] == 4, run_read
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    kinds = [e["kind"] for e in events]
    assert kinds.count("ActionEvent") == kinds.count("ObservationEvent") == 4


# How the process exits on each signal does not depend on the database, and what the exit
# leaves in the database (the run queued again) is checked on both: each pass sends one of the
# two signals (SIGINT on SQLite, SIGTERM on Postgres), so every CI run checks both signals.
SIGNAL = signal.SIGTERM if is_postgres(BASE_URL) else signal.SIGINT


@pytest.mark.parametrize("sig", [SIGNAL], ids=[SIGNAL.name])
def test_exit_is_bounded_while_a_sync_llm_call_hangs(
    scratch_url: str, tmp_path: Path, sig: signal.Signals
) -> None:
    """A sync agent's thread blocks in a 60 s LLM call that cannot be cancelled; grace 1 s.
    The process still exits within grace + 10 s, and the run, cut off before anything of
    the step was written, is queued again. Checked once without the CLI's exit that leaves
    busy threads behind: after SIGINT, Python's exit waited for the 60 s call."""
    llm, llm_url = start_fake_llm(latency=60.0)
    proc = None
    env = {
        "AGENT_SERVER_DATABASE_URL": scratch_url,
        "AGENT_SERVER_SHUTDOWN_GRACE_SECONDS": "1",
        "AGENT_SERVER_WORKER_POLL_SECONDS": "0.1",
        "AGENT_SERVER_WORKSPACE_ROOT": str(tmp_path / "workspaces"),
        "AGENT_SERVER_SESSION_API_KEYS": None,
    }
    try:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with (tmp_path / "server.log").open("wb") as out:
            proc = start_server(port, env, stdout=out, stderr=subprocess.STDOUT)
        wait_ready(base, proc, log=tmp_path / "server.log")
        agent = {
            "kind": "SyncLLMAgent",
            "llm": {"model": "openai/fake-model", "base_url": f"{llm_url}/v1", "api_key": "k"},
        }
        body = {"agent": agent, "initial_message": {"content": [{"text": "work"}]}}
        cid = httpx.post(f"{base}/api/conversations", json=body, timeout=10).json()["id"]
        run_id = httpx.post(f"{base}/api/conversations/{cid}/run", timeout=10).json()["id"]
        _wait("the LLM call", lambda: httpx.get(f"{llm_url}/_requests", timeout=10).json())
        begun = time.monotonic()
        proc.send_signal(sig)
        proc.wait(timeout=30)
        took = time.monotonic() - begun
    finally:
        stop(proc, timeout=EXIT_BOUND)
        stop(llm)
    log = (tmp_path / "server.log").read_text(errors="replace")
    assert took < 1 + 10, log
    run, conversation, stored = _read(scratch_url, run_id, cid)
    assert run.status == "queued" and conversation.execution_status == "running", log
    # The start's `running`, and nothing more: the run was given back before any step.
    assert [e.kind for e in stored if e.kind not in ("MessageEvent", "SystemPromptEvent")] == [
        "ConversationStateUpdateEvent"
    ]
