"""POST /api/conversations/{id}/fork: the fork holds what the source held, read back through
the API, and from then on each conversation goes its own way."""

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, func, insert, select, text, update

from app.db.session import Database
from app.events import service as events_service
from app.events.schemas import (
    ConversationErrorEvent,
    EventBase,
    Message,
    MessageEvent,
    PauseEvent,
    TextContent,
)
from app.models import Conversation, LLMCall, Run
from tests.conftest import WITH_SEQ, create_conversation, send_message

PAGE = {"limit": "100", **WITH_SEQ}


def _events(n: int, start: int = 0) -> list[EventBase]:
    """n events of four (kind, source) pairs; the pauses only from the 10th on."""
    made: list[EventBase] = []
    for i in range(start, start + n):
        text = [TextContent(text=f"note {i} zebracorn")]
        if i % 3 == 0:
            made.append(
                MessageEvent(source="agent", llm_message=Message(role="assistant", content=text))
            )
        elif i % 3 == 1:
            made.append(MessageEvent(llm_message=Message(role="user", content=text)))
        elif i >= 10:
            made.append(PauseEvent())
        else:
            made.append(ConversationErrorEvent(code="E", detail=f"detail {i}"))
    return made


async def _seed(db: Database, conversation_id: object, n: int) -> None:
    async with db.session(write=True) as session:
        await events_service.append(session, uuid.UUID(str(conversation_id)), _events(n))


async def _all_events(
    client: httpx.AsyncClient, conversation_id: object, **params: str
) -> list[Any]:
    """Every event matching `params`, with its seq, following the pages (100 events each)."""
    url = f"/api/conversations/{conversation_id}/events/search"
    items: list[Any] = []
    page_id = None
    while True:
        query = {**PAGE, **params, **({"page_id": page_id} if page_id else {})}
        response = await client.get(url, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["items"]
        page_id = body["next_page_id"]
        if page_id is None:
            return items


async def _count(client: httpx.AsyncClient, conversation_id: object, **params: str) -> int:
    response = await client.get(f"/api/conversations/{conversation_id}/events/count", params=params)
    assert response.status_code == 200, response.text
    value: int = response.json()
    return value


async def _counts_by_kind(client: httpx.AsyncClient, conversation_id: object) -> dict[str, int]:
    """Counts per (kind, source), answered from event_counts."""
    pairs = [
        ("MessageEvent", "agent"),
        ("MessageEvent", "user"),
        ("ConversationErrorEvent", "environment"),
        ("PauseEvent", "user"),
    ]
    return {
        f"{kind}/{source}": await _count(client, conversation_id, kind=kind, source=source)
        for kind, source in pairs
    }


async def _fork(client: httpx.AsyncClient, source_id: object, **body: Any) -> dict[str, Any]:
    response = await client.post(f"/api/conversations/{source_id}/fork", json=body)
    assert response.status_code == 201, response.text
    fork: dict[str, Any] = response.json()
    assert response.headers["etag"] == '"1"'
    return fork


async def _row(db: Database, conversation_id: object, *columns: Any) -> Any:
    async with db.session(write=False) as session:
        stmt = select(*columns).where(Conversation.id == uuid.UUID(str(conversation_id)))
        return (await session.execute(stmt)).one()


# What a fork does not take from its source: it is a new conversation.
OWN_FIELDS = {"id", "version", "created_at", "updated_at", "persistence_dir"}


def _shared(conversation: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in conversation.items() if k not in OWN_FIELDS}


async def _fts_matches(db: Database, conversation_id: object, term: str) -> list[int] | None:
    """SQLite: the seqs of the conversation's events that its FTS5 trigram table finds (the
    body filter uses it only past a scan window); None on Postgres, whose index needs no
    copy."""
    if not db.is_sqlite:
        return None
    async with db.session(write=False) as session:
        rows = await session.execute(
            text(
                "SELECT events.seq FROM events_fts JOIN events ON events.rowid = events_fts.rowid"
                " WHERE events_fts MATCH :phrase AND events.conversation_id = :id"
            ),
            {"phrase": f'"{term}"', "id": uuid.UUID(str(conversation_id)).hex},
        )
        return [int(row[0]) for row in rows]


async def test_fork_copies_every_event_then_both_go_their_own_way(
    client: httpx.AsyncClient, db: Database
) -> None:
    source = await create_conversation(client, title="source", tags={"team": "core"})
    await _seed(db, source["id"], 250)
    source = (await client.get(f"/api/conversations/{source['id']}")).json()

    fork = await _fork(client, source["id"])

    assert fork["id"] != source["id"]
    assert fork["title"] == "source" and fork["tags"] == {"team": "core"}
    assert fork["execution_status"] == "idle" and fork["version"] == 1
    assert fork["last_seq"] == source["last_seq"] == 250
    assert fork["created_at"] > source["created_at"]
    assert _shared(fork) == _shared(source)  # agent, max_iterations, the SDK settings, ...
    assert (await client.get(f"/api/conversations/{fork['id']}")).json() == fork
    copied = await _all_events(client, fork["id"])
    assert copied == await _all_events(client, source["id"])
    assert [e["seq"] for e in copied] == list(range(1, 251))
    assert await _count(client, fork["id"]) == await _count(client, source["id"]) == 250
    assert await _counts_by_kind(client, fork["id"]) == await _counts_by_kind(client, source["id"])
    found = await _all_events(client, fork["id"], body="note 16 zebra")
    assert [e["seq"] for e in found] == [17]
    assert await _fts_matches(db, fork["id"], "note 16 zebra") in ([17], None)
    desc = await _all_events(client, fork["id"], sort_order="TIMESTAMP_DESC")
    assert desc == copied[::-1]
    last_event_at = Conversation.last_event_at
    assert await _row(db, fork["id"], last_event_at) == await _row(db, source["id"], last_event_at)

    to_fork = await send_message(client, fork["id"], "only in the fork", with_seq=True)
    to_source = await send_message(client, source["id"], "only in the source", with_seq=True)
    assert to_fork["seq"] == to_source["seq"] == 251
    assert to_fork["timestamp"] >= copied[-1]["timestamp"]
    fork_after = await _all_events(client, fork["id"])
    source_after = await _all_events(client, source["id"])
    assert fork_after[:250] == source_after[:250] == copied
    assert fork_after[250] == to_fork and source_after[250] == to_source
    assert await _count(client, fork["id"], body="only in the source") == 0
    assert await _count(client, source["id"], body="only in the fork") == 0


async def test_fork_takes_title_and_tags_from_the_body(client: httpx.AsyncClient) -> None:
    source = await create_conversation(client, title="source", tags={"a": "1"})
    fork = await _fork(client, source["id"], title="branch", tags={"b": "2"})
    assert fork["title"] == "branch" and fork["tags"] == {"b": "2"}
    cleared = await _fork(client, source["id"], title=None, tags=None)
    assert cleared["title"] is None and cleared["tags"] == {}
    unchanged = (await client.get(f"/api/conversations/{source['id']}")).json()
    assert unchanged == source


async def test_fork_with_a_given_id_and_409_when_it_exists(client: httpx.AsyncClient) -> None:
    source = await create_conversation(client)
    other = await create_conversation(client, title="other")
    wanted = uuid.uuid4()
    fork = await _fork(client, source["id"], id=str(wanted))
    assert fork["id"] == str(wanted)
    for taken in (wanted, other["id"], source["id"]):
        response = await client.post(
            f"/api/conversations/{source['id']}/fork", json={"id": str(taken), "title": "x"}
        )
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "conflict"
    assert (await client.get(f"/api/conversations/{other['id']}")).json() == other
    assert (await client.get("/api/conversations/count")).json() == 3


async def test_fork_from_an_event_copies_up_to_it(client: httpx.AsyncClient, db: Database) -> None:
    source = await create_conversation(client)
    await _seed(db, source["id"], 30)
    events = await _all_events(client, source["id"])
    cut = events[8]  # seq 9: no PauseEvent (from the 10th on) is copied

    fork = await _fork(client, source["id"], from_event_id=cut["id"])

    assert fork["last_seq"] == 9
    assert await _all_events(client, fork["id"]) == events[:9]
    assert await _count(client, fork["id"]) == 9
    counts = await _counts_by_kind(client, fork["id"])
    assert counts == {
        "MessageEvent/agent": 3,
        "MessageEvent/user": 3,
        "ConversationErrorEvent/environment": 3,
        "PauseEvent/user": 0,
    }
    (stamp,) = await _row(db, fork["id"], Conversation.last_event_at)
    assert stamp.isoformat().replace("+00:00", "Z") == cut["timestamp"]
    appended = await send_message(client, fork["id"], "after the cut", with_seq=True)
    assert appended["seq"] == 10
    assert await _count(client, source["id"]) == 30

    last = await _fork(client, source["id"], from_event_id=events[-1]["id"])
    assert await _all_events(client, last["id"]) == events
    assert await _counts_by_kind(client, last["id"]) == await _counts_by_kind(client, source["id"])


async def test_fork_404s(client: httpx.AsyncClient) -> None:
    source = await create_conversation(client)
    other = await create_conversation(client)
    elsewhere = await send_message(client, other["id"], "not in the source")
    mine = await send_message(client, source["id"], "in the source")
    cases = [
        (uuid.uuid4(), {}),
        (uuid.uuid4(), {"from_event_id": mine["id"]}),
        (source["id"], {"from_event_id": "no-such-event"}),
        (source["id"], {"from_event_id": elsewhere["id"]}),
    ]
    for source_id, body in cases:
        response = await client.post(f"/api/conversations/{source_id}/fork", json=body)
        assert response.status_code == 404, (body, response.text)
        assert response.json()["code"] == "not_found"
    assert (await client.get("/api/conversations/count")).json() == 2


@pytest.mark.parametrize(
    "body",
    [
        {"agent": {"llm": {"model": "m"}}},
        {"unknown": 1},
        {"title": "x" * 513},
        {"tags": {"k": "v" * 257}},
        {"tags": {f"k{i}": "v" for i in range(51)}},
        {"tags": ["a"]},
        {"from_event_id": "e" * 65},
        {"from_event_id": ""},
        {"id": "not-a-uuid"},
        {"reset_metrics": "sometimes"},
        {"title": "nul \x00"},
    ],
)
async def test_fork_rejects_bad_bodies_with_422(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    source = await create_conversation(client)
    response = await client.post(f"/api/conversations/{source['id']}/fork", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert (await client.get("/api/conversations/count")).json() == 1


async def _running_with_usage(db: Database, conversation_id: object) -> uuid.UUID:
    """Give the source what only runs give it: stats, a finished run with two LLM calls, and
    a queued run that makes it `running`."""
    source_id = uuid.UUID(str(conversation_id))
    stats = {"llm_calls": 2, "prompt_tokens": 30, "completion_tokens": 5, "cost_usd": 0.25}
    done = uuid.uuid4()
    async with db.session(write=True) as session:
        await session.execute(
            update(Conversation)
            .where(Conversation.id == source_id)
            .values(stats=stats, execution_status="running")
        )
        await session.execute(
            insert(Run).values(id=done, conversation_id=source_id, status="completed")
        )
        await session.execute(insert(Run).values(conversation_id=source_id, status="queued"))
        for tokens in (10, 20):
            await session.execute(
                insert(LLMCall).values(
                    conversation_id=source_id,
                    run_id=done,
                    model="m",
                    prompt_tokens=tokens,
                    completion_tokens=2,
                    cost_usd=0.125,
                    latency_ms=12.5,
                )
            )
    return done


async def _usage(db: Database, conversation_id: object) -> tuple[list[Any], int]:
    """(the conversation's llm_calls rows, its number of runs)."""
    key = uuid.UUID(str(conversation_id))
    async with db.session(write=False) as session:
        calls = (
            await session.execute(
                select(LLMCall.__table__)
                .where(LLMCall.conversation_id == key)
                .order_by(LLMCall.prompt_tokens)
            )
        ).all()
        runs = await session.scalar(select(func.count()).where(Run.conversation_id == key))
    return list(calls), int(runs or 0)


def _call_values(row: Any) -> dict[str, Any]:
    """An llm_calls row but for the columns a copy gets anew."""
    return {k: v for k, v in row._mapping.items() if k not in ("id", "conversation_id", "run_id")}


@pytest.mark.parametrize("reset_metrics", [True, False, None])
async def test_fork_metrics_and_runs(
    client: httpx.AsyncClient, db: Database, reset_metrics: bool | None
) -> None:
    source = await create_conversation(client)
    await send_message(client, source["id"], "hi")
    await _running_with_usage(db, source["id"])
    body = {} if reset_metrics is None else {"reset_metrics": reset_metrics}

    fork = await _fork(client, source["id"], **body)

    assert fork["execution_status"] == "idle"
    source_calls, source_runs = await _usage(db, source["id"])
    calls, runs = await _usage(db, fork["id"])
    assert (source_runs, runs) == (2, 0)
    if reset_metrics is False:
        assert fork["stats"] == {
            "llm_calls": 2,
            "prompt_tokens": 30,
            "completion_tokens": 5,
            "cost_usd": 0.25,
        }
        assert len(calls) == 2
        for copy, original in zip(calls, source_calls, strict=True):
            assert copy.id != original.id and copy.id.version == 4 and copy.run_id is None
            assert copy.conversation_id == uuid.UUID(fork["id"])
            assert _call_values(copy) == _call_values(original)
        # The copies belong to the fork alone: deleting the source (and its runs) keeps them.
        assert (await client.delete(f"/api/conversations/{source['id']}")).status_code == 204
        assert len((await _usage(db, fork["id"]))[0]) == 2
    else:
        assert fork["stats"] == {} and calls == []


async def test_fork_keeps_the_sealed_secrets(
    client: httpx.AsyncClient, app: FastAPI, db: Database
) -> None:
    agent = {"llm": {"model": "m", "api_key": "sk-fork-secret"}}
    source = await create_conversation(client, agent=agent)

    response = await client.post(f"/api/conversations/{source['id']}/fork", json={})

    assert response.status_code == 201 and "sk-fork-secret" not in response.text
    fork = response.json()
    assert fork["agent"]["llm"]["api_key"] == "**********"
    (sealed,) = await _row(db, source["id"], Conversation.secrets)
    (copied,) = await _row(db, fork["id"], Conversation.secrets)
    assert sealed is not None and copied == sealed
    spec, _ = app.state.vault.unseal(fork["agent"], copied)
    assert spec["llm"]["api_key"] == "sk-fork-secret"


@contextmanager
def _statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)


@pytest.mark.parametrize("cut", [False, True])
async def test_fork_runs_as_many_statements_for_500_events_as_for_5(
    client: httpx.AsyncClient, db: Database, cut: bool
) -> None:
    counted: list[int] = []
    for n in (5, 500):
        source = await create_conversation(client)
        await _seed(db, source["id"], n)
        await _running_with_usage(db, source["id"])
        body: dict[str, Any] = {"reset_metrics": False}
        if cut:
            body["from_event_id"] = (await _all_events(client, source["id"]))[n - 2]["id"]
        with _statements(db) as seen:
            fork = await _fork(client, source["id"], **body)
        counted.append(len(seen))
        assert sum(statement.startswith("INSERT INTO events ") for statement in seen) == 1
        assert await _count(client, fork["id"]) == (n - 1 if cut else n)
    # The lock, four INSERT ... SELECT, the read back (and SQLite's BEGIN IMMEDIATE).
    assert counted[0] == counted[1] <= 7, counted


async def test_forks_during_appends_copy_a_consistent_state(
    client: httpx.AsyncClient, db: Database
) -> None:
    """Forks racing appends to their source each hold a state the source had: last_seq, the
    events and their counts agree.

    Checked once against a broken variant: without the FOR SHARE in
    fork_repository.lock_source, on Postgres, appends committed between the fork's statements
    and forks came out with more events counted than copied (3 runs out of 3). SQLite passes
    either way: its write transactions exclude one another."""
    source = await create_conversation(client)
    await _seed(db, source["id"], 20)

    async def append() -> None:
        for i in range(40):
            async with db.session(write=True) as session:
                await events_service.append(session, uuid.UUID(str(source["id"])), _events(3, i))

    async def forks() -> list[dict[str, Any]]:
        made = []
        for _ in range(15):
            made.append(await _fork(client, source["id"]))
            await asyncio.sleep(0)
        return made

    _, _, made = await asyncio.gather(append(), append(), forks())
    for fork in made:
        seqs = [e["seq"] for e in await _all_events(client, fork["id"])]
        assert seqs == list(range(1, fork["last_seq"] + 1)), fork["last_seq"]
        assert sum((await _counts_by_kind(client, fork["id"])).values()) == fork["last_seq"]
