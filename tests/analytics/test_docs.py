"""docs/analytics.md shows each statement of app/analytics/questions.py verbatim, and
docs/schema.md names every table, column, index, constraint and view of the migrated
database.

Checked once against a broken variant: with a space added to one statement in the module,
test_every_question_is_in_the_doc_verbatim fails; with the `llm_errors` row taken out of the
`run_usage` table of schema.md, test_schema_doc_names_every_view_column fails."""

import re
from pathlib import Path
from typing import Any

from sqlalchemy import inspect

from app.analytics.questions import QUESTIONS
from app.db.base import Base
from app.db.session import Database

DOCS = Path(__file__).resolve().parents[2] / "docs"
# Read at import: the async test runs under blockbuster, which refuses file reads on the loop.
ANALYTICS = (DOCS / "analytics.md").read_text()
SCHEMA = (DOCS / "schema.md").read_text()


def _sql_blocks(markdown: str) -> list[str]:
    return re.findall(r"```sql\n(.*?)\n```", markdown, flags=re.DOTALL)


def _section(markdown: str, name: str) -> str:
    """The text under the `### `name`` heading, up to the next heading."""
    match = re.search(rf"^### `{name}`\n(.*?)(?=^#)", markdown + "\n#", re.MULTILINE | re.DOTALL)
    assert match, f"docs/schema.md has no section for {name}"
    return match.group(1)


def _rows(section: str) -> set[str]:
    """The names in the first cell of a section's tables."""
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE))


def test_every_question_is_in_the_doc_verbatim() -> None:
    blocks = _sql_blocks(ANALYTICS)
    assert blocks == [q.sql for q in QUESTIONS]


def test_schema_doc_names_every_table_column_index_and_constraint() -> None:
    for table in Base.metadata.sorted_tables:
        assert _rows(_section(SCHEMA, table.name)) == {c.name for c in table.columns}, table
        names = [index.name for index in table.indexes]
        names += [constraint.name for constraint in table.constraints]
        for name in names:
            assert f"`{name}`" in SCHEMA, name


async def test_schema_doc_names_every_view_column(db: Database) -> None:
    def views(connection: Any) -> dict[str, list[str]]:
        inspector = inspect(connection)
        return {
            view: [column["name"] for column in inspector.get_columns(view)]
            for view in inspector.get_view_names()
        }

    async with db.engine.connect() as connection:
        found = await connection.run_sync(views)
    assert set(found) == {"event_log", "messages", "tool_calls", "run_usage"}
    for view, columns in found.items():
        assert _rows(_section(SCHEMA, view)) == set(columns), view
