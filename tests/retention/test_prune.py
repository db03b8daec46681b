"""Pruning old conversations: what qualifies, what is kept, batches, and the CLI command."""

import asyncio
import os
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import typer
from sqlalchemy import func, insert, select, update

from app.cli_prune import _duration
from app.clock import utcnow
from app.db.base import Base
from app.db.session import Database
from app.errors import Unprocessable
from app.models import Conversation, LLMCall, Run
from app.retention.service import prune
from tests.conftest import create_conversation, send_message

ROOT = Path(__file__).resolve().parents[2]
OLD = timedelta(days=40)
MONTH = timedelta(days=30)
# Every table whose rows belong to a conversation: a new one is covered without editing here.
OWNED = [table for table in Base.metadata.sorted_tables if "conversation_id" in table.c]


async def _conversation(client: httpx.AsyncClient, *, messages: int = 1) -> uuid.UUID:
    created = await create_conversation(client)
    for n in range(messages):
        await send_message(client, created["id"], f"message {n}")
    return uuid.UUID(str(created["id"]))


async def _backdate(db: Database, cid: uuid.UUID, age: timedelta = OLD, **values: object) -> None:
    """Move the conversation's activity `age` into the past (time travel: no sleeping)."""
    then = utcnow() - age
    columns = {"created_at": then, "updated_at": then, "last_event_at": then, **values}
    async with db.session(write=True) as session:
        await session.execute(update(Conversation).where(Conversation.id == cid).values(columns))


async def _rows(db: Database, cid: uuid.UUID) -> dict[str, int]:
    """How many rows the conversation has in its own table and in each table it owns rows of."""
    async with db.session(write=False) as session:
        counts = {
            table.name: int(
                await session.scalar(
                    select(func.count()).select_from(table).where(table.c.conversation_id == cid)
                )
                or 0
            )
            for table in OWNED
        }
        alive = await session.scalar(select(func.count()).where(Conversation.id == cid))
    return {"conversations": int(alive or 0), **counts}


async def _exists(db: Database, cid: uuid.UUID) -> bool:
    return (await _rows(db, cid))["conversations"] == 1


async def _add_finished_run(db: Database, cid: uuid.UUID) -> None:
    """What a finished run leaves: its row and one LLM call."""
    run_id = uuid.uuid4()
    async with db.session(write=True) as session:
        await session.execute(
            insert(Run).values(id=run_id, conversation_id=cid, status="completed")
        )
        await session.execute(
            insert(LLMCall).values(conversation_id=cid, run_id=run_id, model="m", latency_ms=1.0)
        )


async def test_an_old_conversation_goes_with_all_its_rows_and_a_recent_one_stays(
    db: Database, client: httpx.AsyncClient
) -> None:
    old, recent = await _conversation(client), await _conversation(client)
    for cid in (old, recent):
        await _add_finished_run(db, cid)
    await _backdate(db, old)
    await _backdate(db, recent, timedelta(days=29))
    before = await _rows(db, old)
    assert all(before.values()), before  # a row in every owned table, or the check is empty
    recent_rows = await _rows(db, recent)

    assert await prune(db, older_than=MONTH) == 1
    assert set((await _rows(db, old)).values()) == {0}
    assert await _rows(db, recent) == recent_rows


async def test_last_activity_is_the_last_event_else_the_last_update(
    db: Database, client: httpx.AsyncClient
) -> None:
    """Created long ago but with a recent event: kept. No event at all: its update counts."""
    talked = await _conversation(client)
    await _backdate(db, talked, last_event_at=utcnow())
    silent = await _conversation(client, messages=0)
    await _backdate(db, silent, last_event_at=None)
    touched = await _conversation(client, messages=0)
    await _backdate(db, touched, last_event_at=None, updated_at=utcnow())

    assert await prune(db, older_than=MONTH) == 1
    assert [await _exists(db, cid) for cid in (talked, silent, touched)] == [True, False, True]


async def test_only_the_statuses_asked_for(db: Database, client: httpx.AsyncClient) -> None:
    by_status = {}
    for status in ("idle", "finished", "error"):
        cid = await _conversation(client)
        await _backdate(db, cid, execution_status=status)
        by_status[status] = cid

    assert await prune(db, older_than=MONTH, statuses=["finished", "error"]) == 2
    assert {s: await _exists(db, cid) for s, cid in by_status.items()} == {
        "idle": True,
        "finished": False,
        "error": False,
    }
    with pytest.raises(Unprocessable, match="'done'"):
        await prune(db, older_than=MONTH, statuses=["finished", "done"])
    assert await _exists(db, by_status["idle"])


async def test_a_dry_run_counts_and_deletes_nothing(
    db: Database, client: httpx.AsyncClient
) -> None:
    cids = [await _conversation(client) for _ in range(3)]
    for cid in cids:
        await _backdate(db, cid)
    before = [await _rows(db, cid) for cid in cids]
    totals: list[int] = []

    assert await prune(db, older_than=MONTH, dry_run=True, batch=2, on_batch=totals.append) == 3
    assert totals == [2, 3]
    assert [await _rows(db, cid) for cid in cids] == before


async def test_a_conversation_with_an_active_run_is_kept(
    db: Database, client: httpx.AsyncClient
) -> None:
    """Checked once against a broken variant: without the active-run condition in
    repository._expired, the queued and running conversations were deleted (3, not 1)."""
    queued, running, finished = [await _conversation(client) for _ in range(3)]
    for cid in (queued, running):
        started = await client.post(f"/api/conversations/{cid}/run")  # no worker: stays queued
        assert started.status_code == 202, started.text
    async with db.session(write=True) as session:
        await session.execute(
            update(Run).where(Run.conversation_id == running).values(status="running")
        )
    await _add_finished_run(db, finished)
    for cid in (queued, running, finished):
        await _backdate(db, cid)

    assert await prune(db, older_than=MONTH) == 1
    assert [await _exists(db, cid) for cid in (queued, running, finished)] == [True, True, False]
    assert (await _rows(db, queued))["runs"] == 1


async def test_batches_delete_everything_a_batch_at_a_time(
    db: Database, client: httpx.AsyncClient
) -> None:
    cids = [await _conversation(client, messages=0) for _ in range(5)]
    for cid in cids:
        await _backdate(db, cid)
    totals: list[int] = []

    assert await prune(db, older_than=MONTH, batch=2, on_batch=totals.append) == 5
    assert totals == [2, 4, 5]
    assert not any([await _exists(db, cid) for cid in cids])
    assert await prune(db, older_than=MONTH, batch=2, on_batch=totals.append) == 0
    assert totals == [2, 4, 5]  # a run that finds nothing reports no batch


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
    ],
)
def test_durations(text: str, age: timedelta) -> None:
    assert _duration(text) == age


@pytest.mark.parametrize("text", ["", "30", "d", "-5d", "1.5h", "0d", "30w", "30 d", "9" * 30])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(typer.BadParameter, match="is not a duration"):
        _duration(text)


async def _agent_server(db: Database, *args: str) -> tuple[int, str, str]:
    """Run `agent-server ARGS` as a process on the test database: (status, stdout, stderr)."""
    url = db.engine.url.render_as_string(hide_password=False)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        *args,
        cwd=ROOT,
        env={**os.environ, "AGENT_SERVER_DATABASE_URL": url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.slow
async def test_the_prune_command(db: Database, client: httpx.AsyncClient) -> None:
    old = [await _conversation(client) for _ in range(2)]
    for cid in old:
        await _backdate(db, cid)
    recent = await _conversation(client)

    status, out, err = await _agent_server(db, "prune", "--older-than", "30d", "--batch", "1")
    assert status == 0, err
    assert out == "pruned 2 conversations\n"
    assert "pruned 2 so far" in err
    assert [await _exists(db, cid) for cid in (*old, recent)] == [False, False, True]

    status, out, err = await _agent_server(db, "prune", "--older-than", "30days")
    assert status == 1 and out == "", err
    assert err.startswith("agent-server: ") and err.count("\n") == 1, err
    assert "is not a duration" in err and "agent-server prune --help" in err
