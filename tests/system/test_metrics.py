"""The operator's metrics at GET /metrics, driven by real flows: runs by status, worker_lost
and lost leases, LLM calls by model, the database pool and write gate, live streams.

Counters and histograms belong to the test process and other tests add to them: each test
compares a scrape before with one after. Gauges of things a test holds are compared the same
way; runs by status are read from the database, which each test starts empty.
"""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, cast

import httpx
import pytest
from prometheus_client import generate_latest
from sqlalchemy import select, update

from app.clock import utcnow
from app.db.engine import create_engine
from app.db.session import Database
from app.events import service as events_service
from app.events.schemas import Message, MessageEvent, TextContent
from app.metrics import REGISTRY
from app.models import LLMCall, Run, RunStatus
from app.runs import metrics as run_metrics
from app.runs.fenced_append import Appender
from app.runs.journal import Journal, LeaseLost
from app.runs.repository import Lease
from app.streams.hub import EventHub
from tests.conftest import create_conversation, make_app, serve_app, wait_for
from tests.runs.agents import agent_spec
from tests.runs.conftest import (
    FakeLLM,
    RunAppFactory,
    fake_llm_server,
    llm,
    run_app,
    wait_run,
)
from tests.streams.conftest import live_server, sse
from tests.system.scrape import Scrape

__all__ = ["fake_llm_server", "llm", "run_app"]  # fixtures of tests.runs, used here

ALL_STATUSES = {status.value for status in RunStatus}


async def _scrape(client: httpx.AsyncClient) -> Scrape:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text)


async def _start_run(client: httpx.AsyncClient, agent: dict[str, Any], text: str = "") -> str:
    body: dict[str, Any] = {"agent": agent}
    if text:
        body["initial_message"] = {"content": [{"type": "text", "text": text}]}
    created = await client.post("/api/conversations", json=body)
    assert created.status_code == 201, created.text
    started = await client.post(f"/api/conversations/{created.json()['id']}/run")
    assert started.status_code == 202, started.text
    return str(started.json()["id"])


async def test_runs_by_status_follow_a_run_from_queued_to_completed(
    db: Database, run_app: RunAppFactory
) -> None:
    """One grouped query at each scrape: every status is shown (0 when no run has it), the
    queued run is the queue's depth, and once done it counts as completed. A run that ends
    normally loses no lease and is not worker_lost."""
    async with serve_app(make_app(db)) as client:  # no worker: the run stays queued
        empty = await _scrape(client)
        run_id = await _start_run(client, agent_spec("AsyncTestAgent", steps=2))
        queued = await _scrape(client)
    assert empty.statuses() == dict.fromkeys(ALL_STATUSES, 0)
    assert empty.value("agent_server_run_queue_depth") == 0
    assert queued.statuses() == {**dict.fromkeys(ALL_STATUSES, 0), "queued": 1}
    assert queued.value("agent_server_run_queue_depth") == 1
    async with run_app() as client:
        await wait_run(client, run_id, {"completed"})
        done = await _scrape(client)
    assert done.statuses() == {**dict.fromkeys(ALL_STATUSES, 0), "completed": 1}
    assert done.value("agent_server_run_queue_depth") == 0
    for name in ("agent_server_run_leases_lost_total", "agent_server_runs_worker_lost_total"):
        assert done.value(name) == empty.value(name), name


async def test_an_expired_lease_is_swept_as_worker_lost_and_its_runner_counts_the_loss(
    db: Database, run_app: RunAppFactory
) -> None:
    """A long run's lease is expired in SQL: the sweeper fails the run as worker_lost (one
    takeover) and its runner, still alive, finds its lease gone (one loss), each counted
    once however many of the runner's checks notice it."""
    async with run_app() as client:
        before = await _scrape(client)
        run_id = await _start_run(client, agent_spec("AsyncTestAgent", steps=500, sleep=0.05))
        await wait_run(client, run_id, {"running"})
        async with db.session(write=True) as session:
            await session.execute(
                update(Run)
                .where(Run.id == uuid.UUID(run_id))
                .values(lease_expires_at=utcnow() - timedelta(minutes=1))
            )
        run = await wait_run(client, run_id, {"failed", "completed"})
        assert run["stop_reason"] == "worker_lost", run

        async def loss_counted() -> Scrape | None:
            scrape = await _scrape(client)
            lost = scrape.value("agent_server_run_leases_lost_total")
            return scrape if lost > before.value("agent_server_run_leases_lost_total") else None

        await wait_for(loss_counted, "the runner to count its lost lease", limit=20)
        await asyncio.sleep(0.5)  # the control loop and renewals look again meanwhile
        after = await _scrape(client)
    for name in ("agent_server_runs_worker_lost_total", "agent_server_run_leases_lost_total"):
        assert after.value(name) - before.value(name) == 1, name
    assert after.statuses()["failed"] == 1 and after.statuses()["running"] == 0


def _process_scrape() -> Scrape:
    return Scrape(generate_latest(REGISTRY).decode())


async def test_a_lost_lease_is_counted_once_and_a_runs_own_end_is_not_a_loss(
    db: Database,
) -> None:
    """The runner learns of a loss by several paths (the worker's renewal, the control flags,
    a refused fenced write): one run, one count. While the journal writes the run's end, the
    worker seeing the run no longer running is that end, not a loss. Checked once against a
    broken variant (counting on every path): it counted 3."""
    name = "agent_server_run_leases_lost_total"
    before = _process_scrape().value(name)
    journal = Journal(db, cast(Appender, None), Lease(uuid.uuid4(), uuid.uuid4(), 1))
    journal.lost = True  # the worker's renewal was refused
    journal.lost = True  # the control flags show another epoch
    assert isinstance(journal._lose(), LeaseLost)  # a fenced write was refused
    assert journal.lost and _process_scrape().value(name) - before == 1
    ending = Journal(db, cast(Appender, None), Lease(uuid.uuid4(), uuid.uuid4(), 1))
    ending._ending = True  # as Journal.finish sets it before writing the end
    ending.lost = True
    assert ending.lost and _process_scrape().value(name) - before == 1


def _llm_agent(llm: FakeLLM, model: str) -> dict[str, Any]:
    return {"llm": {"model": model, "base_url": llm.model_url, "api_key": "k"}}


async def _calls_of(db: Database, run_id: str) -> list[LLMCall]:
    async with db.session(write=False) as session:
        stmt = select(LLMCall).where(LLMCall.run_id == uuid.UUID(run_id))
        return list((await session.execute(stmt)).scalars())


async def test_llm_calls_tokens_errors_and_latency_by_model(
    db: Database, run_app: RunAppFactory, llm: FakeLLM
) -> None:
    """A failed call (retried) and a successful one of a model seen nowhere else: two calls,
    one error, the fake LLM's 11 prompt and 7 completion tokens, two latencies adding up to
    the llm_calls rows', and no cost (litellm has no price for it)."""
    model = f"openai/metrics-{uuid.uuid4().hex[:8]}"
    await llm.script({"error": 503}, {"text": "hello"})
    async with run_app() as client:
        run_id = await _start_run(client, _llm_agent(llm, model), "hi")
        run = await wait_run(client, run_id, {"completed", "failed"})
        after = await _scrape(client)
    assert run["status"] == "completed", run
    calls = await _calls_of(db, run_id)
    assert len(calls) == 2
    assert after.value("agent_server_llm_calls_total", model=model) == 2
    assert after.value("agent_server_llm_call_errors_total", model=model) == 1
    assert after.value("agent_server_llm_tokens_total", model=model, kind="prompt") == 11
    assert after.value("agent_server_llm_tokens_total", model=model, kind="completion") == 7
    assert after.value("agent_server_llm_call_seconds_count", model=model) == 2
    assert after.value("agent_server_llm_call_seconds_sum", model=model) == pytest.approx(
        sum(c.latency_ms for c in calls) / 1000, rel=1e-6
    )
    assert after.value("agent_server_llm_cost_usd_total", model=model) == 0


async def test_llm_cost_of_a_priced_model(
    db: Database, run_app: RunAppFactory, llm: FakeLLM
) -> None:
    """A model litellm has a price for: the counter grows by the call's recorded cost."""
    model = "openai/gpt-4o-mini"
    await llm.script({"text": "priced"})
    async with run_app() as client:
        before = await _scrape(client)
        run_id = await _start_run(client, _llm_agent(llm, model), "hi")
        await wait_run(client, run_id, {"completed"})
        after = await _scrape(client)
    (call,) = await _calls_of(db, run_id)
    assert call.cost_usd is not None and call.cost_usd > 0
    grown = after.value("agent_server_llm_cost_usd_total", model=model) - before.value(
        "agent_server_llm_cost_usd_total", model=model
    )
    assert grown == pytest.approx(call.cost_usd, rel=1e-9)


@contextlib.asynccontextmanager
async def _small_database(db: Database, **engine: Any) -> AsyncIterator[Database]:
    """A second Database on the test database, with its own (small) pool and write gate."""
    url = db.engine.url.render_as_string(hide_password=False)
    gates = engine.pop("max_concurrent_writes", 4)
    # create_engine resolves a SQLite path: off the loop.
    made = await asyncio.to_thread(create_engine, url, **engine)
    other = Database(made, max_concurrent_writes=gates)
    try:
        yield other
    finally:
        await other.dispose()


async def test_pool_gauges_and_a_scrape_that_answers_when_the_pool_is_exhausted(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pool of 2 + 1 overflow: the test holds all three connections and one more task waits.
    The scrape shows 3 in use, 1 overflow, 1 waiting, and answers without the runs (their
    query could get no connection in time); once released, all are back to 0."""
    monkeypatch.setattr(run_metrics, "QUERY_TIMEOUT_SECONDS", 0.5)
    async with (
        _small_database(db, pool_size=2, max_overflow=1, pool_timeout=30) as small,
        serve_app(make_app(small)) as client,
    ):
        idle = await _scrape(client)
        async with contextlib.AsyncExitStack() as held:
            for _ in range(3):
                await held.enter_async_context(small.engine.connect())
            waiter = asyncio.create_task(small.engine.connect().start())
            await asyncio.sleep(0.1)
            busy = await _scrape(client)
        waiting_conn = await asyncio.wait_for(waiter, 10)
        await waiting_conn.close()
        after = await _scrape(client)
    for name in ("in_use", "overflow", "waiting"):
        assert idle.value(f"agent_server_db_pool_{_POOL[name]}") == 0, name
        assert after.value(f"agent_server_db_pool_{_POOL[name]}") == 0, name
    assert busy.value("agent_server_db_pool_connections_in_use") == 3
    assert busy.value("agent_server_db_pool_overflow_connections") == 1
    assert busy.value("agent_server_db_pool_waiting") == 1
    assert not busy.statuses() and not busy.has("agent_server_run_queue_depth")
    assert idle.statuses() and after.statuses()


_POOL = {"in_use": "connections_in_use", "overflow": "overflow_connections", "waiting": "waiting"}


async def test_write_gate_waits_are_counted_and_timed(db: Database) -> None:
    """One write slot: while a write transaction holds it, a second one waits (the gauge
    shows it); when the first ends after about 0.3 s, the wait is counted once and timed.
    An uncontended write adds nothing."""
    async with (
        _small_database(db, max_concurrent_writes=1) as gated,
        serve_app(make_app(gated)) as client,
    ):
        before = await _scrape(client)
        async with gated.session(write=True):
            pass  # the gate is free: no wait
        holding, release = asyncio.Event(), asyncio.Event()

        async def first() -> None:
            async with gated.session(write=True):
                holding.set()
                await release.wait()

        async def second() -> None:
            async with gated.session(write=True):
                pass

        holder = asyncio.create_task(first())
        await holding.wait()
        waiter = asyncio.create_task(second())

        async def waiting() -> Scrape | None:
            scrape = await _scrape(client)
            return scrape if scrape.value("agent_server_db_write_gate_waiting") == 1 else None

        during = await wait_for(waiting, "the second writer to wait", limit=10, every=0.02)
        await asyncio.sleep(0.3)
        release.set()
        await asyncio.wait_for(asyncio.gather(holder, waiter), 10)
        after = await _scrape(client)
    name = "agent_server_db_write_gate_wait"
    assert during.value(f"{name}s_total") - before.value(f"{name}s_total") == 1
    assert after.value(f"{name}s_total") - before.value(f"{name}s_total") == 1
    assert after.value(f"{name}_seconds_count") - before.value(f"{name}_seconds_count") == 1
    waited = after.value(f"{name}_seconds_sum") - before.value(f"{name}_seconds_sum")
    assert 0.25 <= waited < 10, waited
    assert after.value("agent_server_db_write_gate_waiting") == 0


def _message(text: str) -> MessageEvent:
    return MessageEvent(
        source="user", llm_message=Message(role="user", content=[TextContent(text=text)])
    )


async def test_stream_subscribers_and_a_dropped_slow_client(db: Database) -> None:
    """An SSE client is one subscriber while it streams, none once closed. A hub with a
    5-event buffer gets two subscribers; 12 events later the one that never reads is dropped
    (counted once) and the other still counts; unsubscribing and stopping bring the gauge
    back."""
    subscribers = "agent_server_stream_subscribers"
    dropped = "agent_server_stream_subscribers_dropped_total"
    async with live_server(db) as base, httpx.AsyncClient(base_url=base) as client:
        cid = uuid.UUID(str((await create_conversation(client))["id"]))
        before = await _scrape(client)

        async def subscribed(more: int) -> bool:
            now = (await _scrape(client)).value(subscribers)
            return now - before.value(subscribers) == more

        async with sse(base, cid):  # it subscribes once its response has begun
            await wait_for(lambda: subscribed(1), "the stream to subscribe", limit=10)
        await wait_for(lambda: subscribed(0), "the closed stream to unsubscribe", limit=10)
        hub = EventHub(db, poll_seconds=0.05, max_buffer=5)
        await hub.start()
        try:
            slow = await hub.subscribe(cid, 0)
            fast = await hub.subscribe(cid, 0)
            both = await _scrape(client)
            for i in range(12):
                async with db.session(write=True) as session:
                    await events_service.append(session, cid, [_message(f"m{i}")])
                await fast.next(5)
            await wait_for(lambda: _true(slow.overflowed), "the slow subscriber's drop")
            one = await _scrape(client)
            hub.unsubscribe(fast)
            hub.unsubscribe(slow)  # already dropped: no second decrement
            none = await _scrape(client)
        finally:
            await hub.stop()
        stopped = await _scrape(client)
    assert both.value(subscribers) - before.value(subscribers) == 2
    assert one.value(subscribers) - before.value(subscribers) == 1
    assert one.value(dropped) - before.value(dropped) == 1
    assert none.value(subscribers) == stopped.value(subscribers) == before.value(subscribers)
    assert stopped.value(dropped) - before.value(dropped) == 1


async def _true(value: bool) -> bool:
    return value
