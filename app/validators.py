"""Checks shared by request schemas."""

import math
from typing import Any

# What orjson (and so the JSON columns) can write: signed or unsigned 64-bit integers.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "NUL characters (\\u0000) are not allowed"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "lone UTF-16 surrogates are not allowed (the text is not valid Unicode)"
    return None


def reject_unstorable(value: Any) -> Any:
    """A pydantic `mode="before"` check on a request body: refuse (422) what the database
    cannot store as given, anywhere in the body: NUL characters and lone surrogates in
    strings or keys, integers beyond 64 bits, NaN and infinities."""
    stack = [value]
    while stack:
        item = stack.pop()
        problem = None
        if isinstance(item, str):
            problem = _string_problem(item)
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if not _INT_MIN <= item <= _INT_MAX:
                problem = "integers must fit in 64 bits"
        elif isinstance(item, float):
            if not math.isfinite(item):
                problem = "NaN and infinite numbers are not allowed"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        if problem is not None:
            raise ValueError(problem)
    return value
