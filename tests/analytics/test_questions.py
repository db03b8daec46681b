"""The ten questions of app/analytics/questions.py against the known dataset: the exact
answers, the same on SQLite and Postgres.

Checked once against broken variants: with the percentile condition `100 * nth > 50 * calls`
(one rank too far) the latency test fails; with the window's end as `<=` the word-in-window
test fails (B's message at exactly the end comes in)."""

from datetime import timedelta, timezone

import pytest

from app.analytics.questions import QUESTIONS
from app.db.session import Database
from tests.analytics.dataset import T0, T1, Seeded, at, seed
from tests.analytics.helpers import ask, same_rows


@pytest.fixture
async def data(db: Database) -> Seeded:
    return await seed(db)


def test_ten_questions_with_unique_names() -> None:
    assert len(QUESTIONS) == 10
    assert len({q.name for q in QUESTIONS}) == len({q.sql for q in QUESTIONS}) == 10


async def test_1_events_per_kind_per_day(db: Database, data: Seeded) -> None:
    assert await ask(db, "EVENTS_PER_KIND_PER_DAY") == [
        ("2026-12-01", "ActionEvent", 3),
        ("2026-12-01", "AgentErrorEvent", 1),
        ("2026-12-01", "MessageEvent", 2),
        ("2026-12-01", "ObservationEvent", 2),
        ("2026-12-01", "SystemPromptEvent", 1),
        ("2026-12-03", "ActionEvent", 2),
        ("2026-12-03", "MessageEvent", 1),
        ("2026-12-03", "UserRejectObservation", 1),
    ]


async def test_2_tokens_and_cost_per_conversation_and_model(db: Database, data: Seeded) -> None:
    found = await ask(db, "TOKENS_AND_COST_PER_CONVERSATION_AND_MODEL")
    assert same_rows(
        found,
        [
            (data.a, "alpha", "gpt-a", 4, 500, 90, 590, 0.035),
            (data.b, "beta", "gpt-b", 10, 100, 50, 150, 0.01),
            (data.b, "beta", "gpt-a", 1, 7, 3, 10, None),  # no price known: NULL, not 0
        ],
    )


async def test_3_tool_error_rate(db: Database, data: Seeded) -> None:
    # terminal: A c1 ok, A c3 AgentErrorEvent, B c1 rejected, B c4 unanswered.
    assert await ask(db, "TOOL_ERROR_RATE") == [
        ("file_editor", 1, 1, 0, 0, 100.0),
        ("terminal", 4, 1, 1, 1, 75.0),
    ]


async def test_4_llm_latency_percentiles(db: Database, data: Seeded) -> None:
    """Nearest rank: gpt-a's five latencies 50..800 give p50 = the 3rd, p95 = the 5th;
    gpt-b's ten (10, 20, ..., 100) the 5th and the 10th."""
    assert await ask(db, "LLM_LATENCY_PERCENTILES") == [
        ("gpt-a", 5, 400.0, 800.0, 800.0),
        ("gpt-b", 10, 50.0, 100.0, 100.0),
    ]


async def test_5_runs_by_status_and_stop_reason(db: Database, data: Seeded) -> None:
    found = await ask(db, "RUNS_BY_STATUS_AND_STOP_REASON")
    assert same_rows(
        found,
        [
            ("completed", "finished", 1, 3, 3, 540, 0.03),
            ("failed", "error", 1, 0, 1, 50, 0.005),
            ("queued", None, 1, 0, 0, 0, None),
            ("running", None, 1, 1, 10, 150, 0.01),
        ],
    )


async def test_6_messages_per_conversation(db: Database, data: Seeded) -> None:
    assert await ask(db, "MESSAGES_PER_CONVERSATION") == [
        (data.a, "alpha", 2, 1, 1, T0, at(T0, 6)),
        (data.b, "beta", 1, 1, 0, T1, T1),
        (data.c, "gamma", 0, 0, 0, None, None),
    ]


async def test_7_slowest_tool_calls(db: Database, data: Seeded) -> None:
    assert await ask(db, "SLOWEST_TOOL_CALLS", limit=3) == [
        (data.b, data.run_b, "terminal", 2000.0, 0, at(T1, 1), at(T1, 3)),
        (data.a, data.run_a, "terminal", 1500.0, 1, at(T0, 2), at(T0, 3.5)),
        (data.a, data.run_a, "file_editor", 250.0, 0, at(T0, 4), at(T0, 4.25)),
    ]


async def test_8_largest_conversations(db: Database, data: Seeded) -> None:
    found = await ask(db, "LARGEST_CONVERSATIONS", limit=3)
    assert same_rows(
        found,
        [
            (data.a, "alpha", 9, 590, 0.035, at(T0, 6)),
            (data.b, "beta", 4, 160, 0.01, at(T1, 4)),
            (data.c, "gamma", 0, 0, None, None),
        ],
    )
    assert len(await ask(db, "LARGEST_CONVERSATIONS", limit=1)) == 1


async def test_9_events_in_a_window_containing_a_word(db: Database, data: Seeded) -> None:
    """Half-open [start, end): A's first message at exactly `start` is in, B's message at
    exactly `end` is out; the word matches case-insensitively (search_text is case-folded)."""
    found = await ask(db, "EVENTS_IN_WINDOW_WITH_WORD", start=T0, end=T1, word="LIST")
    assert found == [
        (data.a, 1, T0, "MessageEvent", "user"),
        (data.a, 9, at(T0, 6), "MessageEvent", "agent"),
    ]
    later = await ask(db, "EVENTS_IN_WINDOW_WITH_WORD", start=T1, end=at(T1, 1), word="list")
    assert later == [(data.b, 1, T1, "MessageEvent", "user")]
    # The same instant given in another offset is the same window.
    new_york = timezone(timedelta(hours=-5))
    shifted = {"start": T0.astimezone(new_york), "end": T1.astimezone(new_york)}
    assert await ask(db, "EVENTS_IN_WINDOW_WITH_WORD", word="list", **shifted) == found


async def test_10_skill_edit_history(db: Database, data: Seeded) -> None:
    minute = timedelta(minutes=1)
    assert await ask(db, "SKILL_EDIT_HISTORY") == [
        ("alpha-skill", 1, T0, 1, "created", 0, 0, 0, 8),
        ("deploy", 1, T0 + minute, 1, "created", 0, 0, 0, 8),
        ("deploy", 2, T0 + 2 * minute, 1, "edited", 1, 1, 0, 17),
        ("deploy", 3, T0 + 3 * minute, 0, "edited", 0, 0, 1, 17),
    ]
