"""Event routes. Search and batch reads answer pre-encoded JSON (see app.http.JSONBytes)."""

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.db.session import ReadSessionDep
from app.errors import Unprocessable, database_responses, error_responses
from app.events import service
from app.events.schemas import (
    EVENT_KINDS,
    SEARCH_TEXT_CHARS,
    AnyEvent,
    EventPage,
    Source,
)
from app.http import JSONBytes, WithSeq

router = APIRouter(
    prefix="/conversations/{conversation_id}/events",
    tags=["events"],
    responses=database_responses(),
)

MAX_BATCH = 100


class EventSortOrder(StrEnum):
    TIMESTAMP = "TIMESTAMP"
    TIMESTAMP_DESC = "TIMESTAMP_DESC"


def _as_utc(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # e.g. year 1 at +05:00 is before year 1 in UTC
        raise Unprocessable(f"{name} is out of range once converted to UTC") from exc


async def event_filter(
    kind: Annotated[
        str | None, Query(description="Class name, or a dotted name ending in it")
    ] = None,
    source: Source | None = None,
    body: Annotated[
        str | None,
        Query(
            max_length=1000,
            description="Case-insensitive substring, matched within the first"
            f" {SEARCH_TEXT_CHARS:,} characters of each event's text",
        ),
    ] = None,
    timestamp__gte: Annotated[
        datetime | None, Query(description="Inclusive; naive means UTC")
    ] = None,
    timestamp__lt: Annotated[
        datetime | None, Query(description="Exclusive; naive means UTC")
    ] = None,
) -> service.EventFilter:
    short_kind = None
    if kind is not None:
        short_kind = kind.rsplit(".", 1)[-1]
        if short_kind not in EVENT_KINDS:
            raise Unprocessable(
                f"unknown event kind {kind!r}",
                details={"known_kinds": sorted(EVENT_KINDS)},
            )
    return service.EventFilter(
        kind=short_kind,
        source=source,
        body=body or None,
        timestamp_gte=_as_utc(timestamp__gte, "timestamp__gte"),
        timestamp_lt=_as_utc(timestamp__lt, "timestamp__lt"),
    )


FilterDep = Annotated[service.EventFilter, Depends(event_filter)]


@router.get("/search", response_model=EventPage, responses=error_responses(400, 401, 404, 422))
async def search_events(
    conversation_id: uuid.UUID,
    session: ReadSessionDep,
    event_filter: FilterDep,
    page_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
    sort_order: EventSortOrder = EventSortOrder.TIMESTAMP,
    with_seq: WithSeq = False,
) -> JSONBytes:
    """Search a conversation's events in seq order, a keyset-paginated page at a time."""
    query = service.EventQuery(
        filter=event_filter,
        descending=sort_order is EventSortOrder.TIMESTAMP_DESC,
        limit=limit,
        page_id=page_id,
    )
    items, next_page_id = await service.search(session, conversation_id, query)
    shown = [service.shown(event, with_seq) for event in items]
    return JSONBytes({"items": shown, "next_page_id": next_page_id})


@router.get("/count", response_model=int, responses=error_responses(401, 404, 422))
async def count_events(
    conversation_id: uuid.UUID, session: ReadSessionDep, event_filter: FilterDep
) -> int:
    """Count a conversation's events matching the same filters as search."""
    return await service.count(session, conversation_id, event_filter)


@router.get("", response_model=list[AnyEvent | None], responses=error_responses(401, 404, 422))
async def batch_get_events(
    conversation_id: uuid.UUID,
    session: ReadSessionDep,
    event_ids: Annotated[list[str], Query(min_length=1, max_length=MAX_BATCH)],
    with_seq: WithSeq = False,
) -> JSONBytes:
    """Get events by id, in the order asked, null for each one missing."""
    found = await service.get_many(session, conversation_id, event_ids)
    return JSONBytes([None if e is None else service.shown(e, with_seq) for e in found])


@router.get("/{event_id}", response_model=AnyEvent, responses=error_responses(401, 404, 422))
async def get_event(
    conversation_id: uuid.UUID, event_id: str, session: ReadSessionDep, with_seq: WithSeq = False
) -> JSONBytes:
    """Get one event by id."""
    event = await service.get_one(session, conversation_id, event_id)
    return JSONBytes(service.shown(event, with_seq))
