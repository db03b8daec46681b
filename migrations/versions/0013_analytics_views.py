"""analytics views: event_log, messages, tool_calls, run_usage

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02

Read-only views for analysts (docs/schema.md describes their columns, docs/analytics.md
queries them). The same columns with the same meaning on both databases; only the JSON
access, the UTC day and the time difference are written per dialect:

- event_log: every event without its payload, with its UTC day (`YYYY-MM-DD` text).
- messages: every MessageEvent with its role, sender and text (its text parts joined by
  newlines).
- tool_calls: every ActionEvent paired with its answer, the ObservationEvent,
  AgentErrorEvent or UserRejectObservation with the same tool_call_id (the n-th action of
  an id with its n-th later answer). `ok` is 1 only for an observation that is not an error;
  a rejection, an error or no answer yet is 0. `run_id` is the conversation's run whose time
  span holds the action (created at or before it, not finished before it): runs of one
  conversation never overlap.
- run_usage: every run with the sums of its llm_calls.

Views are computed when read: they hold no data and need no backfill. A later migration that
changes a table a view reads must drop the views first and create them again after: SQLite's
batch mode (copy, drop, rename) refuses to rename a table under a view that names it, and
Postgres refuses to drop or retype a column a view reads. `alembic check` does not compare
views (autogenerate reflects tables only).
"""

from collections.abc import Callable, Sequence
from typing import NamedTuple

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS = ("run_usage", "tool_calls", "messages", "event_log")


class _SQL(NamedTuple):
    """The dialect-specific fragments."""

    text: Callable[[str, str], str]  # JSON text at a dotted path, NULL when absent
    is_true: Callable[[str, str], str]  # the JSON value at a dotted path is `true`
    day: Callable[[str], str]  # the UTC day of a timestamp, as YYYY-MM-DD text
    ms_between: Callable[[str, str], str]  # milliseconds from a to b (double), NULL if either is
    message_text: str  # the text parts of e's llm_message, joined by newlines


def _pg_path(path: str) -> str:
    return "'{" + ",".join(path.split(".")) + "}'"


POSTGRES = _SQL(
    text=lambda doc, path: f"({doc} #>> {_pg_path(path)})",
    is_true=lambda doc, path: f"({doc} #> {_pg_path(path)}) = CAST('true' AS jsonb)",
    day=lambda ts: f"to_char({ts} AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    ms_between=lambda a, b: f"CAST(EXTRACT(EPOCH FROM ({b} - {a})) * 1000 AS DOUBLE PRECISION)",
    message_text=(
        "(SELECT string_agg(part ->> 'text', E'\\n' ORDER BY ord) "
        "FROM jsonb_array_elements(CASE WHEN jsonb_typeof(e.payload #> '{llm_message,content}')"
        " = 'array' THEN e.payload #> '{llm_message,content}' ELSE CAST('[]' AS jsonb) END)"
        " WITH ORDINALITY AS parts(part, ord) WHERE part ->> 'text' IS NOT NULL)"
    ),
)

# SQLite keeps times as fixed-width UTC text (2026-12-01T05:00:34.200000Z, migration 0014;
# 2026-12-01 05:00:34.200000 before it): whole seconds from strftime('%s'), microseconds
# from characters 21-26, so a difference is exact to the microsecond.
SQLITE = _SQL(
    text=lambda doc, path: f"json_extract({doc}, '$.{path}')",
    is_true=lambda doc, path: f"json_type({doc}, '$.{path}') = 'true'",
    day=lambda ts: f"substr({ts}, 1, 10)",
    ms_between=lambda a, b: (
        f"((CAST(strftime('%s', {b}) AS INTEGER) - CAST(strftime('%s', {a}) AS INTEGER))"
        f" * 1000000 + CAST(substr({b}, 21, 6) AS INTEGER)"
        f" - CAST(substr({a}, 21, 6) AS INTEGER)) / 1000.0"
    ),
    message_text=(
        "(SELECT group_concat(json_extract(part.value, '$.text'), char(10)) "
        "FROM json_each(e.payload, '$.llm_message.content') AS part "
        "WHERE json_extract(part.value, '$.text') IS NOT NULL)"
    ),
)

ANSWER_KINDS = "'ObservationEvent', 'AgentErrorEvent', 'UserRejectObservation'"


def _event_log(d: _SQL) -> str:
    return f"""CREATE VIEW event_log AS
SELECT e.conversation_id, e.seq, e.id, e.timestamp, {d.day("e.timestamp")} AS day,
    e.kind, e.source
FROM events e"""


def _messages(d: _SQL) -> str:
    return f"""CREATE VIEW messages AS
SELECT e.conversation_id, e.seq, e.id, e.timestamp, {d.day("e.timestamp")} AS day, e.source,
    {d.text("e.payload", "llm_message.role")} AS role,
    {d.text("e.payload", "sender")} AS sender,
    {d.message_text} AS text
FROM events e
WHERE e.kind = 'MessageEvent'"""


def _tool_calls(d: _SQL) -> str:
    call_id = d.text("e.payload", "tool_call_id")
    return f"""CREATE VIEW tool_calls AS
WITH actions AS (
    SELECT e.conversation_id, e.seq, e.timestamp, {call_id} AS tool_call_id,
        {d.text("e.payload", "tool_name")} AS tool_name,
        {d.text("e.payload", "tool_call.arguments")} AS arguments,
        ROW_NUMBER() OVER (PARTITION BY e.conversation_id, {call_id} ORDER BY e.seq) AS nth
    FROM events e
    WHERE e.kind = 'ActionEvent'
),
answers AS (
    SELECT e.conversation_id, e.seq, e.timestamp, e.kind, {call_id} AS tool_call_id,
        CASE WHEN e.kind = 'ObservationEvent'
            AND NOT COALESCE({d.is_true("e.payload", "observation.is_error")}, FALSE)
            THEN 1 ELSE 0 END AS ok,
        ROW_NUMBER() OVER (PARTITION BY e.conversation_id, {call_id} ORDER BY e.seq) AS nth
    FROM events e
    WHERE e.kind IN ({ANSWER_KINDS})
)
SELECT a.conversation_id, a.seq AS action_seq, a.tool_call_id,
    (SELECT r.id FROM runs r
        WHERE r.conversation_id = a.conversation_id AND r.created_at <= a.timestamp
            AND (r.finished_at IS NULL OR r.finished_at >= a.timestamp)
        ORDER BY r.created_at DESC LIMIT 1) AS run_id,
    a.tool_name, a.arguments, COALESCE(w.ok, 0) AS ok, w.kind AS answer_kind,
    w.seq AS answer_seq, a.timestamp AS started_at, w.timestamp AS ended_at,
    {d.ms_between("a.timestamp", "w.timestamp")} AS duration_ms
FROM actions a
LEFT JOIN answers w ON w.conversation_id = a.conversation_id
    AND w.tool_call_id = a.tool_call_id AND w.nth = a.nth AND w.seq > a.seq"""


def _run_usage(d: _SQL) -> str:
    return f"""CREATE VIEW run_usage AS
SELECT r.id AS run_id, r.conversation_id, r.status, r.stop_reason, r.error, r.iterations,
    COUNT(l.id) AS llm_calls,
    COALESCE(SUM(CASE WHEN l.error IS NOT NULL THEN 1 ELSE 0 END), 0) AS llm_errors,
    COALESCE(SUM(l.prompt_tokens), 0) AS prompt_tokens,
    COALESCE(SUM(l.completion_tokens), 0) AS completion_tokens,
    COALESCE(SUM(l.prompt_tokens), 0) + COALESCE(SUM(l.completion_tokens), 0) AS total_tokens,
    SUM(l.cost_usd) AS cost_usd,
    COALESCE(SUM(l.latency_ms), 0) AS llm_latency_total_ms,
    AVG(l.latency_ms) AS llm_latency_mean_ms,
    r.created_at, r.started_at, r.finished_at,
    {d.ms_between("r.started_at", "r.finished_at")} AS duration_ms
FROM runs r
LEFT JOIN llm_calls l ON l.run_id = r.id
GROUP BY r.id, r.conversation_id, r.status, r.stop_reason, r.error, r.iterations,
    r.created_at, r.started_at, r.finished_at"""


def statements(dialect_name: str) -> list[str]:
    """The CREATE VIEW statements for a dialect ("postgresql" or "sqlite")."""
    d = POSTGRES if dialect_name == "postgresql" else SQLITE
    return [_event_log(d), _messages(d), _tool_calls(d), _run_usage(d)]


def upgrade() -> None:
    for statement in statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for view in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
