"""events.search_text: cut stored rows to the first 65,536 characters, as appends now do

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

The body filter matches within that prefix of an event's text (app/events/schemas.py,
SEARCH_TEXT_CHARS); longer rows written before made searches in their conversation slow.
SQLite's events_fts follows through its update trigger, Postgres's trigram index by itself.
The downgrade leaves the rows cut: the text beyond the prefix is still in `payload`.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCH_TEXT_CHARS = 65_536  # a copy: a migration keeps the value it was written with


def upgrade() -> None:
    op.execute(
        f"UPDATE events SET search_text = substr(search_text, 1, {SEARCH_TEXT_CHARS}) "
        f"WHERE length(search_text) > {SEARCH_TEXT_CHARS}"
    )


def downgrade() -> None:
    pass
