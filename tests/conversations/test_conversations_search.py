import uuid

import httpx
import pytest
from sqlalchemy import update

from app.db.session import Database
from app.models import Conversation
from tests.conftest import collect_pages, create_conversation


async def _page_all(client: httpx.AsyncClient, **params: object) -> list[str]:
    return await collect_pages(client, "/api/conversations/search", "title", **params)


@pytest.fixture
async def five(client: httpx.AsyncClient) -> list[dict[str, object]]:
    return [await create_conversation(client, title=f"c{i}") for i in range(5)]


async def test_default_order_is_created_at_desc(
    client: httpx.AsyncClient, five: list[dict[str, object]]
) -> None:
    assert await _page_all(client, limit=2) == ["c4", "c3", "c2", "c1", "c0"]


async def test_every_sort_order_pages_without_gaps_or_repeats(
    client: httpx.AsyncClient, five: list[dict[str, object]]
) -> None:
    # Touch c1 so updated_at order differs from created_at order.
    patched = await client.patch(f"/api/conversations/{five[1]['id']}", json={"tags": {"a": "b"}})
    assert patched.status_code == 200
    assert await _page_all(client, limit=2, sort_order="CREATED_AT") == [
        "c0",
        "c1",
        "c2",
        "c3",
        "c4",
    ]
    assert await _page_all(client, limit=3, sort_order="UPDATED_AT") == [
        "c0",
        "c2",
        "c3",
        "c4",
        "c1",
    ]
    assert await _page_all(client, limit=1, sort_order="UPDATED_AT_DESC") == [
        "c1",
        "c4",
        "c3",
        "c2",
        "c0",
    ]


async def test_next_page_id_is_null_exactly_at_the_end(
    client: httpx.AsyncClient, five: list[dict[str, object]]
) -> None:
    full = (await client.get("/api/conversations/search", params={"limit": 5})).json()
    assert len(full["items"]) == 5 and full["next_page_id"] is None
    short = (await client.get("/api/conversations/search", params={"limit": 4})).json()
    assert len(short["items"]) == 4 and short["next_page_id"] is not None


async def test_equal_timestamps_are_ordered_by_id(client: httpx.AsyncClient, db: Database) -> None:
    created = [await create_conversation(client, title=f"t{i}") for i in range(4)]
    same = created[0]["created_at"]
    from datetime import datetime

    async with db.session(write=True) as session:
        await session.execute(
            update(Conversation).values(
                created_at=datetime.fromisoformat(str(same).replace("Z", "+00:00"))
            )
        )
    ids = sorted(uuid.UUID(str(c["id"])) for c in created)
    expected = [next(c["title"] for c in created if uuid.UUID(str(c["id"])) == i) for i in ids]
    assert await _page_all(client, limit=1, sort_order="CREATED_AT") == expected


async def test_status_filter_and_count(
    client: httpx.AsyncClient, db: Database, five: list[dict[str, object]]
) -> None:
    async with db.session(write=True) as session:
        await session.execute(
            update(Conversation)
            .where(Conversation.id.in_([uuid.UUID(str(five[i]["id"])) for i in (0, 3)]))
            .values(execution_status="finished")
        )
    assert await _page_all(client, status="finished", limit=1) == ["c3", "c0"]
    assert (await client.get("/api/conversations/count")).json() == 5
    assert (await client.get("/api/conversations/count?status=finished")).json() == 2
    assert (await client.get("/api/conversations/count?status=running")).json() == 0


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"sort_order": "TITLE"},
        {"status": "sleeping"},
    ],
)
async def test_bad_search_parameters_are_422(
    client: httpx.AsyncClient, params: dict[str, object]
) -> None:
    response = await client.get("/api/conversations/search", params=params)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_bad_count_status_is_422(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/conversations/count?status=nope")).status_code == 422


async def test_malformed_or_foreign_cursor_is_400(
    client: httpx.AsyncClient, five: list[dict[str, object]]
) -> None:
    for page_id in ("!!!", "bm90IGpzb24", "e30"):
        response = await client.get("/api/conversations/search", params={"page_id": page_id})
        assert response.status_code == 400, page_id
        assert response.json()["code"] == "bad_request"
    page = (await client.get("/api/conversations/search", params={"limit": 1})).json()
    other_order = await client.get(
        "/api/conversations/search",
        params={"page_id": page["next_page_id"], "sort_order": "UPDATED_AT"},
    )
    assert other_order.status_code == 400
    events_cursor = (await client.get(f"/api/conversations/{five[0]['id']}/events/search")).json()
    assert events_cursor["next_page_id"] is None
