"""Real server processes on the suite's database, started and stopped by PID."""

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import wait_for
from tests.procs import free_port, port_taken, start_server, stop, wait_ready
from tests.runs.conftest import fake_llm_server, llm

__all__ = ["fake_llm_server", "llm", "wait_for"]  # wait_for: the tests here import it from here

THINK = {"text": "Thinking.", "tool_calls": [{"name": "think", "arguments": {"thought": "go"}}]}
SHORT_LEASE = {
    "AGENT_SERVER_RUN_LEASE_SECONDS": "2",
    "AGENT_SERVER_SWEEPER_INTERVAL_SECONDS": "0.3",
    "AGENT_SERVER_CONTROL_POLL_SECONDS": "0.1",
    "AGENT_SERVER_WORKER_POLL_SECONDS": "0.1",
    "AGENT_SERVER_STREAM_POLL_SECONDS": "0.1",
    # Three processes share the test Postgres (max_connections 100): 3 x (10 + 10 pooled +
    # up to 8 runner connections + 1 LISTEN) stays under it.
    "AGENT_SERVER_DB_MAX_OVERFLOW": "10",
}


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    base: str
    log: Path
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)  # only ever a process this fixture started

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


ServerFactory = Callable[..., Any]


def _launch(env: dict[str, str | None], log: Path, module: str) -> Server:
    port = free_port()
    with log.open("wb") as out:
        proc = start_server(
            port, env, args=["--no-migrate"], stdout=out, stderr=subprocess.STDOUT, module=module
        )
    return Server(proc, f"http://127.0.0.1:{port}", log)


@pytest.fixture
async def servers(database_url: str, tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """start(worker=True, module="app.cli", **env) -> Server, once it answers /ready (several
    may start at once); every server is stopped at the end (by PID)."""
    started: list[Server] = []
    numbers = itertools.count()

    async def start(worker: bool = True, module: str = "app.cli", **env: str) -> Server:
        full_env: dict[str, str | None] = {
            "AGENT_SERVER_DATABASE_URL": database_url,
            "AGENT_SERVER_LOG_LEVEL": "WARNING",
            "AGENT_SERVER_SESSION_API_KEYS": None,
            "AGENT_SERVER_RUN_WORKER_ENABLED": "true" if worker else "false",
            "AGENT_SERVER_WORKSPACE_ROOT": str(tmp_path / "workspaces"),
            **SHORT_LEASE,
            **env,
        }
        attempts = 0
        while True:
            attempts += 1
            log = tmp_path / f"server-{next(numbers)}.log"
            server = await asyncio.to_thread(_launch, full_env, log, module)
            started.append(server)
            try:
                await asyncio.to_thread(wait_ready, server.base, server.proc, log=log)
                return server
            except RuntimeError as exc:
                # free_port()'s port was free when asked; another process may have bound it
                # since: try another one.
                if attempts == 3 or not port_taken(await asyncio.to_thread(server.log_text)):
                    raise AssertionError(str(exc)) from exc

    try:
        yield start
    finally:
        for server in started:
            with contextlib.suppress(ProcessLookupError):
                if server.proc.poll() is None:
                    server.signal(signal.SIGCONT)  # a stopped process cannot handle SIGTERM
            await asyncio.to_thread(stop, server.proc, 10)


def llm_agent(llm_url: str) -> dict[str, Any]:
    return {
        "kind": "LLMAgent",
        "llm": {"model": "openai/fake-model", "base_url": f"{llm_url}/v1", "api_key": "k"},
    }
