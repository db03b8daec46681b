"""The body filter: a case-insensitive substring match, narrowed by a trigram index.

`search_text` holds each event's text case-folded, and `LIKE '%...%'` on it decides every
match. A trigram index only narrows the candidates:
- Postgres: a pg_trgm GIN index on search_text (migration 0003), which the planner uses for
  the LIKE itself when the term is rare, and skips when an ordered scan is cheaper.
- SQLite: an FTS5 trigram table over search_text (migration 0003, kept by triggers); its
  MATCH is added as `rowid IN (...)` for terms of 3+ characters. Search pages first scan a
  short window of seqs in order (cheap when the term is common in the conversation), then use
  the index for the rest only when it holds fewer candidates, across all conversations, than
  the rows left to scan; counts make the same choice. So the cost is bounded by the smaller
  of the two.
"""

from sqlalchemy import ColumnElement, Integer, column, literal_column, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Event

FTS_MIN_CHARS = 3
# Seqs scanned in order before a SQLite search falls back to the trigram index.
SCAN_WINDOW = 500


def contains_pattern(body: str) -> str:
    """A LIKE pattern matching `body` anywhere, case-folded, with % _ and \\ taken literally."""
    escaped = body.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def uses_fts(dialect: str, body: str | None) -> bool:
    return dialect == "sqlite" and body is not None and len(body.casefold()) >= FTS_MIN_CHARS


def _phrase(body: str) -> str:
    return '"' + body.casefold().replace('"', '""') + '"'


def body_conditions(body: str, *, fts: bool) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [Event.search_text.like(contains_pattern(body), escape="\\")]
    if fts:
        matches = (
            text("SELECT rowid FROM events_fts WHERE events_fts MATCH :phrase")
            .bindparams(phrase=_phrase(body))
            .columns(column("rowid", Integer))
        )
        conds.append(literal_column("events.rowid").in_(matches))
    return conds


async def index_is_cheaper(session: AsyncSession, body: str, rows_to_scan: int) -> bool:
    """Whether the trigram index has fewer candidates (in every conversation) than the rows
    an ordered scan would read; counting stops at `rows_to_scan`, so asking is cheap."""
    if rows_to_scan <= 0:
        return False
    stmt = text(
        "SELECT count(*) FROM (SELECT rowid FROM events_fts WHERE events_fts MATCH :phrase "
        "LIMIT :cap)"
    ).bindparams(phrase=_phrase(body), cap=rows_to_scan)
    candidates = int((await session.execute(stmt)).scalar_one())
    return candidates < rows_to_scan
