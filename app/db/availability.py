"""Telling "the database cannot serve this now" apart from a bug.

A request that finds no free pooled connection within the pool timeout, is refused by a
Postgres at its connection limit or in start-up/shut-down, loses its connection mid-way, or
finds SQLite locked past its busy timeout, has hit a passing condition of the server, not an
error in the request or in the code: it answers 503 with Retry-After, not 500.
"""

import sqlite3

from sqlalchemy import exc as sa_exc

# Postgres SQLSTATEs of a server that cannot take this connection or query now.
_UNAVAILABLE_SQLSTATES = {
    "53300",  # too_many_connections
    "57P01",  # admin_shutdown
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now (starting up, in recovery)
    "08000",  # connection_exception
    "08001",  # sqlclient_unable_to_establish_sqlconnection
    "08003",  # connection_does_not_exist
    "08004",  # sqlserver_rejected_establishment_of_sqlconnection
    "08006",  # connection_failure
}
_SQLITE_BUSY = ("database is locked", "database is busy", "database table is locked")


def unavailable_reason(error: BaseException) -> str | None:
    """Why the database could not serve the request now, or None when `error` is not that."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        reason = _reason(current)
        if reason is not None:
            return reason
        orig = getattr(current, "orig", None)
        current = (
            orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
        )
    return None


def _reason(error: BaseException) -> str | None:
    if isinstance(error, sa_exc.TimeoutError):
        return "no database connection became free in time; the server is busy"
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return "the database connection was lost"
    if getattr(error, "sqlstate", None) in _UNAVAILABLE_SQLSTATES:
        return "the database is not accepting connections now"
    if isinstance(error, sqlite3.OperationalError) and str(error).startswith(_SQLITE_BUSY):
        return "the database is busy (locked by another writer)"
    if isinstance(error, ConnectionError):
        return "the database cannot be reached"
    return None
