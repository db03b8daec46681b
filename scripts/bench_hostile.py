"""Benchmark how the server copes with hostile request bodies: /health latency meanwhile, and
the time each body takes to be refused.

The script starts the real server (`python -m app.cli serve`, which migrates the database
first; run worker off) on a free port of 127.0.0.1 and creates one conversation. Then, for
each body of tests/security/test_input_limits.py's HOSTILE (at the server's body limit), a
chunked body twice the limit and an accepted message of exactly the limit, it posts the body
--repeat times, one after the other, while a thread polls GET /health every 10 ms; a last row
posts all of them at once. It prints, per body: its size, the statuses, the time to answer
(p50, max) and /health's p50/p99/max latency meanwhile.

Usage:

    .venv/bin/python scripts/bench_hostile.py
    .venv/bin/python scripts/bench_hostile.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/bench

Without --database-url a scratch SQLite file is used. A Postgres database must exist
(`createdb -h 127.0.0.1 -U postgres bench`); the conversation is left in it.
"""

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # so `app` and `tests` import when run as a script

from app.config import Settings  # noqa: E402
from tests.procs import (  # noqa: E402
    free_port,
    percentile,
    print_table,
    start_server,
    stop,
    wait_ready,
)
from tests.security.test_input_limits import (  # noqa: E402
    HOSTILE,
    JSON,
    chunks,
    max_size_message,
    poll_health,
)

MAX_BODY = Settings.model_fields["max_body_bytes"].default
Post = Callable[[httpx.AsyncClient, str], Awaitable[httpx.Response]]


def _body_post(body: bytes) -> Post:
    async def post(client: httpx.AsyncClient, url: str) -> httpx.Response:
        return await client.post(url, content=body, headers=JSON)

    return post


async def _chunked_post(client: httpx.AsyncClient, url: str) -> httpx.Response:
    return await client.post(url, content=chunks(2 * MAX_BODY), headers=JSON)


def _cases() -> list[tuple[str, int, Post]]:
    cases = [(name, len(body), _body_post(body)) for name, body in _bodies()]
    cases.append(("chunked, twice the limit", 2 * MAX_BODY, _chunked_post))
    large = max_size_message(MAX_BODY)
    cases.append(("message of the limit (accepted)", len(large), _body_post(large)))
    return cases


def _bodies() -> list[tuple[str, bytes]]:
    return [(name, build(MAX_BODY)) for name, (build, _) in HOSTILE.items()]


async def _timed(base: str, url: str, post: Post) -> tuple[float, str]:
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        started = time.perf_counter()
        try:
            status = str((await post(client, url)).status_code)
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        return time.perf_counter() - started, status


async def _measure(base: str, url: str, posts: list[Post], repeat: int) -> list[str]:
    stop_polling = threading.Event()
    health = asyncio.create_task(asyncio.to_thread(poll_health, base, stop_polling))
    await asyncio.sleep(0.2)
    times: list[float] = []
    statuses: set[str] = set()
    for _ in range(repeat):
        answers = await asyncio.gather(*(_timed(base, url, post) for post in posts))
        times += [seconds for seconds, _ in answers]
        statuses |= {status for _, status in answers}
    await asyncio.sleep(0.2)
    stop_polling.set()
    latencies = await health
    ms = [f"{1000 * value:.1f}" for value in (percentile(times, 0.5), max(times, default=0))]
    health_ms = [f"{1000 * percentile(latencies, q):.1f}" for q in (0.5, 0.99, 1.0)]
    return ["/".join(sorted(statuses)), *ms, *health_ms]


async def _run(base: str, repeat: int) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        response = await client.post("/api/conversations", json={"agent": {"llm": {"model": "m"}}})
        response.raise_for_status()
        url = f"/api/conversations/{response.json()['id']}/events"
    cases = _cases()
    rows = [["idle", "0", *await _measure(base, url, [], 1)]]
    for name, size, post in cases:
        rows.append([name, str(size), *await _measure(base, url, [post], repeat)])
    everything = [post for _, _, post in cases]
    rows.append(["all of the above at once", "", *await _measure(base, url, everything, repeat)])
    headers = ["body", "bytes", "status", "answer p50 ms", "answer max ms"]
    print_table([*headers, "/health p50", "p99", "max"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="default: a scratch SQLite file")
    parser.add_argument("--repeat", type=int, default=5, help="posts of each body (default 5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite+aiosqlite:///{scratch}/bench_hostile.db"
        port = free_port()
        env = {
            "AGENT_SERVER_DATABASE_URL": url,
            "AGENT_SERVER_RUN_WORKER_ENABLED": "false",
            "AGENT_SERVER_LOG_LEVEL": "WARNING",
            "AGENT_SERVER_SESSION_API_KEYS": None,
        }
        proc = start_server(port, env)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base, proc, 120)
            asyncio.run(_run(base, args.repeat))
        finally:
            stop(proc)


if __name__ == "__main__":
    main()
