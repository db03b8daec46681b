"""The wait before an LLM retry: the provider's Retry-After (seconds or an HTTP date,
bounded), else exponential backoff with full jitter."""

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from types import SimpleNamespace

import httpx
import pytest

from app.agent.retry import MAX_RETRY_AFTER_SECONDS, delay, retry_after


def _failure(headers: dict[str, str] | None) -> Exception:
    exc = Exception("rate limited")
    if headers is not None:
        exc.response = httpx.Response(429, headers=headers)  # type: ignore[attr-defined]
    return exc


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after(_failure({"Retry-After": "7"})) == 7.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (retry_after(_failure({"Retry-After": later})) or 0) <= 31
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    assert retry_after(_failure({"Retry-After": past})) == 0.0
    for useless in ({"Retry-After": "soon"}, {"Retry-After": "nan"}, {}, None):
        assert retry_after(_failure(useless)) is None, useless
    assert retry_after(SimpleNamespace(response=None)) is None  # type: ignore[arg-type]


def test_the_delay_follows_retry_after_bounded() -> None:
    assert delay(_failure({"Retry-After": "3"}), attempt=5, base_seconds=100) == 3.0
    huge = _failure({"Retry-After": "86400"})
    assert delay(huge, attempt=0, base_seconds=1) == MAX_RETRY_AFTER_SECONDS


@pytest.mark.parametrize("attempt", [0, 1, 4])
def test_without_retry_after_the_delay_is_jittered_under_the_exponential_cap(
    attempt: int,
) -> None:
    cap = 0.5 * 2**attempt
    draws = {delay(_failure(None), attempt, 0.5) for _ in range(200)}
    assert all(0 <= d <= cap for d in draws)
    assert len(draws) > 150  # spread: a fixed backoff gives one value
    assert max(draws) > cap / 2 and min(draws) < cap / 2
