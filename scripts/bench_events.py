"""Benchmark the event search and count endpoints against a seeded conversation.

For each size in --events the script migrates the database, creates one conversation and
appends that many mixed events through the store (app.events.service.append). It then starts
the real server (`python -m app.cli serve --no-migrate`) on a free port of 127.0.0.1 and times
each query over HTTP with one keep-alive client, printing p50/p95 against the latency targets.

Usage:

    .venv/bin/python scripts/bench_events.py --database-url sqlite+aiosqlite:////tmp/bench.db \\
        --events 1000,100000
    .venv/bin/python scripts/bench_events.py \\
        --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/bench --events 1000,100000

The Postgres database must exist (`createdb -h 127.0.0.1 -U postgres bench`). Each size gets
its own conversation in the same database. Without --keep the seeded conversations are
deleted at the end (their events go with them through ON DELETE CASCADE); with --keep they
stay and their ids are printed.

After seeding, the script refreshes planner statistics (VACUUM (ANALYZE) on Postgres, ANALYZE
on SQLite), as autovacuum would on a production server; --no-analyze skips that.

Events are appended in batches, each its own write transaction sharing one timestamp; a batch
is min(1000, N // 100) events, so the 40%..60% timestamp window selects a real slice.
"""

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # so `app` imports when run as `python scripts/...`

from app.config import Settings  # noqa: E402
from app.conversations import service as conversations_service  # noqa: E402
from app.conversations.schemas import AgentSpec, ConversationCreate, LLMConfig  # noqa: E402
from app.db import migrations  # noqa: E402
from app.db.session import Database  # noqa: E402
from app.events import schemas as ev  # noqa: E402
from app.events import service as events_service  # noqa: E402
from app.vault.service import Vault  # noqa: E402
from tests.procs import free_port, percentile, print_table, start_server, stop, wait_ready  # noqa: E402

RARE_WORD = "zebracorn"
RARE_RATE = 0.01
MAX_BATCH = 1000
PAGE = 100
DEEP_PAGES = 10
TARGETS_MS = {
    "first page": 10.0, "deep page": 10.0, "kind filter": 10.0, "body filter": 100.0,
    "timestamp window": 10.0, "count": 25.0, "filtered count": 25.0,
}  # fmt: skip
MAX_RATIO = 1.5
_WORDS = (
    "the a of to in and for with on file test function error value list config server "
    "request response database query index table row column commit branch build module "
    "import class method return string number check update create delete read write path "
    "directory output input result python script run install package version fix bug "
    "issue change line code logic cache timeout retry user agent tool call step plan "
    "should could will now then first next because however works fails passes"
)
VOCABULARY = tuple(_WORDS.split())
TOOLS = ("execute_bash", "str_replace_editor", "browser", "think", "finish")
# (kind, weight): every action is followed by its observation, so about 45% of events are
# messages, 22% actions, 22% observations, then state updates, errors, system prompts.
MIX = (("user", 12), ("agent", 33), ("action", 22), ("error", 4), ("state", 6), ("system", 1))


@dataclass
class Seeded:
    size: int
    conversation_id: uuid.UUID
    seconds: float
    store_seconds: float
    rare_count: int
    id_at_40: str
    id_at_60: str


@dataclass
class Row:
    query: str
    size: int
    p50: float
    p95: float
    note: str = ""


class EventFactory:
    """Deterministic, realistic-looking events from a seeded random.Random."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.kinds, self.weights = [k for k, _ in MIX], [w for _, w in MIX]
        self.last_action: ev.ActionEvent | None = None

    def text(self) -> str:
        target = self.rng.randint(100, 300)
        words: list[str] = []
        length = 0
        while length < target:
            word = self.rng.choice(VOCABULARY)
            words.append(word)
            length += len(word) + 1
        if self.rng.random() < RARE_RATE:
            words[self.rng.randrange(len(words))] = RARE_WORD
        return " ".join(words).capitalize() + "."

    def event(self) -> ev.EventBase:
        if self.last_action is not None:
            action, self.last_action = self.last_action, None
            return ev.ObservationEvent(
                tool_name=action.tool_name,
                tool_call_id=action.tool_call_id,
                action_id=action.id,
                observation={
                    "kind": "TerminalObservation",
                    "command": None,
                    "content": [{"type": "text", "text": self.text()}],
                    "is_error": False,
                    "exit_code": self.rng.choice((0, 0, 0, 1)),
                },
            )
        kind = self.rng.choices(self.kinds, self.weights)[0]
        if kind in ("user", "agent"):
            role = "user" if kind == "user" else "assistant"
            message = ev.Message(role=role, content=[ev.TextContent(text=self.text())])
            return ev.MessageEvent(source=kind, llm_message=message)
        if kind == "action":
            tool = self.rng.choice(TOOLS)
            command = " ".join(self.rng.choices(VOCABULARY, k=self.rng.randint(3, 8)))
            call_id = f"call_{uuid.UUID(int=self.rng.getrandbits(128)).hex[:24]}"
            self.last_action = ev.ActionEvent(
                thought=[ev.TextContent(text=self.text())],
                tool_name=tool,
                tool_call_id=call_id,
                tool_call=ev.ToolCall(
                    id=call_id, name=tool, arguments=json.dumps({"command": command})
                ),
                action={"kind": "TerminalAction", "command": command},
                llm_response_id=f"resp_{self.rng.getrandbits(64):x}",
            )
            return self.last_action
        if kind == "error":
            return ev.AgentErrorEvent(
                error=self.text(), tool_name=self.rng.choice(TOOLS), tool_call_id="call_x"
            )
        if kind == "system":
            return ev.SystemPromptEvent(
                system_prompt=ev.TextContent(text=self.text()),
                tools=[{"kind": "TerminalTool", "title": tool} for tool in TOOLS],
            )
        state = self.rng.choice(("running", "idle", "paused", "finished"))
        return ev.ConversationStateUpdateEvent(key="execution_status", value=state)


async def seed(url: str, size: int) -> Seeded:
    db = Database.from_url(url)
    try:
        async with db.session(write=True) as session:
            data = ConversationCreate(
                title=f"bench_events {size}", agent=AgentSpec(llm=LLMConfig(model="bench"))
            )
            vault = Vault.from_settings(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
            conversation, _ = await conversations_service.create(session, data, vault)
            conversation_id = conversation.id
        factory = EventFactory(seed=size)
        batch_size = max(1, min(MAX_BATCH, size // 100))
        marks = {max(1, round(size * 0.4)): "", max(1, round(size * 0.6)): ""}
        rare, seq, store_seconds = 0, 0, 0.0
        started = time.perf_counter()
        while seq < size:
            batch = [factory.event() for _ in range(min(batch_size, size - seq))]
            for event in batch:
                seq += 1
                rare += RARE_WORD in event.search_text()
                if seq in marks:
                    marks[seq] = event.id
            store_started = time.perf_counter()
            async with db.session(write=True) as session:
                await events_service.append(session, conversation_id, batch)
            store_seconds += time.perf_counter() - store_started
        seconds = time.perf_counter() - started
    finally:
        await db.dispose()
    ids = list(marks.values())
    return Seeded(size, conversation_id, seconds, store_seconds, rare, ids[0], ids[-1])


async def analyze(url: str) -> str:
    """Refresh planner statistics after the bulk load, as autovacuum would in production."""
    db = Database.from_url(url)
    try:
        if db.is_sqlite:
            async with db.engine.begin() as conn:
                await conn.exec_driver_sql("ANALYZE")
            return "ANALYZE"
        autocommit = db.engine.execution_options(isolation_level="AUTOCOMMIT")
        async with autocommit.connect() as conn:
            await conn.exec_driver_sql("VACUUM (ANALYZE) events")
            await conn.exec_driver_sql("VACUUM (ANALYZE) conversations")
        return "VACUUM (ANALYZE)"
    finally:
        await db.dispose()


async def delete_conversations(url: str, conversation_ids: list[uuid.UUID]) -> None:
    db = Database.from_url(url)
    try:
        async with db.session(write=True) as session:  # events go by ON DELETE CASCADE
            for conversation_id in conversation_ids:
                await conversations_service.delete(session, conversation_id)
    finally:
        await db.dispose()


def get_json(client: httpx.Client, path: str, params: dict[str, Any] | None = None) -> Any:
    response = client.get(path, params=params)
    if response.status_code != 200:
        sys.exit(
            f"bench_events: GET {response.request.url} answered {response.status_code}: "
            f"{response.text[:500]}"
        )
    return response.json()


def time_interleaved(
    client: httpx.Client, targets: list[tuple[str, dict[str, Any]]], requests: int
) -> list[tuple[float, float]]:
    """p50/p95 per target, taking turns request by request, so that drift in the machine's
    speed (other tenants, CPU frequency) falls on every size alike."""
    for path, params in targets:
        for _ in range(10):
            get_json(client, path, params)
    samples: list[list[float]] = [[] for _ in targets]
    for _ in range(requests):
        for index, (path, params) in enumerate(targets):
            started = time.perf_counter()
            get_json(client, path, params)
            samples[index].append((time.perf_counter() - started) * 1000)
    results = []
    for series in samples:
        series.sort()
        results.append((percentile(series, 0.50), percentile(series, 0.95)))
    return results


def plan_queries(
    client: httpx.Client, seeded: Seeded
) -> list[tuple[str, str, dict[str, Any], str]]:
    base = f"/api/conversations/{seeded.conversation_id}/events"
    search, count = f"{base}/search", f"{base}/count"
    deep: dict[str, Any] = {"limit": PAGE}
    depth = 0
    while depth < DEEP_PAGES * PAGE:
        next_page_id = get_json(client, search, deep)["next_page_id"]
        if next_page_id is None:
            break
        deep, depth = {"limit": PAGE, "page_id": next_page_id}, depth + PAGE
    deep_note = "" if depth == DEEP_PAGES * PAGE else f"only {depth} deep: N < 1100"
    t40 = get_json(client, f"{base}/{seeded.id_at_40}")["timestamp"]
    t60 = get_json(client, f"{base}/{seeded.id_at_60}")["timestamp"]
    window = get_json(client, count, {"timestamp__gte": t40, "timestamp__lt": t60})
    queries: list[tuple[str, str, dict[str, Any], str]] = [
        ("first page", search, {"limit": PAGE}, ""),
        ("deep page", search, deep, deep_note),
        ("kind filter", search, {"kind": "ActionEvent", "limit": PAGE}, ""),
        ("body filter", search, {"body": RARE_WORD, "limit": PAGE}, ""),
        ("timestamp window", search,
         {"timestamp__gte": t40, "timestamp__lt": t60, "limit": PAGE},
         f"{window} events in window"),
        ("count", count, {}, ""),
        ("filtered count", count, {"kind": "ObservationEvent"}, ""),
    ]  # fmt: skip
    return queries


def measure(client: httpx.Client, seeded: list[Seeded], requests: int) -> list[Row]:
    """Time every query on every size, the sizes interleaved request by request."""
    plans = [plan_queries(client, one) for one in seeded]
    rows: list[Row] = []
    for index, (name, *_rest) in enumerate(plans[0]):
        targets = [(plan[index][1], plan[index][2]) for plan in plans]
        for one, plan, (p50, p95) in zip(
            seeded, plans, time_interleaved(client, targets, requests), strict=True
        ):
            rows.append(Row(name, one.size, p50, p95, plan[index][3]))
            print(f"  {name:<17} N={one.size:<8} p50 {p50:8.2f} ms  p95 {p95:8.2f} ms", flush=True)
    rows.sort(key=lambda row: row.size)
    return rows


def print_results(rows: list[Row], sizes: list[int]) -> None:
    body = []
    for row in rows:
        target = TARGETS_MS[row.query]
        body.append(
            [row.query, str(row.size), f"{row.p50:.2f}", f"{row.p95:.2f}", f"{target:.0f}",
             "OK" if row.p50 <= target else "MISS", row.note]
        )  # fmt: skip
    print_table(["query", "N", "p50 ms", "p95 ms", "target p50 ms", "OK/MISS", "note"], body)
    if len(sizes) < 2:
        return
    small, large = min(sizes), max(sizes)
    by_key = {(row.query, row.size): row for row in rows}
    body = []
    for query in TARGETS_MS:
        p_small, p_large = by_key[(query, small)].p50, by_key[(query, large)].p50
        ratio = p_large / p_small
        ok = "OK" if ratio <= MAX_RATIO else "MISS"
        body.append([query, f"{p_small:.2f}", f"{p_large:.2f}", f"{ratio:.2f}", ok])
    headers = ["query", f"p50 ms N={small}", f"p50 ms N={large}", "ratio", f"<= {MAX_RATIO}"]
    print_table(headers, body)


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from exc
    if not sizes or any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError("sizes must be positive integers")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--events", required=True, type=parse_sizes, help="e.g. 1000,100000")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per query")
    parser.add_argument("--keep", action="store_true", help="leave the seeded conversations")
    parser.add_argument(
        "--no-analyze",
        action="store_true",
        help="skip VACUUM (ANALYZE) / ANALYZE after seeding (measures a never-vacuumed table)",
    )
    args = parser.parse_args()
    url: str = args.database_url
    sizes: list[int] = args.events
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    print(f"database: {make_url(url).get_backend_name()}  ({make_url(url).render_as_string()})")

    seeded: list[Seeded] = []
    try:
        for size in sizes:
            migrations.upgrade(url)  # before asyncio.run: alembic's env.py runs its own loop
            result = asyncio.run(seed(url, size))
            seeded.append(result)
            print(
                f"seeded N={size}: conversation {result.conversation_id} in "
                f"{result.seconds:.2f} s ({size / result.seconds:,.0f} events/s; "
                f"{result.store_seconds:.2f} s of it in append); "
                f"{result.rare_count} events ({result.rare_count / size:.2%}) "
                f"contain {RARE_WORD!r}",
                flush=True,
            )
        if not args.no_analyze:
            print(f"ran {asyncio.run(analyze(url))} after seeding", flush=True)
        port = free_port()
        env = {
            "AGENT_SERVER_DATABASE_URL": url,
            "AGENT_SERVER_LOG_LEVEL": "WARNING",
            "AGENT_SERVER_SESSION_API_KEYS": None,  # the benchmark sends no key
        }
        server = start_server(port, env, args=["--no-migrate"])
        rows: list[Row] = []
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60.0) as client:
                try:
                    wait_ready(f"http://127.0.0.1:{port}", server, timeout=60.0)
                except RuntimeError as exc:
                    sys.exit(f"bench_events: {exc}")
                print(f"server ready on 127.0.0.1:{port} (pid {server.pid}); "
                      f"{args.requests} timed requests per query after 10 warm-up")  # fmt: skip
                rows = measure(client, seeded, args.requests)
        finally:
            stop(server)
        print_results(rows, sizes)
    finally:
        ids = [result.conversation_id for result in seeded]
        if args.keep:
            print(f"\n--keep: left seeded conversation(s): {', '.join(map(str, ids)) or 'none'}")
        elif ids:
            asyncio.run(delete_conversations(url, ids))
            print(f"\ndeleted seeded conversation(s) {', '.join(map(str, ids))} and their events")


if __name__ == "__main__":
    main()
