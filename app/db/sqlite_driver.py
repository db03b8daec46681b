"""aiosqlite with one thread hop per statement.

aiosqlite runs each sqlite3 call on the connection's own thread, and every call is a round
trip: queue the call, wake that thread (it needs the GIL), run, hand the result back through
`call_soon_threadsafe` and wait for the event loop to come round. SQLAlchemy's adapter makes
four such calls per SELECT (create a cursor, execute, fetch all, close the cursor) and three
per other statement. On a busy loop each one waits its turn behind everything else queued
there, and behind whichever thread holds the GIL: the cost of a read under load grows with
the number of hops, not with the work in SQLite.

This adapter runs a statement as one call on that thread: a fresh sqlite3 cursor executes it,
fetches every row and closes, and the description, rows, rowcount and lastrowid come back
together. The rest of SQLAlchemy's adapter is unchanged; server-side cursors (which this
server does not use) keep SQLAlchemy's own. Exceptions are sqlite3's, as before.

It relies on private parts of both libraries: `aiosqlite.Connection._execute` (the queue every
aiosqlite method goes through) and `_conn`, and the slots and hooks of SQLAlchemy's asyncio
cursor. `dbapi()` therefore refuses to start, naming the versions, when either library is
outside the range it was tested with or one of those attributes is gone
(`check_supported`); tests/db/test_sqlite_driver.py exercises every part of it on SQLite.
"""

import collections
import inspect
import re
import sqlite3
from typing import Any

import aiosqlite
import sqlalchemy
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT

# [lowest supported, first unsupported), the same as the pins in pyproject.toml. SQLAlchemy
# 2.0's aiosqlite cursor is a different class (no `_execute_async` hook), hence 2.1.
TESTED_AIOSQLITE = ((0, 20), (0, 23))
TESTED_SQLALCHEMY = ((2, 1), (2, 2))
# What this module reads, calls or overrides, by owner.
_PRIVATE_ATTRIBUTES: tuple[tuple[type, tuple[str, ...]], ...] = (
    (aiosqlite.Connection, ("_execute", "_conn")),
    (
        AsyncAdapt_aiosqlite_cursor,
        (
            "_adapt_connection", "_connection", "_cursor", "_rows", "_soft_closed_memoized",
            "_execute_async", "_executemany_async", "_async_soft_close",
        ),
    ),
    (AsyncAdapt_aiosqlite_connection, ("_connection", "_execute_mutex", "_cursor_cls")),
)  # fmt: skip

_Outcome = tuple[Any, list[Any], int, int | None]


class UnsupportedDriverVersion(RuntimeError):
    """aiosqlite or SQLAlchemy is not a version this adapter was tested with."""


def _version(text: str) -> tuple[int, ...]:
    """The leading numbers of a version string: "2.1.0b1" -> (2, 1, 0)."""
    match = re.match(r"\d+(?:\.\d+)*", text)
    return tuple(int(part) for part in match.group().split(".")) if match else ()


def _in_range(version: str, tested: tuple[tuple[int, ...], tuple[int, ...]]) -> bool:
    low, high = tested
    return low <= _version(version) < high


def _range(tested: tuple[tuple[int, ...], tuple[int, ...]]) -> str:
    low, high = (".".join(map(str, bound)) for bound in tested)
    return f">={low},<{high}"


def check_supported() -> None:
    """Raise UnsupportedDriverVersion unless both libraries are in their tested ranges and
    every private attribute this module relies on is where it expects it."""
    problems = [
        f"{name} {version} is outside {_range(tested)}"
        for name, version, tested in (
            ("aiosqlite", aiosqlite.__version__, TESTED_AIOSQLITE),
            ("SQLAlchemy", sqlalchemy.__version__, TESTED_SQLALCHEMY),
        )
        if not _in_range(version, tested)
    ]
    problems += [
        f"{owner.__module__}.{owner.__qualname__}.{name} is missing"
        for owner, names in _PRIVATE_ATTRIBUTES
        for name in names
        if not hasattr(owner, name)
    ]
    if hasattr(aiosqlite.Connection, "_execute") and not inspect.iscoroutinefunction(
        aiosqlite.Connection._execute
    ):
        problems.append("aiosqlite.Connection._execute is no longer a coroutine function")
    if problems:
        raise UnsupportedDriverVersion(
            f"app/db/sqlite_driver.py supports aiosqlite {_range(TESTED_AIOSQLITE)} and "
            f"SQLAlchemy {_range(TESTED_SQLALCHEMY)}; installed: aiosqlite "
            f"{aiosqlite.__version__}, SQLAlchemy {sqlalchemy.__version__} "
            f"({'; '.join(problems)}). Install versions in those ranges (pyproject.toml pins "
            "them), or run tests/db/test_sqlite_driver.py on SQLite against the new versions "
            "and, once it passes, widen the ranges in app/db/sqlite_driver.py and pyproject.toml."
        )


def _run(connection: aiosqlite.Connection, operation: str, parameters: Any, many: bool) -> _Outcome:
    """On the connection's thread: the whole statement, rows included."""
    cursor = connection._conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """A cursor whose statement ran in full on the connection's thread: nothing to close."""

    __slots__ = ("_arraysize", "_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        # No sqlite3 cursor is made here (that would be a hop): _run makes one per statement.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self._arraysize = 1

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> Any:
        return self._lastrowid

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    async def _async_soft_close(self) -> None:
        return None

    def close(self) -> None:
        self._rows.clear()

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        await self._run(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        await self._run(operation, seq_of_parameters, many=True)

    async def _run(self, operation: str, parameters: Any, *, many: bool) -> None:
        async with self._adapt_connection._execute_mutex:
            outcome: _Outcome = await self._connection._execute(
                _run, self._connection, operation, parameters, many
            )
        self._description, rows, self._rowcount, self._lastrowid = outcome
        self._rows = collections.deque(rows)

    def nextset(self) -> None:
        return None

    def setinputsizes(self, *inputsizes: Any) -> None:
        return None


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneHopCursor  # type: ignore[assignment]


class OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """Pass as `module=` to create_async_engine for a sqlite+aiosqlite URL."""

    def connect(self, *arg: Any, **kw: Any) -> OneHopConnection:
        adapted = super().connect(*arg, **kw)
        return OneHopConnection(self, adapted._connection)


def dbapi() -> OneHopDBAPI:
    """The adapter, once check_supported() has passed: an engine never starts on an untested
    aiosqlite or SQLAlchemy."""
    check_supported()
    return OneHopDBAPI(aiosqlite, sqlite3)
