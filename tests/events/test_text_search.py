"""The body filter with its trigram index: same answers as a plain scan, on both paths."""

import uuid

import httpx
import pytest
from sqlalchemy import text

from app.db.session import Database
from app.events import service, text_search
from app.events.schemas import Message, MessageEvent, TextContent
from tests.conftest import create_conversation, event_seqs


def _message(body: str) -> MessageEvent:
    return MessageEvent(llm_message=Message(role="user", content=[TextContent(text=body)]))


async def _seed(db: Database, cid: uuid.UUID, bodies: list[str]) -> None:
    async with db.session(write=True) as session:
        await service.append(session, cid, [_message(b) for b in bodies])


@pytest.mark.parametrize("window", [3, 7, 2000])
async def test_pages_match_a_plain_scan_across_the_window_edge(
    client: httpx.AsyncClient, db: Database, monkeypatch: pytest.MonkeyPatch, window: int
) -> None:
    """Rare and common terms, both orders, small pages: every seq once, in order."""
    monkeypatch.setattr(text_search, "SCAN_WINDOW", window)
    conversation = await create_conversation(client)
    cid = uuid.UUID(str(conversation["id"]))
    bodies = [f"event {i} " + ("Needle here" if i % 5 == 0 else "hay") for i in range(1, 31)]
    await _seed(db, cid, bodies)
    needle = [i for i in range(1, 31) if i % 5 == 0]
    for limit in (1, 2, 100):
        assert await event_seqs(client, cid, body="needle", limit=limit) == needle
        desc = await event_seqs(
            client, cid, body="NEEDLE", limit=limit, sort_order="TIMESTAMP_DESC"
        )
        assert desc == needle[::-1]
        assert await event_seqs(client, cid, body="hay", limit=limit) == [
            i for i in range(1, 31) if i % 5
        ]
    count = await client.get(f"/api/conversations/{cid}/events/count", params={"body": "needle"})
    assert count.json() == len(needle)
    window_and_body = await event_seqs(
        client, cid, body="needle", kind="MessageEvent", source="user", limit=2
    )
    assert window_and_body == needle


async def test_no_match_and_short_terms(client: httpx.AsyncClient, db: Database) -> None:
    conversation = await create_conversation(client)
    cid = uuid.UUID(str(conversation["id"]))
    await _seed(db, cid, ["ab cd", "xyz", 'say "hi"'])
    assert await event_seqs(client, cid, body="nomatch") == []
    assert await event_seqs(client, cid, body="b") == [1]
    assert await event_seqs(client, cid, body="b c") == [1]
    assert await event_seqs(client, cid, body='"hi"') == [3]
    assert await event_seqs(client, cid, body='y "') == [3]


async def test_deleted_conversations_leave_no_matches_behind(
    client: httpx.AsyncClient, db: Database
) -> None:
    first = await create_conversation(client)
    await _seed(db, uuid.UUID(str(first["id"])), ["orange marmalade"] * 3)
    assert (await client.delete(f"/api/conversations/{first['id']}")).status_code == 204
    second = await create_conversation(client)
    await _seed(db, uuid.UUID(str(second["id"])), ["plain toast"] * 3)
    assert await event_seqs(client, second["id"], body="marmalade") == []
    assert await event_seqs(client, second["id"], body="toast") == [1, 2, 3]


async def test_the_trigram_index_exists(db: Database) -> None:
    """Migration 0003 made the index the body filter relies on (not in the ORM models)."""
    async with db.session(write=False) as session:
        if db.is_sqlite:
            found = await session.execute(
                text("SELECT name FROM sqlite_master WHERE name = 'events_fts'")
            )
        else:
            found = await session.execute(
                text("SELECT indexname FROM pg_indexes WHERE indexname = :n"),
                {"n": "ix_events_search_text_trgm"},
            )
        assert found.first() is not None


async def test_the_index_serves_rare_terms(client: httpx.AsyncClient, db: Database) -> None:
    """SQLite: the FTS path is chosen for a rare term and not for a common one.
    Postgres: the GIN index can answer the LIKE (shown with sequential scans disabled)."""
    conversation = await create_conversation(client)
    cid = uuid.UUID(str(conversation["id"]))
    await _seed(db, cid, ["common words " + ("unicorn" if i == 7 else "") for i in range(40)])
    # A write session for its transaction: SET LOCAL needs one (reads run in autocommit).
    async with db.session(write=not db.is_sqlite) as session:
        if db.is_sqlite:
            assert await text_search.index_is_cheaper(session, "unicorn", 40)
            assert not await text_search.index_is_cheaper(session, "common", 40)
            assert not await text_search.index_is_cheaper(session, "unicorn", 0)
        else:
            await session.execute(text("SET LOCAL enable_seqscan = off"))
            plan = await session.execute(
                text("EXPLAIN SELECT count(*) FROM events WHERE search_text LIKE :p"),
                {"p": "%unicorn%"},
            )
            assert "ix_events_search_text_trgm" in "\n".join(row[0] for row in plan)
    assert await event_seqs(client, cid, body="unicorn") == [8]
