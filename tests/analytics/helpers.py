"""Running a question and reading its rows the same way on both databases."""

import math
from decimal import Decimal
from typing import Any

from sqlalchemy import text

from app.analytics.questions import QUESTIONS, Question
from app.db.session import Database


def question(name: str) -> Question:
    return next(q for q in QUESTIONS if q.name == name)


def plain(value: Any) -> Any:
    """Postgres answers numeric sums and ROUND as Decimal, SQLite as int or float; booleans
    as bool or 0/1. Compared as Python numbers."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


async def ask(db: Database, name: str, **params: Any) -> list[tuple[Any, ...]]:
    async with db.session(write=False) as session:
        result = await session.execute(question(name).statement(), params)
        return [tuple(plain(v) for v in row) for row in result]


async def rows(db: Database, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    async with db.session(write=False) as session:
        result = await session.execute(text(sql), params)
        return [tuple(plain(v) for v in row) for row in result]


def same_rows(found: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> bool:
    """Row for row; floats to a relative 1e-9 (sums may add in another order)."""
    assert len(found) == len(expected), (found, expected)
    for got, want in zip(found, expected, strict=True):
        assert len(got) == len(want), (got, want)
        for g, w in zip(got, want, strict=True):
            close = isinstance(w, float) and isinstance(g, float) and math.isclose(g, w)
            assert close or g == w, (got, want)
    return True
