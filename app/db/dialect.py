"""The few statements that differ between SQLite and Postgres."""

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert


def dialect_name(session: AsyncSession | str) -> str:
    """The session's dialect name ("sqlite" or "postgresql"); a name stays as it is."""
    return session if isinstance(session, str) else session.get_bind().dialect.name


def _insert(session: AsyncSession | str, table: Any) -> postgresql.Insert | sqlite.Insert:
    if dialect_name(session) == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_ignore_conflict(
    session: AsyncSession, table: Any, index_elements: list[str], index_where: Any = None
) -> Insert:
    """INSERT ... ON CONFLICT (index_elements) [WHERE index_where] DO NOTHING for the
    session's dialect; `index_where` names a partial unique index by its predicate."""
    return _insert(session, table).on_conflict_do_nothing(
        index_elements=index_elements, index_where=index_where
    )


def upsert_add(session: AsyncSession | str, table: Any, key: list[str], column: str) -> Insert:
    """INSERT ...; on a key conflict add the new row's `column` to the stored one."""
    stmt = _insert(session, table)
    return stmt.on_conflict_do_update(
        index_elements=key, set_={column: table.c[column] + stmt.excluded[column]}
    )
