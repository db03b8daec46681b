"""Concurrent writers on one conversation: gapless seqs, no lost updates, no lock errors.

Each test was run once against deliberately broken variants and failed there:
- Postgres: seqs reserved by read-then-write (SELECT last_seq, then UPDATE last_seq = read+n)
  failed with duplicate-key errors on pk_events; If-Match checked by a SELECT before an
  unconditional UPDATE let several PATCHes answer 200; PATCH as read-modify-write of the
  whole row lost one of two concurrent changes.
- SQLite: the same read-then-write code with deferred transactions and without the
  process write lock failed with "database is locked". With BEGIN IMMEDIATE and the write
  lock (app/db/session.py), SQLite serializes whole write transactions, so on SQLite these
  tests guard that machinery.
"""

import asyncio
import uuid
from datetime import datetime

import httpx
from sqlalchemy import select

from app.db.session import Database
from app.models import Event
from tests.conftest import create_conversation


async def test_50_concurrent_appends_get_seqs_1_to_50(
    client: httpx.AsyncClient, db: Database
) -> None:
    conversation = await create_conversation(client)
    cid = conversation["id"]

    async def append(i: int) -> httpx.Response:
        return await client.post(
            f"/api/conversations/{cid}/events",
            json={"content": [{"type": "text", "text": f"message {i}"}]},
        )

    responses = await asyncio.gather(*(append(i) for i in range(50)))
    assert [r.status_code for r in responses] == [201] * 50, [
        r.text for r in responses if r.status_code != 201
    ]
    assert sorted(int(r.headers["X-Event-Seq"]) for r in responses) == list(range(1, 51))
    async with db.session(write=False) as session:
        rows = (
            await session.execute(
                select(Event.seq, Event.timestamp)
                .where(Event.conversation_id == uuid.UUID(str(cid)))
                .order_by(Event.seq)
            )
        ).all()
    assert [seq for seq, _ in rows] == list(range(1, 51))
    stamps: list[datetime] = [ts for _, ts in rows]
    assert stamps == sorted(stamps), "timestamps must not decrease along seq"
    after = (await client.get(f"/api/conversations/{cid}")).json()
    assert after["last_seq"] == 50 and after["version"] == 51


async def test_100_patches_with_the_same_if_match_let_exactly_one_through(
    client: httpx.AsyncClient,
) -> None:
    conversation = await create_conversation(client, title="start")
    url = f"/api/conversations/{conversation['id']}"

    async def patch(i: int) -> httpx.Response:
        return await client.patch(url, json={"title": f"t{i}"}, headers={"If-Match": '"1"'})

    responses = await asyncio.gather(*(patch(i) for i in range(100)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [412] * 99, {r.status_code: r.text for r in responses}
    winner = next(r for r in responses if r.status_code == 200).json()
    assert all(r.headers["etag"] == '"2"' for r in responses)
    final = (await client.get(url)).json()
    assert final["version"] == 2
    assert final["title"] == winner["title"]


async def test_concurrent_patches_of_different_fields_lose_nothing(
    client: httpx.AsyncClient,
) -> None:
    conversations = [await create_conversation(client, title="old") for _ in range(25)]

    async def patch(cid: object, body: dict[str, object]) -> httpx.Response:
        return await client.patch(f"/api/conversations/{cid}", json=body)

    calls = []
    for c in conversations:
        calls.append(patch(c["id"], {"title": f"new-{c['id']}"}))
        calls.append(patch(c["id"], {"tags": {"owner": str(c["id"])}}))
    responses = await asyncio.gather(*calls)
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    ids = [str(c["id"]) for c in conversations]
    batch = (await client.get("/api/conversations", params=[("ids", i) for i in ids])).json()
    for item in batch:
        assert item["title"] == f"new-{item['id']}"
        assert item["tags"] == {"owner": item["id"]}
        assert item["version"] == 3
