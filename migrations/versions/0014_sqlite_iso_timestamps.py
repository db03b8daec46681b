"""SQLite: every UTCDateTime column rewritten as fixed-width ISO 8601 UTC text

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02

SQLite stored times as `2026-12-01 05:00:34.200000` (SQLAlchemy's default text form): a space
where ISO 8601 has `T`, so `timestamp >= '2026-12-01T05:00:00+00:00'` compared a space with a
`T` and was wrong for every row of that day. UTCDateTime now stores
`2026-12-01T05:00:34.200000Z` (app/db/types.py), the form events show their timestamps in;
the width is still fixed, so string order stays time order for ordering, keyset pagination
and ranges. This rewrites every existing value of every UTCDateTime column: rows in the old
form with one UPDATE per column; any other text (written by hand, say with an offset) is
parsed in Python, converted to UTC and rewritten, a batch of rows at a time. A value that is
not a date and time stops the migration, naming its row.

The downgrade rewrites the new form back into the old. Postgres stores timestamptz: nothing
changes there.
"""

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger("alembic.runtime.migration")

BATCH = 1000
# Every UTCDateTime column at this revision (a copy: a migration keeps what it was written
# for; tests/analytics/test_timestamps.py checks it against the models).
COLUMNS: dict[str, tuple[str, ...]] = {
    "conversations": ("created_at", "updated_at", "last_event_at"),
    "events": ("timestamp",),
    "runs": ("lease_expires_at", "created_at", "started_at", "finished_at"),
    "llm_calls": ("created_at",),
    "skills": ("created_at", "updated_at"),
    "skill_revisions": ("created_at",),
}
_D = "[0-9]"
# GLOB patterns of whole values: the old form and the new one.
OLD = f"{_D * 4}-{_D * 2}-{_D * 2} {_D * 2}:{_D * 2}:{_D * 2}.{_D * 6}"
NEW = f"{_D * 4}-{_D * 2}-{_D * 2}T{_D * 2}:{_D * 2}:{_D * 2}.{_D * 6}Z"
NEW_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def _normalised(table: str, column: str, rowid: int, value: object) -> str:
    """Any ISO 8601 text as the new form; naive text is UTC, as UTCDateTime always meant."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise ValueError(f"{table}.{column} of rowid {rowid} is not a time: {value!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(NEW_FORMAT)


def _rewrite_others(table: str, column: str) -> None:
    """The values in neither form, parsed one by one (each rewritten value then matches NEW,
    so the loop ends)."""
    bind = op.get_bind()
    select = sa.text(
        f'SELECT rowid, "{column}" FROM {table} '
        f'WHERE "{column}" IS NOT NULL AND NOT ("{column}" GLOB :new) LIMIT {BATCH}'
    )
    update = sa.text(f'UPDATE {table} SET "{column}" = :value WHERE rowid = :rowid')
    while rows := bind.execute(select, {"new": NEW}).all():
        changes = [
            {"rowid": rowid, "value": _normalised(table, column, rowid, value)}
            for rowid, value in rows
        ]
        bind.execute(update, changes)
        logger.info("%s.%s: %d values in another form rewritten", table, column, len(rows))


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, columns in COLUMNS.items():
        for column in columns:
            op.execute(
                sa.text(
                    f'UPDATE {table} SET "{column}" = '
                    f"substr(\"{column}\", 1, 10) || 'T' || substr(\"{column}\", 12) || 'Z' "
                    f'WHERE "{column}" GLOB :old'
                ).bindparams(old=OLD)
            )
            _rewrite_others(table, column)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, columns in COLUMNS.items():
        for column in columns:
            op.execute(
                sa.text(
                    f'UPDATE {table} SET "{column}" = '
                    f'substr("{column}", 1, 10) || \' \' || substr("{column}", 12, 15) '
                    f'WHERE "{column}" GLOB :new'
                ).bindparams(new=NEW)
            )
