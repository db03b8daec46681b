"""Checks shared by request schemas."""

import math
from collections.abc import Iterator
from itertools import chain
from typing import Any

# What orjson (and so the JSON columns) can write: signed or unsigned 64-bit integers.
INT_MIN, INT_MAX = -(2**63), 2**64 - 1

# Shape bounds on a request body, far above any legitimate one (a message of 100 parts with
# 20 image URLs each is about 2,500 values): deeper JSON could not be stored or serialized
# back (pydantic stops at a fixed depth), and every value costs time to validate and store.
MAX_JSON_DEPTH = 32  # nested arrays and objects, the body itself being the first
MAX_JSON_VALUES = 10_000  # values and object keys, counted together
TOO_DEEP = f"JSON is nested deeper than {MAX_JSON_DEPTH} levels"
TOO_MANY_VALUES = f"JSON holds more than {MAX_JSON_VALUES} values and keys"


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "NUL characters (\\u0000) are not allowed"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "lone UTF-16 surrogates are not allowed (the text is not valid Unicode)"
    return None


def _scalar_problem(item: object) -> str | None:
    if isinstance(item, str):
        return _string_problem(item)
    if isinstance(item, bool):
        return None
    if isinstance(item, int):
        return None if INT_MIN <= item <= INT_MAX else "integers must fit in 64 bits"
    if isinstance(item, float) and not math.isfinite(item):
        return "NaN and infinite numbers are not allowed"
    return None


def reject_unstorable(value: Any) -> Any:
    """A pydantic `mode="before"` check on a request body: refuse (422) what the database
    cannot store as given, anywhere in the body: NUL characters and lone surrogates in
    strings or keys, integers beyond 64 bits, NaN and infinities; and bodies nested deeper
    than MAX_JSON_DEPTH or holding more than MAX_JSON_VALUES values and keys.

    One depth-first walk that stops at the first problem: a container's size is counted
    before its items are visited, so a hostile body costs at most MAX_JSON_VALUES steps.
    """
    # One iterator per open container: the stack's height is the depth.
    open_containers: list[Iterator[Any]] = [iter((value,))]
    values = 0
    while open_containers:
        for item in open_containers[-1]:
            if isinstance(item, dict | list | tuple):
                if len(open_containers) > MAX_JSON_DEPTH:
                    raise ValueError(TOO_DEEP)
                children: Iterator[Any]
                if isinstance(item, dict):
                    values += 2 * len(item)
                    children = chain.from_iterable(item.items())
                else:
                    values += len(item)
                    children = iter(item)
                if values > MAX_JSON_VALUES:
                    raise ValueError(TOO_MANY_VALUES)
                open_containers.append(children)
                break
            problem = _scalar_problem(item)
            if problem is not None:
                raise ValueError(problem)
        else:
            open_containers.pop()
    return value
