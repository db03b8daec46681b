"""How long to wait before retrying a failed LLM call: the provider's Retry-After when it
gives one (bounded), else exponential backoff with full jitter, so that runs failing
together do not retry together."""

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

MAX_RETRY_AFTER_SECONDS = 60.0


def retry_after(exc: BaseException) -> float | None:
    """The seconds a provider's Retry-After header asks for (a number, or an HTTP date), if
    the failure carries a response that has one."""
    headers: Any = getattr(getattr(exc, "response", None), "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - datetime.now(UTC)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def delay(exc: BaseException, attempt: int, base_seconds: float) -> float:
    """The wait before retry number `attempt` (0 first): Retry-After if given (at most
    MAX_RETRY_AFTER_SECONDS), else a uniform draw in [0, base * 2**attempt]."""
    asked = retry_after(exc)
    if asked is not None:
        return min(asked, MAX_RETRY_AFTER_SECONDS)
    return random.uniform(0.0, base_seconds * 2**attempt)
