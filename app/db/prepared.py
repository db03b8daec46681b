"""SQLAlchemy Core statements run on a driver's own connection (sqlite3, asyncpg).

The runner's fenced append bypasses the ORM session for a one-trip write, but not the
statements: they are built by the repositories from the `Table` objects, compiled here once
for the engine's dialect, and their values bound by the column types' own processors. So a
row is stored exactly as the ORM path stores it, and a new column is one change.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler


def _identity(value: Any) -> Any:
    return value


class Prepared:
    """A statement compiled once: its SQL text, and the positional values for given binds."""

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        self.dialect = dialect
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        if compiled.positiontup is None:
            raise ValueError(f"{dialect.name}: a positional paramstyle is needed")
        self.sql = str(compiled)
        self._compiled = compiled
        self._binds = [
            (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in compiled.positiontup
        ]
        columns: Sequence[Any] = getattr(statement, "exported_columns", ())
        self._results = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) or _identity
            for column in columns
        ]

    def args(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The positional values: `values` by bind name, the statement's own literals, each
        through its type's bind processor (None stays None)."""
        params = self._compiled.construct_params(dict(values), _check=True)
        return tuple(
            params[name] if process is None or params[name] is None else process(params[name])
            for name, process in self._binds
        )

    def row(self, row: Sequence[Any] | None) -> tuple[Any, ...] | None:
        """A returned row's values as the column types read them."""
        if row is None:
            return None
        return tuple(process(value) for process, value in zip(self._results, row, strict=False))
