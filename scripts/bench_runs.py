"""Benchmark runs: C concurrent agent runs against a fake LLM, and the API's latency meanwhile.

Usage:

    .venv/bin/python scripts/bench_runs.py [--database-url URL] [--concurrency 1,10,50] [--steps 3]
        [--latency 0.2] [--max-concurrent-runs 10] [--worker-process] [--keep]

Default database: a SQLite file in a temporary directory. For Postgres pass e.g.
postgresql+asyncpg://postgres@127.0.0.1:5432/bench_runs (the database must exist; the server
migrates it; the conversations made are deleted at the end unless --keep).

It starts the fake LLM of the tests (`python -m tests.fakellm`, answering after --latency s)
and the real server (`python -m app.cli serve`), both on 127.0.0.1, and stops both by PID.
For each C: C conversations, agent kinds LLMAgent (async) and SyncLLMAgent (sync-only)
alternately, each with a first message; C * (steps - 1) `think` replies are scripted, then
the fake LLM's default `finish` ends each run (C * steps calls in all; the script is one
global FIFO, so the calls per run are counted from each conversation's stats). All C runs
start at once; until they end a sampler process of its own (so that the client polling the
runs never delays it) times GET /health and GET .../events/search in turn. Reported:
runs/s (C / first POST .../run to the last finished_at), run outcomes, p50/p95/p99 of both
endpoints, and per step (from the `agent_server_run_step_db_seconds` histogram of GET
/metrics of the process running the runs, a quantile interpolated in its buckets) the
database work (SQLite: the writer thread's time on the step's statements plus a share of
its group commit; Postgres: clock_timestamp() - statement_timestamp() of each statement)
and the runner's wall time waiting on the database (that work, plus queueing for the writer
and for the event loop), against targets (p99 <= 50 ms at the largest C; database work p50
<= 3 ms per step).

--worker-process runs the runs in a second server process on the same database (its run
worker), while the measured server has its worker off and only serves the API: the
deployment that keeps run CPU out of the API process (on SQLite a queued run then waits up
to AGENT_SERVER_WORKER_POLL_SECONDS for the worker to see it; Postgres wakes it by NOTIFY).

An untimed round at the largest C runs first (--no-warmup skips it), so the numbers are
those of a server whose connection pools and prepared statements are warm, not its first
seconds. --max-concurrent-runs defaults to the server's default (10): with C = 50, 40 runs
queue. With
50 the fake LLM's replies arrive in lockstep and the LLM client's CPU (litellm, about 6.5 ms
per call here) saturates the event loop; the report's run/s and latencies show it.
"""

import argparse
import asyncio
import gc
import math
import multiprocessing
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # so `app` imports when run as `python scripts/...`

from tests.procs import (  # noqa: E402
    free_port,
    percentile,
    print_table,
    start_fake_llm,
    start_server,
    stop,
    wait_ready,
)

THINK = {"text": "Thinking.", "tool_calls": [{"name": "think", "arguments": {"thought": "go"}}]}
KINDS = ("LLMAgent", "SyncLLMAgent")
ACTIVE = {"queued", "running"}
TIMES = ("created_at", "started_at", "finished_at")
iso = datetime.fromisoformat  # the API's times end in Z: Python 3.11+
P99_TARGET_MS = 50.0
DB_P50_TARGET_MS = 3.0


@dataclass
class Level:
    c: int
    wall_s: float = math.nan
    statuses: dict[str, int] = field(default_factory=dict)
    calls: list[int] = field(default_factory=list)
    run_s: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    wait_s: list[float] = field(default_factory=list)
    health_ms: list[float] = field(default_factory=list)
    search_ms: list[float] = field(default_factory=list)
    # per step, from the metrics histogram: (upper bound ms, steps) of each bucket
    step_db_ms: list[tuple[float, float]] = field(default_factory=list)  # database work
    step_wait_ms: list[tuple[float, float]] = field(default_factory=list)  # runner's wait
    errors: list[str] = field(default_factory=list)
    ended: bool = True


def parse_list(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip().isdigit()]
    if len(values) != len(text.split(",")) or min(values, default=0) < 1:
        raise argparse.ArgumentTypeError(f"not a list of positive integers: {text!r}")
    return values


def _sample(base: str, search: str, limit_s: float, warm: Any, done: Any, out: Any) -> None:
    """The sampler process: GET /health and GET .../events/search?limit=100 in turn on one
    connection, timed, until `done`; sends (health ms, search ms, errors) down `out`."""
    health_ms: list[float] = []
    search_ms: list[float] = []
    errors: list[str] = []

    def get(client: httpx.Client, path: str, params: dict[str, Any]) -> float:
        started = time.perf_counter()
        try:
            response = client.get(path, params=params)
            if response.status_code != 200:
                errors.append(f"GET {path}: {response.status_code} {response.text}")
        except httpx.HTTPError as exc:
            errors.append(f"GET {path}: {exc!r}")
        return (time.perf_counter() - started) * 1000

    targets = [("/health", {}, health_ms), (search, {"limit": 100}, search_ms)]
    with httpx.Client(base_url=base, timeout=30) as client:
        for path, params, _ in targets * 5:
            get(client, path, params)
        gc.collect()
        gc.freeze()  # what exists now is never scanned again: no long collections mid-run
        warm.set()
        deadline = time.monotonic() + limit_s
        turn = 0
        while not done.is_set() and time.monotonic() < deadline:
            path, params, samples = targets[turn % 2]
            samples.append(get(client, path, params))
            turn += 1
            time.sleep(0.005)
    out.send((health_ms, search_ms, errors))


class Sampler:
    """The timed requests, from a process of their own: in this one they would share the
    interpreter (its lock, its garbage collections) with the client that starts and polls the
    runs, and measure this process's stalls as the server's latency."""

    def __init__(self, base: str, conversation_id: str, level: Level, limit_s: float) -> None:
        context = multiprocessing.get_context("spawn")
        self.level = level
        self.warm, self.done = context.Event(), context.Event()
        self._results, sender = context.Pipe(duplex=False)
        search = f"/api/conversations/{conversation_id}/events/search"
        self._process = context.Process(
            target=_sample,
            args=(base, search, limit_s, self.warm, self.done, sender),
            name="latency-sampler",
            daemon=True,
        )

    def start(self) -> None:
        self._process.start()

    def join(self, timeout: float) -> None:
        """Collect the samples into the level, then wait for the process to end."""
        if self._results.poll(timeout):
            health_ms, search_ms, errors = self._results.recv()
            self.level.health_ms += health_ms
            self.level.search_ms += search_ms
            self.level.errors += errors
        else:
            self.level.errors.append(f"the sampler sent nothing within {timeout:.0f} s")
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.kill()


async def run_level(
    client: httpx.AsyncClient, base: str, llm_url: str, args: argparse.Namespace, c: int
) -> tuple[Level, list[str], list[str]]:
    level = Level(c)
    async with httpx.AsyncClient(timeout=10) as llm:
        (await llm.post(f"{llm_url}/_reset")).raise_for_status()  # also resets the latency
        body = {"replies": [THINK] * (c * (args.steps - 1)), "latency": args.latency}
        (await llm.post(f"{llm_url}/_script", json=body)).raise_for_status()
    limit = asyncio.Semaphore(10)

    async def create(index: int) -> str:
        llm = {"model": "openai/fake-model", "base_url": f"{llm_url}/v1", "api_key": "k"}
        message = {"role": "user", "content": [{"type": "text", "text": f"task {index}"}]}
        data = {
            "title": f"bench_runs C={c} #{index}",
            "agent": {"kind": KINDS[index % 2], "llm": llm},
            "max_iterations": args.steps * 4,
            "initial_message": message,
        }
        async with limit:
            response = await client.post("/api/conversations", json=data)
        if response.status_code != 201:
            raise RuntimeError(f"create answered {response.status_code}: {response.text}")
        return str(response.json()["id"])

    cids = list(await asyncio.gather(*(create(i) for i in range(c))))
    sampler = Sampler(base, cids[0], level, limit_s=args.timeout)
    sampler.start()
    await asyncio.to_thread(sampler.warm.wait, 30)

    async def start(cid: str) -> str | None:
        response = await client.post(f"/api/conversations/{cid}/run")
        if response.status_code != 202:
            level.errors.append(f"POST run {cid}: {response.status_code} {response.text}")
            return None
        return str(response.json()["id"])

    first_post = datetime.now(UTC)
    posted = await asyncio.gather(*(start(cid) for cid in cids))
    if None in posted:  # keep run i <-> conversation i (its agent kind) for the report
        raise RuntimeError(f"some runs did not start: {level.errors[:3]}")
    run_ids = [str(run_id) for run_id in posted]
    deadline = time.monotonic() + args.timeout
    conversations: list[dict[str, Any]] = []
    while time.monotonic() < deadline:  # one batch GET per 50 ms, not one GET per run
        conversations = []
        for i in range(0, c, 100):
            response = await client.get("/api/conversations", params={"ids": cids[i : i + 100]})
            conversations += response.json() if response.status_code == 200 else []
        if len(conversations) == c and all(
            conv and conv["execution_status"] not in ACTIVE for conv in conversations
        ):
            break
        await asyncio.sleep(0.05)
    else:
        level.ended = False
    sampler.done.set()
    await asyncio.to_thread(sampler.join, 30)

    runs = [(await client.get(f"/api/runs/{rid}")).json() for rid in run_ids]
    for index, run in enumerate(runs):
        level.statuses[run["status"]] = level.statuses.get(run["status"], 0) + 1
        if run["status"] == "failed":
            level.errors.append(f"run {run['id']} failed: {run['error']}")
        created, started, ended = (iso(run[k]) if run[k] else None for k in TIMES)
        if ended and created:
            level.run_s[KINDS[index % 2]].append((ended - created).total_seconds())
        if started and created:
            level.wait_s.append((started - created).total_seconds())
    finished = [iso(run["finished_at"]) for run in runs if run["finished_at"]]
    if len(finished) == c:
        level.wall_s = (max(finished) - first_post).total_seconds()
    level.calls = [int((conv or {}).get("stats", {}).get("llm_calls", 0)) for conv in conversations]
    return level, cids, run_ids


STEP_METRIC = "agent_server_run_step_db_seconds"


async def step_buckets(client: httpx.AsyncClient, base: str) -> dict[str, dict[float, float]]:
    """The step histogram of the process at `base`: part -> {upper bound ms: cumulative}."""
    response = await client.get(f"{base}/metrics")
    response.raise_for_status()
    found: dict[str, dict[float, float]] = {"work": {}, "wait": {}}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == f"{STEP_METRIC}_bucket":
                bound = float(sample.labels["le"]) * 1000
                found[sample.labels["part"]][bound] = sample.value
    return found


def bucket_counts(
    before: dict[float, float], after: dict[float, float]
) -> list[tuple[float, float]]:
    """Steps per bucket between two scrapes: (upper bound ms, steps), in bound order."""
    cumulative = [(b, after[b] - before.get(b, 0.0)) for b in sorted(after)]
    return [(b, n - (cumulative[i - 1][1] if i else 0.0)) for i, (b, n) in enumerate(cumulative)]


def bucket_quantile(buckets: list[tuple[float, float]], fraction: float) -> float:
    """The quantile, interpolated linearly inside its bucket (as PromQL's
    histogram_quantile does); nan without steps."""
    total = sum(n for _, n in buckets)
    if not total:
        return math.nan
    rank, seen, lower = fraction * total, 0.0, 0.0
    for bound, n in buckets:
        if n and seen + n >= rank:
            return lower if math.isinf(bound) else lower + (bound - lower) * (rank - seen) / n
        seen += n
        lower = bound if not math.isinf(bound) else lower
    return lower


async def bench(base: str, llm_url: str, args: argparse.Namespace) -> list[Level]:
    # Idle connections are dropped after 1 s, well before uvicorn closes them (5 s): reusing
    # one the server is closing at that moment fails the request (httpx.ReadError).
    limits = httpx.Limits(max_connections=max(args.concurrency) + 20, keepalive_expiry=1.0)
    done: list[tuple[Level, list[str]]] = []
    runs_base = args.runs_base
    all_cids: list[str] = []
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        try:
            if args.warmup:  # untimed: the server's pools and prepared statements fill up
                _, cids, _ = await run_level(client, base, llm_url, args, max(args.concurrency))
                all_cids += cids
                print(f"  {time.strftime('%H:%M:%S')} warm-up round at C={max(args.concurrency)}")
            for c in args.concurrency:
                before = await step_buckets(client, runs_base)
                level, cids, run_ids = await run_level(client, base, llm_url, args, c)
                after = await step_buckets(client, runs_base)
                level.step_db_ms = bucket_counts(before["work"], after["work"])
                level.step_wait_ms = bucket_counts(before["wait"], after["wait"])
                done.append((level, run_ids))
                all_cids += cids
                calls = f"{min(level.calls, default=0)}..{max(level.calls, default=0)}"
                print(f"  {time.strftime('%H:%M:%S')} C={c}: {level.statuses} in "
                      f"{level.wall_s:.2f} s; LLM calls/run {calls}; "
                      f"{len(level.health_ms) + len(level.search_ms)} timed requests",
                      flush=True)  # fmt: skip
                if not level.ended:
                    print(f"  C={c}: runs still active after {args.timeout:.0f} s; stopping")
                    break
        finally:
            if not (args.keep or args.temporary):
                for cid in all_cids:  # runs, events, llm_calls go by ON DELETE CASCADE
                    await client.delete(f"/api/conversations/{cid}")
    return [level for level, _ in done]


def f2(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def report(levels: list[Level], steps: int) -> None:
    rows = []
    for lv in levels:
        failed = sum(n for status, n in lv.statuses.items() if status != "completed")
        calls = f"{min(lv.calls, default=0)}-{max(lv.calls, default=0)}"
        rows.append(
            [str(lv.c), f2(lv.c / lv.wall_s), f2(lv.wall_s), str(lv.statuses.get("completed", 0)),
             str(failed), f"{calls} ({sum(lv.calls)}/{lv.c * steps})",
             " / ".join(f2(percentile(lv.run_s[kind], 0.5)) for kind in KINDS),
             f2(max((t for ts in lv.run_s.values() for t in ts), default=math.nan)),
             f2(max(lv.wait_s, default=math.nan)),
             f2(bucket_quantile(lv.step_db_ms, 0.5)), f2(bucket_quantile(lv.step_db_ms, 0.95)),
             f2(bucket_quantile(lv.step_wait_ms, 0.5)),
             f2(bucket_quantile(lv.step_wait_ms, 0.95)),
             f"{sum(n for _, n in lv.step_db_ms):.0f}"]
        )  # fmt: skip
    print_table(
        ["C", "runs/s", "wall s", "completed", "failed", "LLM calls/run (sum/expected)",
         "run s p50 async / sync", "run s max", "queued s max", "db work ms/step p50", "p95",
         "db wait ms/step p50", "p95", "steps"],
        rows,
    )  # fmt: skip
    rows = [
        [str(lv.c)] + [f2(percentile(ms, q)) if q else str(len(ms))
                       for ms in (lv.health_ms, lv.search_ms) for q in (0, 0.5, 0.95, 0.99)]
        + [str(len(lv.errors))]
        for lv in levels
    ]  # fmt: skip
    print_table(["C", "health n", "p50 ms", "p95 ms", "p99 ms", "search n", "p50 ms", "p95 ms",
                 "p99 ms", "errors"], rows)  # fmt: skip
    top = max(levels, key=lambda lv: lv.c)
    checks = [
        ("GET /health p99", top, percentile(top.health_ms, 0.99), P99_TARGET_MS),
        ("events search p99", top, percentile(top.search_ms, 0.99), P99_TARGET_MS),
    ]
    checks += [("db work per step p50", lv, bucket_quantile(lv.step_db_ms, 0.5), DB_P50_TARGET_MS)
               for lv in levels]  # fmt: skip
    rows = [[name, str(lv.c), f2(value), f"<= {target:.0f}", "OK" if value <= target else "MISS"]
            for name, lv, value, target in checks]  # fmt: skip
    print_table(["target", "C", "measured ms", "target ms", "OK/MISS"], rows)
    for lv in levels:
        for error in lv.errors[:10]:
            print(f"C={lv.c}: {error[:300]}")
        if len(lv.errors) > 10:
            print(f"C={lv.c}: ... {len(lv.errors) - 10} more errors")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--database-url", help="default: a SQLite file in a temporary directory")
    parser.add_argument("--concurrency", type=parse_list, default=[1, 10, 50])
    parser.add_argument("--steps", type=int, default=3, help="LLM calls per run")
    parser.add_argument("--latency", type=float, default=0.2, help="fake LLM latency, seconds")
    parser.add_argument("--max-concurrent-runs", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=120.0, help="per C, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the conversations")
    parser.add_argument("--worker-process", action="store_true",
                        help="run the runs in a second server process (its worker); the "
                        "measured one has AGENT_SERVER_RUN_WORKER_ENABLED=false")  # fmt: skip
    parser.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="skip the untimed round at the largest C run first")  # fmt: skip
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    llm, server, worker = None, None, None
    with tempfile.TemporaryDirectory(prefix="bench-runs-") as tmp_name:
        tmp = Path(tmp_name)
        args.temporary = args.database_url is None
        args.database_url = args.database_url or f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        log, worker_log = tmp / "server.log", tmp / "worker.log"
        levels: list[Level] = []
        try:
            try:
                llm, llm_url = start_fake_llm(args.latency)
            except RuntimeError as exc:
                sys.exit(f"bench_runs: {exc}")
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            env = {
                "AGENT_SERVER_DATABASE_URL": args.database_url,
                "AGENT_SERVER_LOG_LEVEL": "WARNING",
                "AGENT_SERVER_MAX_CONCURRENT_RUNS": str(args.max_concurrent_runs),
                "AGENT_SERVER_WORKSPACE_ROOT": str(tmp / "workspaces"),
                "AGENT_SERVER_SESSION_API_KEYS": None,  # the benchmark sends no key
            }
            args.runs_base = base
            if args.worker_process:  # the runs in a second process; the measured one serves
                worker_port = free_port()
                args.runs_base = f"http://127.0.0.1:{worker_port}"
                with worker_log.open("wb") as out:
                    worker = start_server(worker_port, env, stdout=out, stderr=subprocess.STDOUT)
                wait_ready(f"http://127.0.0.1:{worker_port}", worker, timeout=60)
                env["AGENT_SERVER_RUN_WORKER_ENABLED"] = "false"
            with log.open("wb") as out:
                server = start_server(port, env, stdout=out, stderr=subprocess.STDOUT)
            wait_ready(base, server, timeout=60)
            print(f"database {args.database_url}; server {base} (pid {server.pid}); fake LLM "
                  f"{llm_url} (pid {llm.pid}, {args.latency * 1000:.0f} ms); "
                  f"max_concurrent_runs {args.max_concurrent_runs}; {args.steps} steps/run; "
                  f"agents alternate {' / '.join(KINDS)}"
                  + (f"; runs in a worker process (pid {worker.pid})" if worker else ""),
                  flush=True)  # fmt: skip
            levels = asyncio.run(bench(base, llm_url, args))
        finally:
            for proc in (server, worker, llm):
                if proc is not None:
                    stop(proc)
            for name, path in (("server", log), ("worker", worker_log)):
                lines = path.read_text(errors="replace").splitlines() if path.exists() else []
                if lines:
                    print(f"\n{name} log: {len(lines)} lines (level WARNING); the first 30:")
                    print("\n".join("  " + line[:300] for line in lines[:30]))
        if levels:
            report(levels, args.steps)
    ok = bool(levels) and all(
        lv.ended and lv.statuses.get("completed", 0) == lv.c and not lv.errors for lv in levels
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
