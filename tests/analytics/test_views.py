"""The views of migration 0013, row by row, against the known dataset, on both databases.

Checked once against broken variants: `ok` computed without the observation's `is_error`
(A's c2 then reads ok) and the pairing without the conversation in its join (B's c1 then
pairs with A's answer) each fail test_tool_calls."""

import uuid
from typing import Any

import pytest
from sqlalchemy import Uuid, bindparam, text

from app.db.session import Database
from app.db.types import UTCDateTime
from app.events import service as events_service
from tests.analytics.dataset import T0, T1, Seeded, action, at, observation, seed
from tests.analytics.helpers import plain, same_rows

TIME = UTCDateTime()


@pytest.fixture
async def data(db: Database) -> Seeded:
    return await seed(db)


async def _view(
    db: Database, sql: str, ids: dict[str, uuid.UUID] | None = None, **types: Any
) -> list[tuple[Any, ...]]:
    """Rows of a view; ids (bound and read) and times read through the app's column types."""
    stmt = text(sql)
    if ids:
        stmt = stmt.bindparams(*(bindparam(name, type_=Uuid()) for name in ids))
    async with db.session(write=False) as session:
        result = await session.execute(stmt.columns(**types), ids or {})
        return [tuple(plain(v) for v in row) for row in result]


async def test_tool_calls(db: Database, data: Seeded) -> None:
    found = await _view(
        db,
        "SELECT conversation_id, action_seq, tool_call_id, run_id, tool_name, arguments, ok,"
        " answer_kind, answer_seq, started_at, ended_at, duration_ms FROM tool_calls"
        " ORDER BY started_at",
        conversation_id=Uuid(),
        run_id=Uuid(),
        started_at=TIME,
        ended_at=TIME,
    )
    a, b, run_a, run_b = data.a, data.b, data.run_a, data.run_b
    assert same_rows(
        found,
        [
            (a, 3, "c1", run_a, "terminal", '{"command": "ls"}', 1, "ObservationEvent", 4,
             at(T0, 2), at(T0, 3.5), 1500.0),
            # An observation with is_error: answered, not ok.
            (a, 5, "c2", run_a, "file_editor", '{"command": "view", "path": "a.txt"}', 0,
             "ObservationEvent", 6, at(T0, 4), at(T0, 4.25), 250.0),
            # Exact to the microsecond on both databases.
            (a, 7, "c3", run_a, "terminal", '{"command": "make"}', 0, "AgentErrorEvent", 8,
             at(T0, 5), at(T0, 5.1, 123), 100.123),
            # The same tool_call_id as A's first call: paired within its own conversation.
            (b, 2, "c1", run_b, "terminal", '{"command": "pytest"}', 0,
             "UserRejectObservation", 3, at(T1, 1), at(T1, 3), 2000.0),
            # Pending: no answer, no end, not ok.
            (b, 4, "c4", run_b, "terminal", '{"command": "sleep 100"}', 0, None, None,
             at(T1, 4), None, None),
        ],
    )  # fmt: skip


async def test_tool_calls_pair_a_reused_call_id_in_order(db: Database, data: Seeded) -> None:
    """A second call with an id already answered pairs with the next answer, not the first;
    a call outside every run's span has no run."""
    again = action("c1", "terminal", '{"command": "ls -l"}', at(T0, 3600))
    async with db.session(write=True) as session:
        await events_service.import_events(
            session, data.a, [again, observation(again, at(T0, 3600.5), "x", error=False)]
        )
    found = await _view(
        db,
        "SELECT action_seq, answer_seq, ok, run_id, duration_ms FROM tool_calls"
        " WHERE tool_call_id = 'c1' AND conversation_id = :cid ORDER BY action_seq",
        ids={"cid": data.a},
        run_id=Uuid(),
    )
    assert found == [(3, 4, 1, data.run_a, 1500.0), (10, 11, 1, None, 500.0)]


async def test_run_usage(db: Database, data: Seeded) -> None:
    found = await _view(
        db,
        "SELECT run_id, conversation_id, status, stop_reason, error, iterations, llm_calls,"
        " llm_errors, prompt_tokens, completion_tokens, total_tokens, cost_usd,"
        " llm_latency_total_ms, llm_latency_mean_ms, created_at, started_at, finished_at,"
        " duration_ms FROM run_usage ORDER BY created_at",
        run_id=Uuid(),
        conversation_id=Uuid(),
        created_at=TIME,
        started_at=TIME,
        finished_at=TIME,
    )
    assert same_rows(
        found,
        [
            (data.run_a0, data.a, "failed", "error", "boom", 0, 1, 1, 50, 0, 50, 0.005,
             800.0, 800.0, at(T0, -3600), at(T0, -3590), at(T0, -3500), 90_000.0),
            (data.run_a, data.a, "completed", "finished", None, 3, 3, 1, 450, 90, 540, 0.03,
             1200.0, 400.0, at(T0, 0.5), at(T0, 1), at(T0, 7), 6000.0),
            (data.run_b, data.b, "running", None, None, 1, 10, 0, 100, 50, 150, 0.01,
             550.0, 55.0, at(T1, 0.5), at(T1, 0.5), None, None),
            # No LLM call: zero counts, and NULL where there is nothing to price or average.
            (data.run_c, data.c, "queued", None, None, 0, 0, 0, 0, 0, 0, None,
             0.0, None, at(T1, 10), None, None, None),
        ],
    )  # fmt: skip


async def test_messages(db: Database, data: Seeded) -> None:
    found = await _view(
        db,
        "SELECT conversation_id, seq, timestamp, day, source, role, sender, text FROM messages"
        " ORDER BY timestamp",
        conversation_id=Uuid(),
        timestamp=TIME,
    )
    assert found == [
        (data.a, 1, T0, "2026-12-01", "user", "user", None, "Please list the files"),
        # Text parts joined by a newline, the image part left out.
        (data.a, 9, at(T0, 6), "2026-12-01", "agent", "assistant", None, "Done listing\na.txt"),
        (data.b, 1, T1, "2026-12-03", "user", "user", None, "Please list the tests"),
    ]


async def test_event_log(db: Database, data: Seeded) -> None:
    found = await _view(
        db,
        "SELECT seq, kind, source, day FROM event_log WHERE conversation_id = :cid ORDER BY seq",
        ids={"cid": data.b},
    )
    assert found == [
        (1, "MessageEvent", "user", "2026-12-03"),
        (2, "ActionEvent", "agent", "2026-12-03"),
        (3, "UserRejectObservation", "environment", "2026-12-03"),
        (4, "ActionEvent", "agent", "2026-12-03"),
    ]
