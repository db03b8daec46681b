"""Event rules: appending under the conversation row lock, search, count and lookups."""

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from app.clock import utcnow
from app.db.session import APPENDED
from app.errors import BadRequest, NotFound
from app.events import repository, text_search
from app.events.repository import EventFilter
from app.events.schemas import EventBase
from app.pagination import decode_cursor, encode_cursor

__all__ = [
    "EventFilter",
    "EventQuery",
    "append",
    "count",
    "event_row",
    "get_many",
    "get_one",
    "search",
    "shown",
    "storable",
]


# Seqs are BIGINT; a cursor's seq beyond this is forged, never issued.
MAX_SEQ = 2**62


@dataclass(frozen=True)
class EventQuery:
    filter: EventFilter
    descending: bool = False
    limit: int = 100
    page_id: str | None = None


def stamp(moment: datetime) -> str:
    """A timestamp as events show it: UTC, always with microseconds, so that timestamps
    compare as strings in time order (the OpenHands client sorts them so)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def row_to_json(row: Row[Any] | tuple[Any, ...]) -> dict[str, Any]:
    """Envelope columns first, then the stored kind-specific fields as they are. `seq` is
    for the server's own use and for clients that ask for it (see `shown`)."""
    kind, event_id, seq, timestamp, source, payload = tuple(row)
    return {
        "kind": kind,
        "id": event_id,
        "seq": seq,
        "timestamp": stamp(timestamp),
        "source": source,
        **payload,
    }


def shown(event: dict[str, Any], with_seq: bool = False) -> dict[str, Any]:
    """An event as clients get it: without `seq` (an OpenHands client refuses unknown
    fields), unless they asked for it."""
    if with_seq:
        return event
    return {key: value for key, value in event.items() if key != "seq"}


# What cannot be stored as text on both databases: NUL (Postgres text and JSONB refuse it)
# and lone UTF-16 surrogates (not Unicode: orjson and the drivers refuse to encode them).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def event_row(event: EventBase) -> dict[str, Any]:
    """A new event's columns (id, kind, source, search_text, payload), every string in them
    storable: NUL and lone surrogates become U+FFFD, in keys too, the same on both databases.

    The user's input was refused (422) before it got here; what the agent side writes (LLM
    replies, tool arguments and results) is data and is stored this way, never refused.
    """
    # Checked on the Python values: JSON encoding would fail on, or silently rewrite, a lone
    # surrogate in a key.
    values = event.model_dump()
    if _unstorable(values):
        event = type(event).model_validate(storable(values))
    return {
        "id": event.id,
        "kind": event.kind,
        "source": event.source,
        "search_text": event.search_text(),
        "payload": event.payload(),
    }


def storable(value: Any) -> Any:
    """`value` with NUL and lone surrogates replaced by U+FFFD in every string (keys too) of
    it, lists, tuples and dicts walked; other values as they are."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(item) for item in value]
    return value


def _unstorable(value: Any) -> bool:
    """Whether a string in `value` (keys too) holds NUL or a lone surrogate. Cheap when there
    is nothing to fix, the common case: an ASCII string (a flag check) holds no surrogate,
    and only other strings are encoded to find out, to UTF-16 (which refuses surrogates as
    UTF-8 does, and is faster to encode to from most strings; a regex is slower still)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item or not (item.isascii() or _encodes(item)):
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-16-le")
    except UnicodeEncodeError:
        return False
    return True


async def append(
    session: AsyncSession,
    conversation_id: uuid.UUID,
    events: Sequence[EventBase],
    *,
    conversation_values: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Append events in one short write; returns them as the API shows them.

    Seqs and the timestamp come from a single UPDATE ... RETURNING under the conversation row
    lock (see repository.reserve_seqs). `conversation_values` are set by that same UPDATE.
    """
    if not events:
        return []
    rows = await _insert(session, conversation_id, events, utcnow(), conversation_values)
    return stored_as_shown(rows)


def stored_as_shown(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events rows as written (dicts of their columns) as the API shows them."""
    return [
        row_to_json(
            (row["kind"], row["id"], row["seq"], row["timestamp"], row["source"], row["payload"])
        )
        for row in rows
    ]


async def _insert(
    session: AsyncSession,
    conversation_id: uuid.UUID,
    events: Sequence[EventBase],
    now: datetime,
    conversation_values: dict[str, Any] | None,
    *,
    own_timestamps: bool = False,
) -> list[dict[str, Any]]:
    """Reserve the next seqs (the conversation's row lock, see repository.reserve_seqs) and
    insert the events' rows: stamped with the reserved time, or with their own."""
    reserved = await repository.reserve_seqs(
        session, conversation_id, len(events), now, conversation_values
    )
    if reserved is None:
        raise NotFound(f"conversation {conversation_id} not found")
    last_seq, stamp = reserved
    session.info.setdefault(APPENDED, {})[conversation_id] = last_seq
    first_seq = last_seq - len(events) + 1
    rows = [
        {
            **event_row(event),
            "conversation_id": conversation_id,
            "seq": first_seq + offset,
            "timestamp": event.timestamp if own_timestamps else stamp,
        }
        for offset, event in enumerate(events)
    ]
    await repository.insert_rows(session, rows)
    return rows


async def import_events(
    session: AsyncSession,
    conversation_id: uuid.UUID,
    events: Sequence[EventBase],
    *,
    conversation_values: dict[str, Any] | None = None,
) -> None:
    """Append events that keep their own ids and timestamps (an import): the next seqs, in
    one short write like `append`. The timestamps must be aware and never decrease, from the
    conversation's last event on (the importer makes them so)."""
    if not events:
        return
    stamps = [event.timestamp for event in events]
    if any(stamp is None for stamp in stamps):
        raise ValueError("imported events need their timestamps")
    latest = max(stamp for stamp in stamps if stamp is not None)
    await _insert(
        session, conversation_id, events, latest, conversation_values, own_timestamps=True
    )


async def existing_ids(
    session: AsyncSession, conversation_id: uuid.UUID, ids: Sequence[str]
) -> set[str]:
    return await repository.ids_present(session, conversation_id, ids)


async def _require_conversation(session: AsyncSession, conversation_id: uuid.UUID) -> None:
    if not await repository.conversation_exists(session, conversation_id):
        raise NotFound(f"conversation {conversation_id} not found")


async def search(
    session: AsyncSession, conversation_id: uuid.UUID, query: EventQuery
) -> tuple[list[dict[str, Any]], str | None]:
    order = "desc" if query.descending else "asc"
    scope = f"events:{conversation_id}"
    after_seq: int | None = None
    if query.page_id:
        cursor = decode_cursor(query.page_id, scope=scope, order=order)
        after_seq = cursor.get("seq")
        if not isinstance(after_seq, int) or not 0 <= after_seq <= MAX_SEQ:
            raise BadRequest("page_id is not a valid cursor")
    rows: Sequence[Row[Any]]
    if text_search.uses_fts(_dialect(session), query.filter.body):
        rows = await _search_window_then_index(session, conversation_id, query, after_seq)
    else:
        rows = await repository.search(
            session,
            conversation_id,
            query.filter,
            after_seq=after_seq,
            descending=query.descending,
            limit=query.limit + 1,
        )
    if not rows:
        await _require_conversation(session, conversation_id)
    items = [row_to_json(row) for row in rows[: query.limit]]
    next_page_id = None
    if len(rows) > query.limit:
        next_page_id = encode_cursor({"scope": scope, "order": order, "seq": items[-1]["seq"]})
    return items, next_page_id


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


async def _search_window_then_index(
    session: AsyncSession, conversation_id: uuid.UUID, query: EventQuery, after_seq: int | None
) -> list[Row[Any]]:
    """SQLite body search: the next SCAN_WINDOW seqs in order, then the trigram index.

    A common term fills the page inside the window; a rare one is found through the index
    beyond it. Seqs are gapless, so the window is a plain seq range.
    """
    last = await repository.last_seq(session, conversation_id)
    if last is None:
        raise NotFound(f"conversation {conversation_id} not found")
    start = after_seq if after_seq is not None else (last + 1 if query.descending else 0)
    if query.descending:
        until = max(start - text_search.SCAN_WINDOW, 0)
    else:
        until = min(start + text_search.SCAN_WINDOW, last)
    rows = list(
        await repository.search(
            session,
            conversation_id,
            query.filter,
            after_seq=start,
            until_seq=until,
            descending=query.descending,
            limit=query.limit + 1,
        )
    )
    rows_left = until - 1 if query.descending else last - until
    if len(rows) > query.limit or rows_left <= 0:
        return rows
    assert query.filter.body is not None
    rest = await repository.search(
        session,
        conversation_id,
        query.filter,
        after_seq=until,
        descending=query.descending,
        limit=query.limit + 1 - len(rows),
        fts=await text_search.index_is_cheaper(session, query.filter.body, rows_left),
    )
    return rows + list(rest)


async def count(session: AsyncSession, conversation_id: uuid.UUID, f: EventFilter) -> int:
    """Count matching events.

    With no filter the answer is last_seq (seqs are gapless from 1 and events are never deleted
    one by one); with only kind and/or source it is a sum over event_counts. Both are key
    lookups whatever the conversation's size, and tests assert they equal count(*). Body and
    time filters count the matching index range.
    """
    if f == EventFilter():
        last = await repository.last_seq(session, conversation_id)
        if last is None:
            raise NotFound(f"conversation {conversation_id} not found")
        return last
    if repository.counts_only(f):
        total = await repository.count_from_tally(session, conversation_id, f)
    else:
        fts = False
        if f.body is not None and text_search.uses_fts(_dialect(session), f.body):
            last = await repository.last_seq(session, conversation_id)
            fts = await text_search.index_is_cheaper(session, f.body, last or 0)
        total = await repository.count(session, conversation_id, f, fts=fts)
    if total == 0:
        await _require_conversation(session, conversation_id)
    return total


async def get_one(
    session: AsyncSession, conversation_id: uuid.UUID, event_id: str
) -> dict[str, Any]:
    rows = await repository.get_by_ids(session, conversation_id, [event_id])
    if not rows:
        await _require_conversation(session, conversation_id)
        raise NotFound(f"event {event_id} not found in conversation {conversation_id}")
    return row_to_json(rows[0])


async def get_many(
    session: AsyncSession, conversation_id: uuid.UUID, event_ids: Sequence[str]
) -> list[dict[str, Any] | None]:
    await _require_conversation(session, conversation_id)
    rows = await repository.get_by_ids(session, conversation_id, event_ids)
    found = {event["id"]: event for event in map(row_to_json, rows)}
    return [found.get(event_id) for event_id in event_ids]


async def read_after(
    session: AsyncSession,
    conversation_id: uuid.UUID,
    after_seq: int = 0,
    *,
    kinds: Sequence[str] | None = None,
    source: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Events after `after_seq` in seq order, as the API shows them (runner, streams)."""
    rows = await repository.read_after(
        session, conversation_id, after_seq, kinds=kinds, source=source, limit=limit
    )
    return [row_to_json(row) for row in rows]
