"""Telling "the database cannot serve this now" apart from a bug.

A request that finds no free pooled connection within the pool timeout, is refused by a
Postgres at its connection limit or in start-up/shut-down, loses its connection mid-way, or
finds SQLite locked past its busy timeout, has hit a passing condition of the server, not an
error in the request or in the code: it answers 503 with Retry-After, not 500.
"""

import sqlite3
from collections.abc import Iterator

from sqlalchemy import exc as sa_exc

from app.errors import ServiceUnavailable

# Seconds a client is told to wait before retrying (Retry-After of every such 503).
RETRY_AFTER_SECONDS = 1

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
    for cause in _causes(error):
        reason = _reason(cause)
        if reason is not None:
            return reason
    return None


def connection_lost(error: BaseException) -> bool:
    """True when `error` is the database connection breaking (not a refusal or a timeout)."""
    return any(
        (isinstance(cause, sa_exc.DBAPIError) and cause.connection_invalidated)
        or isinstance(cause, ConnectionError)
        or str(getattr(cause, "sqlstate", "")).startswith("08")
        for cause in _causes(error)
    )


def _causes(error: BaseException) -> Iterator[BaseException]:
    """`error`, then what caused it (the driver's error a SQLAlchemy error wraps, or the
    exception it was raised from or during), each once."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        current = (
            orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
        )


def sqlite_busy(error: BaseException) -> bool:
    """True when `error` is SQLite's "database is locked" after its busy timeout."""
    return any(
        isinstance(cause, sqlite3.OperationalError) and str(cause).startswith(_SQLITE_BUSY)
        for cause in _causes(error)
    )


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


class CommitOutcomeUnknown(ServiceUnavailable):
    """The connection broke while the database was committing: the change may or may not
    have been made. Retrying with the same Idempotency-Key tells which, and never makes it
    twice."""

    code = "commit_outcome_unknown"

    def __init__(self) -> None:
        super().__init__(
            "the database connection was lost while committing: the change may or may not have"
            " been saved; retry with the same Idempotency-Key to get its outcome (without one,"
            " read before retrying)",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


class WriteBusy(ServiceUnavailable):
    """A write could not get its turn in time: this process's writers are queued behind a
    slow or stuck one (or, on SQLite, another process holds the file's write lock)."""

    code = "database_busy"

    def __init__(self, why: str) -> None:
        super().__init__(
            f"the database is busy: {why}; try again later",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
