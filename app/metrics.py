"""Prometheus metrics, served at GET /metrics.

Each process counts its own. With PROMETHEUS_MULTIPROC_DIR set in the environment of every
server process of a host (an empty directory made before they start), prometheus_client
keeps the values in files there and any process's /metrics shows the sum over all of them:
gauges of live state (subscribers, pool connections) add up the live processes
(`livesum`). Numbers read from the database at scrape time (runs by status) are the same
from every process: they are never stored, only added to the scrape that read them.
"""

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
# prometheus_client picks file-backed values when it is first imported, if the environment
# names a directory: the one place that decision is read.
MULTIPROCESS: bool = getattr(values.ValueClass, "_multiprocess", False)

# Per agent step, the runner's time in the database: `wait` is its wall time on database
# calls (the work, plus waiting for a connection, the writer and the event loop); `work` is
# the database's own time on them (Postgres: each statement's time in the server; SQLite: the
# writer thread's CPU time on the step's statements and a share of its group commit).
STEP_DB_SECONDS = Histogram(
    "agent_server_run_step_db_seconds",
    "Time an agent step spent on database calls, by part (wait: the runner's wall time; "
    "work: the database's own time).",
    ["part"],
    buckets=(
        *(0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075),
        *(0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    ),
    registry=REGISTRY,
)

# Every HTTP request, by method, route template (not the path: no series per conversation)
# and status.
HTTP_REQUEST_SECONDS = Histogram(
    "agent_server_http_request_seconds",
    "Time to answer an HTTP request (to the end of its body), by method, route and status.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)

# ---- runs ---------------------------------------------------------------------------------

RUNS_WORKER_LOST = Counter(
    "agent_server_runs_worker_lost_total",
    "Runs this process's sweeper failed as worker_lost: the lease of the worker running them "
    "expired and was taken over (fenced off), so the run ended.",
    registry=REGISTRY,
)
RUN_LEASES_LOST = Counter(
    "agent_server_run_leases_lost_total",
    "Runs of this process whose runner found its lease gone while it was still running "
    "(taken over after it expired, or the conversation was deleted): it stopped writing.",
    registry=REGISTRY,
)

# ---- LLM calls, by model ------------------------------------------------------------------

LLM_CALLS = Counter(
    "agent_server_llm_calls_total",
    "LLM calls made by runs (failed ones and retries included), by model.",
    ["model"],
    registry=REGISTRY,
)
LLM_CALL_ERRORS = Counter(
    "agent_server_llm_call_errors_total",
    "LLM calls that failed (each retry is a call), by model.",
    ["model"],
    registry=REGISTRY,
)
LLM_TOKENS = Counter(
    "agent_server_llm_tokens_total",
    "Tokens of LLM calls as the provider reported them, by model and kind (prompt, completion).",
    ["model", "kind"],
    registry=REGISTRY,
)
LLM_COST_USD = Counter(
    "agent_server_llm_cost_usd_total",
    "Cost of LLM calls in US dollars, by model (calls of a model litellm has no price for add "
    "nothing).",
    ["model"],
    registry=REGISTRY,
)
LLM_CALL_SECONDS = Histogram(
    "agent_server_llm_call_seconds",
    "Latency of LLM calls (failed ones included), by model.",
    ["model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0),
    registry=REGISTRY,
)
# A conversation names its own model: past this many distinct models in one process, further
# ones are counted under OTHER_MODEL, so a client cannot grow the series without bound.
MAX_MODELS = 64
OTHER_MODEL = "other"


@dataclass(frozen=True)
class ModelSeries:
    """The LLM series of one model (labels resolved once, not on every call)."""

    calls: Counter
    errors: Counter
    prompt_tokens: Counter
    completion_tokens: Counter
    cost_usd: Counter
    seconds: Histogram


_models: dict[str, ModelSeries] = {}


def model_series(model: str) -> ModelSeries:
    series = _models.get(model)
    if series is not None:
        return series
    if len(_models) >= MAX_MODELS:
        model = OTHER_MODEL
        if model in _models:
            return _models[model]
    series = ModelSeries(
        calls=LLM_CALLS.labels(model),
        errors=LLM_CALL_ERRORS.labels(model),
        prompt_tokens=LLM_TOKENS.labels(model, "prompt"),
        completion_tokens=LLM_TOKENS.labels(model, "completion"),
        cost_usd=LLM_COST_USD.labels(model),
        seconds=LLM_CALL_SECONDS.labels(model),
    )
    _models[model] = series
    return series


# ---- database -----------------------------------------------------------------------------

DB_POOL_IN_USE = Gauge(
    "agent_server_db_pool_connections_in_use",
    "Connections of the SQLAlchemy pool checked out now.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
DB_POOL_OVERFLOW = Gauge(
    "agent_server_db_pool_overflow_connections",
    "Connections of the SQLAlchemy pool open beyond its pool size (up to its max overflow).",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
DB_POOL_WAITING = Gauge(
    "agent_server_db_pool_waiting",
    "Tasks waiting for a connection of the SQLAlchemy pool (every connection is in use).",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
WRITE_GATE_WAITS = Counter(
    "agent_server_db_write_gate_waits_total",
    "Write transactions that found the write gate taken and waited (SQLite: the process's "
    "write lock; Postgres: all AGENT_SERVER_DB_MAX_CONCURRENT_WRITES slots busy).",
    registry=REGISTRY,
)
WRITE_GATE_WAITING = Gauge(
    "agent_server_db_write_gate_waiting",
    "Write transactions waiting at the write gate now.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
WRITE_GATE_WAIT_SECONDS = Histogram(
    "agent_server_db_write_gate_wait_seconds",
    "How long a write transaction that had to wait waited for the write gate.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)

# ---- live streams -------------------------------------------------------------------------

STREAM_SUBSCRIBERS = Gauge(
    "agent_server_stream_subscribers",
    "Live event stream subscriptions (SSE and WebSocket clients) now.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
STREAM_DROPPED = Counter(
    "agent_server_stream_subscribers_dropped_total",
    "Stream subscribers dropped because their buffer overflowed (a slow client; it resumes "
    "by seq).",
    registry=REGISTRY,
)


# ---- exposition ---------------------------------------------------------------------------


class _Scrape:
    """One scrape: the process's metrics (every process's, in multiprocess mode) and the
    families read for this scrape only."""

    def __init__(self, source: Collector, extra: Sequence[Metric]) -> None:
        self.source = source
        self.extra = extra

    def collect(self) -> Iterable[Metric]:
        yield from self.source.collect()
        yield from self.extra


def _render(extra: Sequence[Metric]) -> bytes:
    source: Collector = REGISTRY
    if MULTIPROCESS:
        source = multiprocess.MultiProcessCollector(None)  # type: ignore[no-untyped-call]
    return generate_latest(_Scrape(source, extra))


async def exposition(extra: Sequence[Metric] = ()) -> bytes:
    """The Prometheus text of the metrics and `extra`. Multiprocess mode reads every
    process's file: off the event loop."""
    if MULTIPROCESS:
        return await asyncio.to_thread(_render, extra)
    return _render(extra)


@contextlib.asynccontextmanager
async def process_gauges(publish: Callable[[], None], every: float = 5.0) -> AsyncIterator[None]:
    """Around a server process's life, in multiprocess mode: call `publish` (it sets this
    process's sampled gauges) every `every` seconds, so another process's scrape reads fresh
    values; at the end remove this process's live gauges from the sum. Nothing otherwise."""
    if not MULTIPROCESS:
        yield
        return

    async def sample() -> None:
        while True:
            try:
                publish()
            except Exception:
                logger.exception("publishing this process's gauges failed")
            await asyncio.sleep(every)

    task = asyncio.create_task(sample(), name="metrics-sampler")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.to_thread(multiprocess.mark_process_dead, os.getpid())
