"""SQLAlchemy Core statements run on a driver's own connection (sqlite3, asyncpg).

The runner's fenced append bypasses the ORM session for a one-trip write, but not the
statements: they are built by the repositories from the `Table` objects, compiled here once
for the engine's dialect, and their values bound by the column types' own processors. So a
row is stored exactly as the ORM path stores it, and a new column is one change.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler


def _identity(value: Any) -> Any:
    return value


class Prepared:
    """A statement compiled once: its SQL text, and the positional values for given binds."""

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        if compiled.positiontup is None:
            raise ValueError(f"{dialect.name}: a positional paramstyle is needed")
        self.sql = str(compiled)
        # Per position: the bind's name and type processor, and for the statement's own
        # literals (the binds a caller does not give) their value, processed once here.
        self._binds: list[tuple[str, Callable[[Any], Any] | None, bool, Any]] = []
        for name in compiled.positiontup:
            bind = compiled.binds[name]
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                self._binds.append((name, process, False, None))
            else:
                value = bind.effective_value
                constant = value if process is None or value is None else process(value)
                self._binds.append((name, None, True, constant))
        columns: Sequence[Any] = getattr(statement, "exported_columns", ())
        self._results = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) or _identity
            for column in columns
        ]

    def args(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The positional values: `values` by bind name (each one the statement needs; a
        missing one is a KeyError) and the statement's own literals, each through its type's
        bind processor (None stays None)."""
        args = []
        for name, process, is_constant, constant in self._binds:
            if is_constant:
                args.append(constant)
            else:
                value = values[name]
                args.append(value if process is None or value is None else process(value))
        return tuple(args)

    def row(self, row: Sequence[Any] | None) -> tuple[Any, ...] | None:
        """A returned row's values as the column types read them."""
        if row is None:
            return None
        return tuple(process(value) for process, value in zip(self._results, row, strict=False))
