"""Ten analyst questions, each one SQL statement that runs unchanged on SQLite and Postgres.

They read the tables and the views of migration 0013 (docs/schema.md). docs/analytics.md shows
the same text with what each answers (tests/analytics/test_docs.py keeps the two equal).
Inputs are bind parameters: `Question.statement()` types them, so a time window is sent as
each database stores time (Postgres: a timestamptz; SQLite: the fixed-width UTC text) and
the result's ids and times come back as UUIDs and aware datetimes on both.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sqlalchemy import Integer, String, TextClause, Uuid, bindparam, text
from sqlalchemy.sql.selectable import TextualSelect
from sqlalchemy.types import TypeEngine

from app.db.types import UTCDateTime

EVENTS_PER_KIND_PER_DAY = """\
SELECT day, kind, COUNT(*) AS events
FROM event_log
GROUP BY day, kind
ORDER BY day, kind"""

TOKENS_AND_COST_PER_CONVERSATION_AND_MODEL = """\
SELECT l.conversation_id, c.title, l.model, COUNT(*) AS llm_calls,
    COALESCE(SUM(l.prompt_tokens), 0) AS prompt_tokens,
    COALESCE(SUM(l.completion_tokens), 0) AS completion_tokens,
    COALESCE(SUM(l.prompt_tokens), 0) + COALESCE(SUM(l.completion_tokens), 0) AS total_tokens,
    SUM(l.cost_usd) AS cost_usd
FROM llm_calls l
JOIN conversations c ON c.id = l.conversation_id
GROUP BY l.conversation_id, c.title, l.model
ORDER BY total_tokens DESC, l.conversation_id, l.model"""

TOOL_ERROR_RATE = """\
SELECT tool_name, COUNT(*) AS calls,
    SUM(CASE WHEN ok = 0 AND answer_kind IN ('ObservationEvent', 'AgentErrorEvent')
        THEN 1 ELSE 0 END) AS errors,
    SUM(CASE WHEN answer_kind = 'UserRejectObservation' THEN 1 ELSE 0 END) AS rejected,
    SUM(CASE WHEN answer_kind IS NULL THEN 1 ELSE 0 END) AS unanswered,
    ROUND(100.0 * SUM(1 - ok) / COUNT(*), 1) AS error_pct
FROM tool_calls
GROUP BY tool_name
ORDER BY error_pct DESC, tool_name"""

LLM_LATENCY_PERCENTILES = """\
SELECT model, COUNT(*) AS llm_calls,
    MIN(CASE WHEN 100 * nth >= 50 * calls THEN latency_ms END) AS p50_ms,
    MIN(CASE WHEN 100 * nth >= 95 * calls THEN latency_ms END) AS p95_ms,
    MAX(latency_ms) AS max_ms
FROM (
    SELECT model, latency_ms,
        ROW_NUMBER() OVER (PARTITION BY model ORDER BY latency_ms) AS nth,
        COUNT(*) OVER (PARTITION BY model) AS calls
    FROM llm_calls
) ranked
GROUP BY model
ORDER BY model"""

RUNS_BY_STATUS_AND_STOP_REASON = """\
SELECT status, stop_reason, COUNT(*) AS runs, SUM(iterations) AS iterations,
    SUM(llm_calls) AS llm_calls, SUM(total_tokens) AS total_tokens, SUM(cost_usd) AS cost_usd
FROM run_usage
GROUP BY status, stop_reason
ORDER BY runs DESC, status, COALESCE(stop_reason, '')"""

MESSAGES_PER_CONVERSATION = """\
SELECT c.id AS conversation_id, c.title, COUNT(m.seq) AS messages,
    SUM(CASE WHEN m.role = 'user' THEN 1 ELSE 0 END) AS from_user,
    SUM(CASE WHEN m.role = 'assistant' THEN 1 ELSE 0 END) AS from_assistant,
    MIN(m.timestamp) AS first_at, MAX(m.timestamp) AS last_at
FROM conversations c
LEFT JOIN messages m ON m.conversation_id = c.id
GROUP BY c.id, c.title
ORDER BY messages DESC, c.id"""

SLOWEST_TOOL_CALLS = """\
SELECT conversation_id, run_id, tool_name, duration_ms, ok, started_at, ended_at
FROM tool_calls
WHERE ended_at IS NOT NULL
ORDER BY duration_ms DESC, conversation_id, action_seq
LIMIT :limit"""

LARGEST_CONVERSATIONS = """\
SELECT c.id AS conversation_id, c.title, COALESCE(e.events, 0) AS events,
    COALESCE(u.total_tokens, 0) AS total_tokens, u.cost_usd, e.last_event_at
FROM conversations c
LEFT JOIN (
    SELECT conversation_id, COUNT(*) AS events, MAX(timestamp) AS last_event_at
    FROM events
    GROUP BY conversation_id
) e ON e.conversation_id = c.id
LEFT JOIN (
    SELECT conversation_id, SUM(cost_usd) AS cost_usd,
        SUM(COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0)) AS total_tokens
    FROM llm_calls
    GROUP BY conversation_id
) u ON u.conversation_id = c.id
ORDER BY events DESC, total_tokens DESC, c.id
LIMIT :limit"""

EVENTS_IN_WINDOW_WITH_WORD = """\
SELECT conversation_id, seq, timestamp, kind, source
FROM events
WHERE timestamp >= :start AND timestamp < :end
    AND search_text LIKE '%' || lower(:word) || '%'
ORDER BY timestamp, conversation_id, seq"""

SKILL_EDIT_HISTORY = """\
SELECT s.name, r.version, r.created_at,
    CASE WHEN r.enabled THEN 1 ELSE 0 END AS enabled,
    CASE WHEN p.version IS NULL THEN 'created' ELSE 'edited' END AS change,
    CASE WHEN p.description <> r.description THEN 1 ELSE 0 END AS description_changed,
    CASE WHEN p.content <> r.content THEN 1 ELSE 0 END AS content_changed,
    CASE WHEN p.enabled <> r.enabled THEN 1 ELSE 0 END AS enabled_changed,
    LENGTH(r.content) AS content_chars
FROM skill_revisions r
JOIN skills s ON s.id = r.skill_id
LEFT JOIN skill_revisions p ON p.skill_id = r.skill_id AND p.version = r.version - 1
ORDER BY s.name, r.version"""


def _types(**types: TypeEngine[Any]) -> Mapping[str, TypeEngine[Any]]:
    return MappingProxyType(types)


_UUID: TypeEngine[Any] = Uuid()
_TIME: TypeEngine[Any] = UTCDateTime()


@dataclass(frozen=True)
class Question:
    """One statement: its binds' types and the types of the result columns that are ids or
    times (the rest are numbers and text on both databases)."""

    name: str
    title: str
    sql: str
    params: Mapping[str, TypeEngine[Any]] = field(default_factory=_types)
    columns: Mapping[str, TypeEngine[Any]] = field(default_factory=_types)

    def statement(self) -> TextClause | TextualSelect:
        stmt = text(self.sql)
        if self.params:
            stmt = stmt.bindparams(*(bindparam(n, type_=t) for n, t in self.params.items()))
        return stmt.columns(**self.columns) if self.columns else stmt


QUESTIONS: tuple[Question, ...] = (
    Question("EVENTS_PER_KIND_PER_DAY", "Events per kind per day", EVENTS_PER_KIND_PER_DAY),
    Question(
        "TOKENS_AND_COST_PER_CONVERSATION_AND_MODEL",
        "Tokens and cost per conversation and model",
        TOKENS_AND_COST_PER_CONVERSATION_AND_MODEL,
        columns=_types(conversation_id=_UUID),
    ),
    Question("TOOL_ERROR_RATE", "Tool error rate", TOOL_ERROR_RATE),
    Question("LLM_LATENCY_PERCENTILES", "LLM latency p50 and p95", LLM_LATENCY_PERCENTILES),
    Question(
        "RUNS_BY_STATUS_AND_STOP_REASON",
        "Runs by status and stop reason",
        RUNS_BY_STATUS_AND_STOP_REASON,
    ),
    Question(
        "MESSAGES_PER_CONVERSATION",
        "Messages per conversation",
        MESSAGES_PER_CONVERSATION,
        columns=_types(conversation_id=_UUID, first_at=_TIME, last_at=_TIME),
    ),
    Question(
        "SLOWEST_TOOL_CALLS",
        "Slowest tool calls",
        SLOWEST_TOOL_CALLS,
        params=_types(limit=Integer()),
        columns=_types(conversation_id=_UUID, run_id=_UUID, started_at=_TIME, ended_at=_TIME),
    ),
    Question(
        "LARGEST_CONVERSATIONS",
        "Largest conversations",
        LARGEST_CONVERSATIONS,
        params=_types(limit=Integer()),
        columns=_types(conversation_id=_UUID, last_event_at=_TIME),
    ),
    Question(
        "EVENTS_IN_WINDOW_WITH_WORD",
        "Events in a time window containing a word",
        EVENTS_IN_WINDOW_WITH_WORD,
        params=_types(start=_TIME, end=_TIME, word=String()),
        columns=_types(conversation_id=_UUID, timestamp=_TIME),
    ),
    Question(
        "SKILL_EDIT_HISTORY",
        "Skill edit history",
        SKILL_EDIT_HISTORY,
        columns=_types(created_at=_TIME),
    ),
)
