"""trigram index for the body filter (pg_trgm on Postgres, FTS5 on SQLite)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

Postgres: creates the pg_trgm extension (a trusted extension: the database owner may create
it) and a GIN index on events.search_text. If the extension cannot be created, the index is
skipped with a warning and the body filter stays a scan. The downgrade leaves the extension.

SQLite: an external-content FTS5 table with the trigram tokenizer over events.search_text,
kept in step by triggers, and filled from the existing events.

Neither object is described by the ORM models; migrations/env.py leaves them out of
`alembic check`, and tests/db/test_migrations.py checks that they exist.
"""

import logging
from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger("alembic.runtime.migration")

SQLITE_UP = [
    "CREATE VIRTUAL TABLE events_fts USING fts5("
    "search_text, content='events', content_rowid='rowid', tokenize='trigram')",
    "CREATE TRIGGER events_fts_ai AFTER INSERT ON events BEGIN "
    "INSERT INTO events_fts(rowid, search_text) VALUES (new.rowid, new.search_text); END",
    "CREATE TRIGGER events_fts_ad AFTER DELETE ON events BEGIN "
    "INSERT INTO events_fts(events_fts, rowid, search_text) "
    "VALUES ('delete', old.rowid, old.search_text); END",
    "CREATE TRIGGER events_fts_au AFTER UPDATE OF search_text ON events BEGIN "
    "INSERT INTO events_fts(events_fts, rowid, search_text) "
    "VALUES ('delete', old.rowid, old.search_text); "
    "INSERT INTO events_fts(rowid, search_text) VALUES (new.rowid, new.search_text); END",
    "INSERT INTO events_fts(events_fts) VALUES ('rebuild')",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS events_fts_au",
    "DROP TRIGGER IF EXISTS events_fts_ad",
    "DROP TRIGGER IF EXISTS events_fts_ai",
    "DROP TABLE IF EXISTS events_fts",
]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        with bind.begin_nested() as savepoint:
            try:
                op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            except Exception as exc:
                savepoint.rollback()
                logger.warning("pg_trgm unavailable (%s); body filter stays a scan", exc)
                return
        op.execute(
            "CREATE INDEX IF NOT EXISTS ix_events_search_text_trgm "
            "ON events USING gin (search_text gin_trgm_ops)"
        )
    else:
        for statement in SQLITE_UP:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_events_search_text_trgm")
    else:
        for statement in SQLITE_DOWN:
            op.execute(statement)
