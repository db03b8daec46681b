"""Prometheus metrics of this process, served at GET /metrics."""

from prometheus_client import CollectorRegistry, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

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
