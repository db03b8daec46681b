"""A client-chosen event `id` on POST .../events is a natural key: an id the conversation
already has appends nothing and answers the stored event.

Checked once against a broken variant: with the lookup made without the conversation's row
lock (app/runs/messages.py), test_concurrent_posts_of_one_id_append_one_row failed on Postgres
with a duplicate key on uq_events_conversation_id_id (a 500)."""

import asyncio
import uuid

import httpx
from sqlalchemy import func, select

from app.db.session import Database
from app.events import service as events_service
from app.events.schemas import Message, MessageEvent, TextContent
from app.idempotency.route import REPLAYED
from app.models import Event, Run
from tests.conftest import create_conversation


def _message(event_id: str, text: str = "hello", **extra: object) -> dict[str, object]:
    return {"id": event_id, "content": [{"type": "text", "text": text}], **extra}


async def _messages(db: Database) -> int:
    async with db.session(write=False) as session:
        stmt = select(func.count()).select_from(Event).where(Event.kind == "MessageEvent")
        return int(await session.scalar(stmt) or 0)


async def _rows(db: Database, model: type) -> int:
    async with db.session(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_an_id_seen_before_answers_the_stored_event(
    client: httpx.AsyncClient, db: Database
) -> None:
    cid = (await create_conversation(client))["id"]
    url = f"/api/conversations/{cid}/events"
    event_id = str(uuid.uuid4())
    first = await client.post(url, json=_message(event_id, run=True))
    assert first.status_code == 201 and first.json()["id"] == event_id
    assert REPLAYED not in first.headers and "X-Run-Id" in first.headers
    again = await client.post(url, json=_message(event_id, "retried", run=True))
    assert again.status_code == 200, again.text
    assert again.headers[REPLAYED] == "true"
    assert again.headers["X-Event-Seq"] == first.headers["X-Event-Seq"]
    assert "X-Run-Id" not in again.headers  # a retry starts no second run
    assert again.json() == first.json()  # the stored event, not the retry's text
    assert await _messages(db) == 1 and await _rows(db, Run) == 1


async def test_the_same_id_in_another_conversation_is_another_event(
    client: httpx.AsyncClient, db: Database
) -> None:
    event_id = str(uuid.uuid4())
    for _ in range(2):
        cid = (await create_conversation(client))["id"]
        response = await client.post(f"/api/conversations/{cid}/events", json=_message(event_id))
        assert response.status_code == 201, response.text
    assert await _messages(db) == 2


async def test_an_id_of_an_event_that_is_not_a_user_message_is_409(
    client: httpx.AsyncClient, db: Database
) -> None:
    cid = (await create_conversation(client))["id"]
    url = f"/api/conversations/{cid}/events"
    said = MessageEvent(
        source="agent", llm_message=Message(role="assistant", content=[TextContent(text="hi")])
    )
    async with db.session(write=True) as session:
        await events_service.append(session, uuid.UUID(cid), [said])
    response = await client.post(url, json=_message(said.id))
    assert response.status_code == 409, response.text
    assert said.id in response.json()["message"]
    assert await _messages(db) == 1
    for bad in ("x" * 65, "has space", ""):
        refused = await client.post(url, json=_message(bad))
        assert refused.status_code == 422, refused.text


async def test_concurrent_posts_of_one_id_append_one_row(
    client: httpx.AsyncClient, db: Database
) -> None:
    cid = (await create_conversation(client))["id"]
    url = f"/api/conversations/{cid}/events"
    event_id = str(uuid.uuid4())
    responses = await asyncio.gather(
        *(client.post(url, json=_message(event_id)) for _ in range(30))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 29 + [201], [r.text for r in responses if r.status_code >= 300]
    assert all(r.json() == responses[0].json() for r in responses)  # Postgres orders keys
    assert await _messages(db) == 1
