"""Idempotency-Key: a retried POST is answered with the stored outcome, never done twice.

Checked once against a broken variant: with the key looked up, the route run and the key's
row stored in three transactions (not one), test_concurrent_posts_with_one_key_make_one_effect
made 50 events on SQLite and hit a duplicate key on the idempotency row on Postgres."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, text, update

from app.clock import utcnow
from app.db.session import Database
from app.idempotency.repository import lock_id
from app.idempotency.route import HEADER, REPLAYED, key_scope
from app.idempotency.service import prune_expired
from app.models import Conversation, Event, IdempotencyKey
from tests.conftest import AGENT, create_conversation, make_app, serve_app

MESSAGE = {"content": [{"type": "text", "text": "hello"}]}


def _key() -> dict[str, str]:
    return {HEADER: str(uuid.uuid4())}


async def _count(db: Database, model: type, **where: object) -> int:
    async with db.session(write=False) as session:
        stmt = select(func.count()).select_from(model).filter_by(**where)
        return int(await session.scalar(stmt) or 0)


async def test_a_retry_gets_the_stored_response(client: httpx.AsyncClient, db: Database) -> None:
    key = _key()
    first = await client.post("/api/conversations", json={"agent": AGENT}, headers=key)
    again = await client.post("/api/conversations", json={"agent": AGENT}, headers=key)
    assert first.status_code == again.status_code == 201, again.text
    assert REPLAYED not in first.headers
    assert again.headers[REPLAYED] == "true"
    assert again.content == first.content
    assert again.headers["ETag"] == first.headers["ETag"]
    assert await _count(db, Conversation) == 1


async def test_a_new_key_does_it_again(client: httpx.AsyncClient, db: Database) -> None:
    for _ in range(2):
        response = await client.post("/api/conversations", json={"agent": AGENT}, headers=_key())
        assert response.status_code == 201 and REPLAYED not in response.headers
    assert await _count(db, Conversation) == 2


async def test_the_same_key_for_another_request_is_422(
    client: httpx.AsyncClient, db: Database
) -> None:
    conversation = await create_conversation(client)
    url = f"/api/conversations/{conversation['id']}/events"
    key = _key()
    assert (await client.post(url, json=MESSAGE, headers=key)).status_code == 201
    other = {"content": [{"type": "text", "text": "something else"}]}
    for attempt in (
        client.post(url, json=other, headers=key),  # another body
        client.post(url, json=MESSAGE, headers=key, params={"with_seq": "true"}),  # query
        client.post("/api/conversations", json={"agent": AGENT}, headers=key),  # path
    ):
        response = await attempt
        assert response.status_code == 422, response.text
        assert HEADER in response.json()["message"]
    assert await _count(db, Event) == 1


@pytest.mark.parametrize("bad", [b"", b"x" * 256, b"has space", "caf\u00e9".encode()])
async def test_a_malformed_key_is_422(client: httpx.AsyncClient, bad: bytes) -> None:
    response = await client.post("/api/conversations", json={"agent": AGENT}, headers={HEADER: bad})
    assert response.status_code == 422, response.text


async def test_an_error_is_not_stored_and_the_retry_runs_anew(
    client: httpx.AsyncClient, db: Database
) -> None:
    key = _key()
    missing = f"/api/conversations/{uuid.uuid4()}/events"
    assert (await client.post(missing, json=MESSAGE, headers=key)).status_code == 404
    assert await _count(db, IdempotencyKey) == 0
    # Nothing is bound to the key: it may now be used for another request.
    created = await client.post("/api/conversations", json={"agent": AGENT}, headers=key)
    assert created.status_code == 201 and REPLAYED not in created.headers


async def test_an_expired_key_runs_anew(client: httpx.AsyncClient, db: Database) -> None:
    key = _key()
    first = await client.post("/api/conversations", json={"agent": AGENT}, headers=key)
    async with db.session(write=True) as session:  # time travel: the key expired an hour ago
        await session.execute(
            update(IdempotencyKey).values(expires_at=utcnow() - timedelta(hours=1))
        )
    again = await client.post("/api/conversations", json={"agent": AGENT}, headers=key)
    assert again.status_code == 201 and REPLAYED not in again.headers
    assert again.json()["id"] != first.json()["id"]
    assert await _count(db, Conversation) == 2
    assert await _count(db, IdempotencyKey) == 1  # the expired row was replaced


@pytest.fixture
async def two_clients(db: Database) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    app = make_app(db, session_api_keys="key-one,key-two")
    async with serve_app(app) as client:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as other:
            client.headers["X-Session-API-Key"] = "key-one"
            other.headers["Authorization"] = "Bearer key-two"
            yield client, other


async def test_keys_are_scoped_by_session_key(
    two_clients: tuple[httpx.AsyncClient, httpx.AsyncClient], db: Database
) -> None:
    one, two = two_clients
    key = _key()
    first = await one.post("/api/conversations", json={"agent": AGENT}, headers=key)
    second = await two.post("/api/conversations", json={"agent": AGENT}, headers=key)
    assert first.status_code == second.status_code == 201
    assert REPLAYED not in second.headers  # not the other client's stored response
    assert first.json()["id"] != second.json()["id"]
    again = await one.post(
        "/api/conversations",
        json={"agent": AGENT},
        headers={**key, "Authorization": "Bearer key-one"},  # the same key, presented otherwise
    )
    assert again.headers[REPLAYED] == "true" and again.json()["id"] == first.json()["id"]
    assert await _count(db, Conversation) == 2


async def test_concurrent_posts_with_one_key_make_one_effect(
    client: httpx.AsyncClient, db: Database
) -> None:
    conversation = await create_conversation(client)
    url = f"/api/conversations/{conversation['id']}/events"
    key = _key()
    responses = await asyncio.gather(
        *(client.post(url, json=MESSAGE, headers=key) for _ in range(50))
    )
    created = [r for r in responses if r.status_code == 201 and REPLAYED not in r.headers]
    replayed = [r for r in responses if r.headers.get(REPLAYED) == "true"]
    in_flight = [r for r in responses if r.status_code == 409]
    assert len(created) == 1, [r.text for r in responses]
    assert len(created) + len(replayed) + len(in_flight) == 50, [r.text for r in responses]
    assert all(r.content == created[0].content and r.status_code == 201 for r in replayed)
    assert all(r.headers["Retry-After"] == "1" for r in in_flight)
    assert await _count(db, Event) == 1


async def test_a_key_in_flight_is_409_with_retry_after(
    client: httpx.AsyncClient, db: Database
) -> None:
    """Postgres only: there a second transaction can be in flight with the key (SQLite runs
    write transactions one at a time, so the second finds the first's row instead, as the
    concurrency test shows). The key's lock is held here as the first request would."""
    if db.is_sqlite:
        pytest.skip("SQLite runs one write transaction at a time: no request is in flight")
    key = _key()
    lock = lock_id(key_scope(None), key[HEADER])
    async with db.session(write=True) as session:
        await session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock})
        response = await client.post("/api/conversations", json={"agent": AGENT}, headers=key)
    assert response.status_code == 409, response.text
    assert response.headers["Retry-After"] == "1"
    after = await client.post("/api/conversations", json={"agent": AGENT}, headers=key)
    assert after.status_code == 201 and REPLAYED not in after.headers


async def test_the_expired_keys_are_pruned(client: httpx.AsyncClient, db: Database) -> None:
    for _ in range(3):
        await client.post("/api/conversations", json={"agent": AGENT}, headers=_key())
    async with db.session(write=True) as session:
        stale = select(IdempotencyKey.key).limit(2).scalar_subquery()
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key.in_(stale))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert await prune_expired(db, batch=1) == 2  # in batches of one
    assert await _count(db, IdempotencyKey) == 1
