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

It relies on `aiosqlite.Connection._execute`, the queue every aiosqlite method goes through
(the version range is pinned in pyproject.toml; every SQLite test goes through this path).
"""

import collections
import sqlite3
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT

_Outcome = tuple[Any, list[Any], int, int | None]


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
    return OneHopDBAPI(aiosqlite, sqlite3)
