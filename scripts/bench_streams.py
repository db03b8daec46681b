"""Benchmark live streams: commit-to-client latency of SSE to S subscribers on P processes.

Usage:

    python scripts/bench_streams.py [--database-url URL] [--subscribers 100] [--processes 1,2]
        [--events 200] [--rate 20] [--poll 0.2] [--keep]

Default database: a SQLite file in a temporary directory. For Postgres pass e.g.
postgresql+asyncpg://postgres@127.0.0.1:5432/bench_streams (the database must exist; the first
server migrates it; the conversations made are deleted at the end unless --keep).

It starts max(P) real servers (`python -m app.cli serve`, run worker off, stream poll --poll
seconds) on 127.0.0.1 and stops them by PID. For each P: a new conversation; S subscribers
open GET .../events/stream?after_seq=0, spread round-robin over servers 0..P-1 (servers beyond
P stay idle); once all are connected (their stream sent its first `retry:` frame, which comes
after the hub subscription), a warm-up message (seq 1) is posted and every subscriber must
receive it; then the writer POSTs --events messages to server 0 at --rate per second, on an
absolute schedule. So on P=2 half the subscribers learn of each commit in-process (commit
listener) and half from another process (Postgres NOTIFY; on SQLite the last_seq poll).

Latency of a delivery (subscriber, event) = the client's wall clock when the event's `data:`
line arrives - the event's `timestamp`. Both clocks are this host's. The timestamp is taken in
the append transaction before the UPDATE/INSERT and the commit, so the figure over-counts the
commit-to-client time by the write's own duration (the POST column shows its upper bound); it
does not include the writer's request before the append. POST ms is the writer's send to 201.

Correctness: every subscriber must receive exactly seqs 1..events+1 in order: missing,
duplicate and out-of-order deliveries are counted and make the exit status 1. Targets (from
the issue): p95 <= 100 ms on Postgres (NOTIFY); p95 <= poll + 100 ms on SQLite; a MISS is
reported, exit status 0. The client is one asyncio process: its CPU share and event-loop lag
(p99 oversleep of a 10 ms sleep) are reported so a client-bound result can be told apart.
"""

import argparse
import asyncio
import itertools
import math
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # so `tests` imports when run as `python scripts/...`

from tests.procs import free_port, percentile, print_table, start_server, stop, wait_ready  # noqa: E402

PG_TARGET_MS = 100.0
SQLITE_MARGIN_MS = 100.0
CONNECT_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 15.0
TIMESTAMP_KEY = '"timestamp":"'
SPAWN = multiprocessing.get_context("spawn")  # no fork of a process holding sockets


@dataclass
class Sub:
    server: int
    last: int  # the seq that ends this subscriber's stream
    connected: bool = False
    seen: int = 0
    got: list[tuple[int, float, str]] = field(default_factory=list)  # seq, wall clock, stamp
    error: str | None = None


@dataclass
class Level:
    p: int
    subscribers: int
    events: int
    latency_ms: list[float] = field(default_factory=list)
    by_server_ms: dict[int, list[float]] = field(default_factory=dict)
    post_ms: list[float] = field(default_factory=list)
    lag_ms: list[float] = field(default_factory=list)
    missing: int = 0
    duplicate: int = 0
    out_of_order: int = 0
    write_s: float = math.nan
    client_cpu: list[float] = field(default_factory=list)  # shares of one core
    server_cpu: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def parse_list(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip().isdigit()]
    if len(values) != len(text.split(",")) or min(values, default=0) < 1:
        raise argparse.ArgumentTypeError(f"not a list of positive integers: {text!r}")
    return values


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process we started, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def message(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


async def subscribe(client: httpx.AsyncClient, url: str, sub: Sub, changed: asyncio.Event) -> None:
    """Read the stream until seq `sub.last`; the hot path only slices strings. `changed` is
    set on the steps all_reach waits for: connected, the warm-up event, the end."""
    seq = 0
    try:
        async with client.stream("GET", url, params={"after_seq": 0}) as response:
            if response.status_code != 200:
                sub.error = f"GET stream: {response.status_code}"
                return
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    now = time.time()
                    start = line.find(TIMESTAMP_KEY) + len(TIMESTAMP_KEY)
                    sub.got.append((seq, now, line[start : line.find('"', start)]))
                    sub.seen = seq
                    if seq >= sub.last:
                        return
                    if seq == 1:
                        changed.set()
                elif line.startswith("id:"):
                    seq = int(line[3:])
                elif line.startswith("retry:"):
                    sub.connected = True
                    changed.set()
            sub.error = f"the stream ended after seq {sub.seen}"
    except httpx.HTTPError as exc:
        sub.error = f"stream: {exc!r}"
    finally:
        changed.set()


async def all_reach(
    subs: list[Sub], done: Callable[[Sub], bool], changed: asyncio.Event, seconds: float
) -> bool:
    async def wait() -> None:
        while not all(done(sub) or sub.error for sub in subs):
            changed.clear()
            await changed.wait()

    try:
        await asyncio.wait_for(wait(), seconds)
    except TimeoutError:
        return False
    return True


async def loop_lag(samples: list[float]) -> None:
    while True:
        started = time.perf_counter()
        await asyncio.sleep(0.01)
        samples.append((time.perf_counter() - started - 0.01) * 1000)


async def client(conn: Connection, urls: list[tuple[int, str]], last: int, end_s: float) -> None:
    """One client process's share of the subscribers. Sends on `conn`: all connected (bool),
    all got the warm-up (bool), then ([(server, got, error)], loop lag samples)."""
    subs = [Sub(server, last) for server, _ in urls]
    changed, lag = asyncio.Event(), list[float]()
    limits = httpx.Limits(max_connections=len(urls) + 10)
    timeout = httpx.Timeout(10.0, read=30.0)  # the stream's keepalive comes every 15 s
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
        tasks = [
            asyncio.create_task(subscribe(http, url, sub, changed))
            for sub, (_, url) in zip(subs, urls, strict=True)
        ]
        lagger = asyncio.create_task(loop_lag(lag))
        try:
            conn.send(await all_reach(subs, lambda s: s.connected, changed, CONNECT_TIMEOUT_S))
            conn.send(await all_reach(subs, lambda s: s.seen >= 1, changed, DRAIN_TIMEOUT_S))
            lag.clear()
            await all_reach(subs, lambda s: s.seen >= last, changed, end_s)
        finally:
            for task in [lagger, *tasks]:
                task.cancel()
            await asyncio.gather(lagger, *tasks, return_exceptions=True)
    conn.send(([(sub.server, sub.got, sub.error) for sub in subs], lag))


def client_main(conn: Connection, urls: list[tuple[int, str]], last: int, end_s: float) -> None:
    asyncio.run(client(conn, urls, last, end_s))


def receive(conns: list[Connection], seconds: float) -> list[Any] | None:
    """One message from each client process, or None if one is late."""
    deadline = time.monotonic() + seconds
    answers = []
    for conn in conns:
        if not conn.poll(max(0.0, deadline - time.monotonic())):
            return None
        answers.append(conn.recv())
    return answers


def write(client: httpx.Client, url: str, args: argparse.Namespace, lv: Level) -> None:
    """POST --events messages on an absolute schedule of --rate per second."""
    t0 = time.perf_counter()
    for i in range(args.events):
        delay = t0 + i / args.rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        started = time.perf_counter()
        try:
            response = client.post(url, json=message(f"bench event {i}"))
            if response.status_code != 201:
                lv.errors.append(f"POST event {i}: {response.status_code} {response.text[:200]}")
        except httpx.HTTPError as exc:
            lv.errors.append(f"POST event {i}: {exc!r}")
        lv.post_ms.append((time.perf_counter() - started) * 1000)
        if started - t0 > args.events / args.rate + 60:
            lv.errors.append(f"the writer gave up after {i + 1} events")
            break
    lv.write_s = time.perf_counter() - t0


def collect(lv: Level, subs: list[tuple[int, list[tuple[int, float, str]], str | None]]) -> None:
    expected = set(range(1, lv.events + 2))
    for server, got, error in subs:
        seqs = [seq for seq, _, _ in got]
        lv.duplicate += len(seqs) - len(set(seqs))
        lv.missing += len(expected - set(seqs))
        lv.out_of_order += sum(1 for a, b in itertools.pairwise(seqs) if b <= a)
        if error:
            lv.errors.append(f"subscriber on server {server}: {error}")
        for seq, received, stamp in got:
            if seq > 1:  # not the warm-up event
                ms = (received - datetime.fromisoformat(stamp).timestamp()) * 1000
                lv.latency_ms.append(ms)
                lv.by_server_ms.setdefault(server, []).append(ms)


def run_level(
    bases: list[str], pids: list[int], args: argparse.Namespace, p: int, cids: list[str]
) -> Level:
    lv = Level(p, args.subscribers, args.events)
    k = args.client_procs
    procs: list[BaseProcess] = []
    with httpx.Client(base_url=bases[0], timeout=10.0) as writer:
        body = {"title": f"bench_streams P={p}", "agent": {"llm": {"model": "openai/bench"}}}
        response = writer.post("/api/conversations", json=body)
        if response.status_code != 201:
            lv.errors.append(f"create: {response.status_code} {response.text[:300]}")
            return lv
        cids.append(str(response.json()["id"]))
        events_url = f"/api/conversations/{cids[-1]}/events"
        urls = [(i % p, f"{bases[i % p]}{events_url}/stream") for i in range(args.subscribers)]
        end_s = args.events / args.rate + 60 + DRAIN_TIMEOUT_S
        conns = []
        try:
            for index in range(k):
                ours, theirs = SPAWN.Pipe()
                share = (theirs, urls[index::k], args.events + 1, end_s)
                procs.append(SPAWN.Process(target=client_main, args=share, daemon=True))
                procs[-1].start()
                conns.append(ours)
            if receive(conns, CONNECT_TIMEOUT_S + 30) != [True] * k:  # + the imports
                lv.errors.append("not every subscriber connected")
                return lv
            response = writer.post(events_url, json=message("warm-up"))
            if response.status_code != 201 or receive(conns, DRAIN_TIMEOUT_S + 5) != [True] * k:
                lv.errors.append(f"warm-up: {response.status_code}, not received by all")
                return lv
            watched = [*pids[:p], *(int(proc.pid or 0) for proc in procs)]
            cpu0, wall0 = [cpu_seconds(pid) for pid in watched], time.perf_counter()
            write(writer, events_url, args, lv)
            results = receive(conns, end_s + 10)
            wall = time.perf_counter() - wall0
            cpu = [(cpu_seconds(pid) - c0) / wall for pid, c0 in zip(watched, cpu0, strict=True)]
            lv.server_cpu, lv.client_cpu = cpu[:p], cpu[p:]
            if results is None:
                lv.errors.append("a client process did not report in time")
                return lv
            for subs, lag in results:
                collect(lv, subs)
                lv.lag_ms += lag
        finally:
            for proc in procs:  # each by its own PID
                if proc.is_alive():
                    proc.terminate()
                proc.join(10)
    return lv


def delete(base: str, cids: list[str]) -> None:
    with httpx.Client(base_url=base, timeout=30.0) as client:
        for cid in cids:
            client.delete(f"/api/conversations/{cid}")


def f1(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f}"


def joined(values: Iterable[float]) -> str:
    return " / ".join(f1(value) for value in values) or "n/a"


def report(levels: list[Level], database: str, target_ms: float) -> None:
    rows = []
    for lv in levels:
        lat = lv.latency_ms
        by_server = joined(percentile(lv.by_server_ms.get(i, []), 0.95) for i in range(lv.p))
        rows.append(
            [database, str(lv.p), str(lv.subscribers), str(lv.events), str(len(lat)),
             f1(percentile(lat, 0.5)), f1(percentile(lat, 0.95)), f1(percentile(lat, 0.99)),
             f1(max(lat, default=math.nan)), by_server,
             str(lv.missing), str(lv.duplicate), str(lv.out_of_order)]
        )  # fmt: skip
    print_table(
        ["database", "processes", "subscribers", "events", "deliveries", "p50 ms", "p95 ms",
         "p99 ms", "max ms", "p95 ms by server", "missing", "duplicate", "out of order"],
        rows,
    )  # fmt: skip
    rows = [
        [str(lv.p), f1(percentile(lv.post_ms, 0.5)), f1(percentile(lv.post_ms, 0.95)),
         f1(max(lv.post_ms, default=math.nan)),
         f1(lv.events / lv.write_s if lv.write_s else math.nan),
         joined(c * 100 for c in lv.client_cpu), joined(c * 100 for c in lv.server_cpu),
         f1(percentile(lv.lag_ms, 0.99)), f1(max(lv.lag_ms, default=math.nan))]
        for lv in levels
    ]  # fmt: skip
    print_table(
        ["processes", "POST p50 ms", "POST p95 ms", "POST max ms", "events/s",
         "client CPU % (each)", "server CPU % (each)", "client loop lag p99 ms", "lag max ms"],
        rows,
    )  # fmt: skip
    rows = []
    for lv in levels:
        p95 = percentile(lv.latency_ms, 0.95)
        rows.append(
            [f"{database} delivery p95", str(lv.p), f1(p95), f"<= {target_ms:.0f}",
             "OK" if p95 <= target_ms else "MISS"]
        )  # fmt: skip
    print_table(["target", "processes", "measured ms", "target ms", "OK/MISS"], rows)
    for lv in levels:
        for error in lv.errors[:10]:
            print(f"P={lv.p}: {error[:300]}")
        if len(lv.errors) > 10:
            print(f"P={lv.p}: ... {len(lv.errors) - 10} more errors")


def start_servers(
    url: str, count: int, args: argparse.Namespace, tmp: Path
) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    """Server 0 migrates; the others start once it is ready, with --no-migrate."""
    env = {
        "AGENT_SERVER_DATABASE_URL": url,
        "AGENT_SERVER_LOG_LEVEL": "WARNING",
        "AGENT_SERVER_RUN_WORKER_ENABLED": "false",
        "AGENT_SERVER_STREAM_POLL_SECONDS": str(args.poll),
        "AGENT_SERVER_WORKSPACE_ROOT": str(tmp / "workspaces"),
        "AGENT_SERVER_SESSION_API_KEYS": None,  # the benchmark sends no key
    }
    servers: list[subprocess.Popen[bytes]] = []
    bases: list[str] = []
    for index in range(count):
        port = free_port()
        with (tmp / f"server{index}.log").open("wb") as out:
            flags = ["--no-migrate"] if index else []
            servers.append(start_server(port, env, flags, stdout=out, stderr=subprocess.STDOUT))
        bases.append(f"http://127.0.0.1:{port}")
        wait_ready(bases[-1], servers[-1], timeout=60)
    return servers, bases


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--database-url", help="default: a SQLite file in a temporary directory")
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--processes", type=parse_list, default=[1, 2])
    parser.add_argument("--events", type=int, default=200, help="timed events per level")
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    parser.add_argument("--poll", type=float, default=0.2, help="SQLite stream poll, seconds")
    parser.add_argument("--client-procs", type=int, default=1, help="subscriber processes")
    parser.add_argument("--keep", action="store_true", help="keep the conversations")
    args = parser.parse_args()
    if min(args.subscribers, args.events, args.rate, args.poll, args.client_procs) <= 0:
        parser.error("--subscribers, --events, --rate, --poll, --client-procs must be > 0")
    started = time.perf_counter()
    servers: list[subprocess.Popen[bytes]] = []
    levels: list[Level] = []
    with tempfile.TemporaryDirectory(prefix="bench-streams-") as tmp_name:
        tmp = Path(tmp_name)
        temporary = args.database_url is None
        url = args.database_url or f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        sqlite = url.startswith("sqlite")
        target_ms = args.poll * 1000 + SQLITE_MARGIN_MS if sqlite else PG_TARGET_MS
        cids: list[str] = []
        try:
            try:
                servers, bases = start_servers(url, max(args.processes), args, tmp)
            except RuntimeError as exc:
                print(f"bench_streams: {exc}", file=sys.stderr)
                return 1
            print(f"database {url}; servers {', '.join(bases)} (pids "
                  f"{', '.join(str(s.pid) for s in servers)}); poll {args.poll} s (SQLite); "
                  f"{args.subscribers} subscribers, {args.events} events at {args.rate}/s; "
                  f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs",
                  flush=True)  # fmt: skip
            pids = [server.pid for server in servers]
            for p in args.processes:
                lv = run_level(bases, pids, args, p, cids)
                levels.append(lv)
                print(f"  {time.strftime('%H:%M:%S')} P={p}: {len(lv.latency_ms)} deliveries, "
                      f"p95 {f1(percentile(lv.latency_ms, 0.95))} ms, "
                      f"{len(lv.errors)} errors", flush=True)  # fmt: skip
            if cids and not (args.keep or temporary):
                delete(bases[0], cids)
        finally:
            for server in servers:
                stop(server)
            for index in range(len(servers)):
                log = tmp / f"server{index}.log"
                lines = log.read_text(errors="replace").splitlines() if log.exists() else []
                if lines:
                    print(f"\nserver {index} log: {len(lines)} lines (WARNING); the first 20:")
                    print("\n".join("  " + line[:300] for line in lines[:20]))
        if levels:
            report(levels, "sqlite" if sqlite else "postgres", target_ms)
    print(f"\nwall time {time.perf_counter() - started:.1f} s")
    bad = [lv for lv in levels if lv.errors or lv.missing or lv.duplicate or lv.out_of_order]
    return 0 if levels and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
