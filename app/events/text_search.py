"""The body filter: a case-insensitive substring match, narrowed by a trigram index.

`search_text` holds each event's text case-folded, and `LIKE '%...%'` on it decides every
match. A trigram index only narrows the candidates:
- Postgres: a pg_trgm GIN index on search_text (migration 0003), which the planner uses for
  the LIKE itself when the term is rare, and skips when an ordered scan is cheaper.
- SQLite: an FTS5 trigram table over search_text (migration 0003, kept by triggers); its
  MATCH is added as `rowid IN (...)` for terms of 3+ characters. Search pages first scan a
  short window of seqs in order (cheap when the term is common) and use the index for the
  rest (cheap when it is rare).
"""

from sqlalchemy import ColumnElement, Integer, column, literal_column, text

from app.models import Event

FTS_MIN_CHARS = 3
# Seqs scanned in order before a SQLite search falls back to the trigram index.
SCAN_WINDOW = 2000


def contains_pattern(body: str) -> str:
    """A LIKE pattern matching `body` anywhere, case-folded, with % _ and \\ taken literally."""
    escaped = body.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def uses_fts(dialect: str, body: str | None) -> bool:
    return dialect == "sqlite" and body is not None and len(body.casefold()) >= FTS_MIN_CHARS


def body_conditions(body: str, *, fts: bool) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [Event.search_text.like(contains_pattern(body), escape="\\")]
    if fts:
        phrase = '"' + body.casefold().replace('"', '""') + '"'
        matches = (
            text("SELECT rowid FROM events_fts WHERE events_fts MATCH :phrase")
            .bindparams(phrase=phrase)
            .columns(column("rowid", Integer))
        )
        conds.append(literal_column("events.rowid").in_(matches))
    return conds
