"""Benchmark a server's start: time from process start to the first /health and to /ready,
and the idle memory (RSS) once ready.

It then prints what the idle RSS is made of: a fresh interpreter imports the server's parts in
order, printing its RSS after each.

Each start is `python -m app.cli serve` on a free port of 127.0.0.1, as the README starts it
(migrations applied; at head they are a check), and once more with `--no-migrate`. The clock
starts just before the process is spawned; /health and /ready are polled every 10 ms. RSS is
read from /proc once the server has been ready for --settle seconds. Each cell is the median
of --starts starts.

Usage:

    .venv/bin/python scripts/bench_startup.py --database-url sqlite+aiosqlite:////tmp/start.db
    .venv/bin/python scripts/bench_startup.py \\
        --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/start

The database (file or Postgres database) must be reachable; it is migrated to head first.
Without a run worker (--no-worker) the server loads no agents (no litellm).
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # so `app` imports when run as `python scripts/...`

from app.db import migrations  # noqa: E402
from tests.procs import free_port, print_table, start_server, stop  # noqa: E402

POLL_SECONDS = 0.01
# Run in a fresh interpreter: each stage's imports, then its RSS and the time they took.
STAGES = """
import sys, time
sys.path.insert(0, sys.argv[1])
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
stages = [
    ("Python", []),
    ("FastAPI, Starlette, pydantic", ["fastapi"]),
    ("SQLAlchemy, asyncpg, aiosqlite", ["sqlalchemy.ext.asyncio", "asyncpg", "aiosqlite"]),
    ("alembic", ["alembic.command"]),
    ("uvicorn", ["uvicorn"]),
    ("app.main and the rest it imports", ["app.main"]),
    ("litellm (import)", ["litellm"]),
    ("the agents, litellm's warm-up call", ["app.agent.loader"]),
]
for name, modules in stages:
    started = time.perf_counter()
    for module in modules:
        __import__(module)
    if name.startswith("the agents"):
        sys.modules["app.agent.loader"].load_agents()
    print(f"{name}\t{rss():.1f}\t{time.perf_counter() - started:.2f}", flush=True)
"""
TIMEOUT_SECONDS = 120.0


def first_200(client: httpx.Client, path: str, started: float, proc_alive: object) -> float:
    """Seconds from `started` to the first 200 of `path` (polled every 10 ms)."""
    while time.perf_counter() - started < TIMEOUT_SECONDS:
        if not proc_alive():  # type: ignore[operator]
            raise RuntimeError("the server exited before answering")
        try:
            if client.get(path).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"no 200 from {path} within {TIMEOUT_SECONDS:.0f} s")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_start(url: str, migrate: bool, worker: bool, settle: float) -> tuple[float, float, float]:
    port = free_port()
    env = {
        "AGENT_SERVER_DATABASE_URL": url,
        "AGENT_SERVER_LOG_LEVEL": "WARNING",
        "AGENT_SERVER_SESSION_API_KEYS": None,
        "AGENT_SERVER_RUN_WORKER_ENABLED": "true" if worker else "false",
    }
    args = [] if migrate else ["--no-migrate"]
    started = time.perf_counter()
    proc = start_server(port, env, args=args)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0) as client:
            alive = lambda: proc.poll() is None  # noqa: E731
            health = first_200(client, "/health", started, alive)
            ready = first_200(client, "/ready", started, alive)
        time.sleep(settle)
        return health, ready, rss_mib(proc.pid)
    finally:
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--starts", type=int, default=3, help="starts per configuration")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds ready before RSS")
    parser.add_argument("--no-worker", action="store_true", help="also start without a worker")
    args = parser.parse_args()
    if args.starts < 1:
        parser.error("--starts must be at least 1")
    url: str = args.database_url
    print(f"database: {make_url(url).get_backend_name()}  ({make_url(url).render_as_string()})")
    migrations.upgrade(url)
    configs = [("serve", True, True), ("serve --no-migrate", False, True)]
    if args.no_worker:
        configs.append(("serve --no-migrate, no worker", False, False))
    rows = []
    for name, migrate, worker in configs:
        samples = [one_start(url, migrate, worker, args.settle) for _ in range(args.starts)]
        health, ready, rss = (statistics.median(column) for column in zip(*samples, strict=True))
        rows.append([name, f"{health:.2f}", f"{ready:.2f}", f"{rss:.0f}"])
        print(f"{name}: {samples}", flush=True)
    print_table(["start", "first /health (s)", "/ready (s)", "idle RSS (MiB)"], rows)
    print(f"medians of {args.starts} starts each; target: first /health <= 2 s")
    print_table(["imported (in this order)", "RSS (MiB)", "added (MiB)", "import (s)"], memory())


def memory() -> list[list[str]]:
    """What the RSS is made of, stage by stage (see STAGES)."""
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    output = subprocess.run(
        [sys.executable, "-c", STAGES, str(REPO_ROOT)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows, before = [], 0.0
    for line in output.splitlines():
        name, rss, seconds = line.split("\t")
        rows.append([name, rss, f"{float(rss) - before:.1f}", seconds])
        before = float(rss)
    return rows


if __name__ == "__main__":
    main()
