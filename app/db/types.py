"""Column types that behave the same on SQLite and Postgres."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

# How SQLite stores a UTCDateTime: fixed-width ISO 8601 in UTC, as events show their
# timestamps (`2026-12-01T05:00:34.200000Z`). Fixed width keeps string order time order, and
# the `T` form compares right against ISO 8601 literals (see docs/analytics.md).
SQLITE_STORAGE_FORMAT = (
    "%(year)04d-%(month)02d-%(day)02dT%(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06dZ"
)

# SQLAlchemy's documented way to choose SQLite's text form; reading stays fromisoformat.
_SQLITE_DATETIME = sqlite.DATETIME(storage_format=SQLITE_STORAGE_FORMAT)  # type: ignore[no-untyped-call]


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    Postgres stores timestamptz. SQLite has no time zones: values are stored as UTC text in
    SQLITE_STORAGE_FORMAT and come back aware (text in the older `2026-12-01 05:00:34.200000`
    form still reads as UTC). Naive input is refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_SQLITE_DATETIME)
        return super().load_dialect_impl(dialect)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UTCDateTime needs a timezone-aware datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONType: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")
