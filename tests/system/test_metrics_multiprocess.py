"""Multiprocess mode (PROMETHEUS_MULTIPROC_DIR): two server processes of one host each answer
/metrics with the sum over both; runs by status are read once per scrape, never summed; a
process that ends keeps its counters in the sum and takes its live gauges out of it.

The processes are tests.system.metrics_child (the app in process, as app/main.py runs it
with `metrics.process_gauges`); prometheus_client picks multiprocess mode when first
imported, so it cannot be turned on inside this test process."""

import asyncio
import os
import sys
from pathlib import Path
from typing import IO, Any

import pytest

from app.db.session import Database
from tests.conftest import create_conversation, make_app, serve_app
from tests.procs import ROOT
from tests.system.scrape import Scrape

pytestmark = pytest.mark.slow  # two child processes, each importing the app

START_SECONDS = 150.0  # an app's imports on a busy machine; only bounds a hang


class Child:
    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    async def _line(self, wait: float) -> str:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), wait)
        if not line:
            output = await asyncio.to_thread(self.log.read_text, errors="replace")
            raise AssertionError(f"child {self.proc.pid} ended; its output:\n{output[-4000:]}")
        return line.decode().rstrip("\n")

    async def ready(self) -> None:
        while await self._line(START_SECONDS) != "READY":
            pass

    async def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{command}\n".encode())
        await self.proc.stdin.drain()

    async def scrape(self) -> Scrape:
        await self.send("scrape")
        lines = []
        while (line := await self._line(30)) != "END":
            lines.append(line)
        return Scrape("\n".join(lines) + "\n")

    async def exit(self) -> int:
        await self.send("exit")
        return await asyncio.wait_for(self.proc.wait(), 30)


async def _start(url: str, cid: object, subscribers: int, directory: Path, log: Path) -> Child:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    out: IO[Any] = await asyncio.to_thread(log.open, "wb")
    try:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "tests.system.metrics_child", url, str(cid), str(subscribers)),
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=out,
        )
    finally:
        await asyncio.to_thread(out.close)
    return Child(proc, log)


def _sums(scrape: Scrape) -> dict[str, float]:
    return {
        "subscribers": scrape.value("agent_server_stream_subscribers"),
        "pool in use": scrape.value("agent_server_db_pool_connections_in_use"),
        "llm calls": scrape.value("agent_server_llm_calls_total", model="mp-model"),
        "prompt": scrape.value("agent_server_llm_tokens_total", model="mp-model", kind="prompt"),
        "cost": scrape.value("agent_server_llm_cost_usd_total", model="mp-model"),
        "queued": scrape.statuses().get("queued", -1),
        "queue depth": scrape.value("agent_server_run_queue_depth"),
    }


async def test_two_processes_scrape_one_sum(db: Database, tmp_path: Path) -> None:
    """A holds 2 stream subscribers, B 3; each holds a pooled connection and made one LLM
    call. Either one's scrape shows 5 subscribers, 2 connections, 2 calls, one queued run
    (not one per process), and the scrapes both answered. Once A has ended: 3 subscribers
    and 1 connection (its live gauges are gone from the directory), still 2 calls.
    Checked once against a broken variant (runs by status kept in `livesum` gauges): the
    queued run counted 2."""
    directory = tmp_path / "prometheus"
    await asyncio.to_thread(directory.mkdir)
    async with serve_app(make_app(db)) as client:  # no worker: the run stays queued
        cid = (await create_conversation(client))["id"]
        assert (await client.post(f"/api/conversations/{cid}/run")).status_code == 202
    url = db.engine.url.render_as_string(hide_password=False)
    a, b = await asyncio.gather(
        _start(url, cid, 2, directory, tmp_path / "a.log"),
        _start(url, cid, 3, directory, tmp_path / "b.log"),
    )
    try:
        await asyncio.gather(a.ready(), b.ready())
        both = {"subscribers": 5, "pool in use": 2, "llm calls": 2, "prompt": 22, "cost": 1.0}
        queued = {"queued": 1, "queue depth": 1}
        from_a, from_b = await a.scrape(), await b.scrape()
        assert _sums(from_a) == _sums(from_b) == {**both, **queued}
        again = await a.scrape()
        # The two scrapes above, one answered by each process (this one is not over yet).
        served = again.value(
            "agent_server_http_request_seconds_count", method="GET", route="/metrics", status="200"
        )
        assert served == 2
        assert await a.exit() == 0
        files = sorted(p.name for p in await asyncio.to_thread(lambda: list(directory.iterdir())))
        assert f"counter_{a.proc.pid}.db" in files
        assert not [name for name in files if name.endswith(f"_{a.proc.pid}.db") and "live" in name]
        after = await b.scrape()
        assert _sums(after) == {**both, "subscribers": 3, "pool in use": 1, **queued}
        assert await b.exit() == 0
    finally:
        for child in (a, b):
            if child.proc.returncode is None:
                child.proc.kill()  # a process this test started
                await child.proc.wait()
