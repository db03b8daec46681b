"""`agent-server import openhands`: a store written by the real SDK (one conversation
damaged) becomes rows, every readable event once, in order, with the damage reported; a
second run adds nothing; a conversation that exists with other content is left alone; a dry
run writes nothing; the imported events are what the SDK's own models accept. Both
databases."""

import asyncio
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from app.config import Settings
from app.db.session import Database
from app.importer.service import ImportReport, import_store
from app.vault.service import Vault
from tests.conftest import create_conversation
from tests.importer.conftest import SdkStore
from tests.openhands.sdk import SdkEvents
from tests.procs import ROOT

# The store is written by the SDK's interpreter (sdk_store); one test runs the command.
pytestmark = pytest.mark.slow

VAULT = Vault.from_settings(
    Settings(_env_file=None, secret_key=Fernet.generate_key().decode())  # type: ignore[call-arg]
)


def _readable(conversation: dict[str, Any]) -> list[tuple[str, str]]:
    broken = {d["index"] for d in conversation["damaged"]}
    return [(e[1], e[2]) for e in conversation["events"] if e[0] not in broken]


def _without_defaults(value: Any, *drop: str) -> Any:
    if isinstance(value, dict):
        return {
            k: _without_defaults(v)
            for k, v in value.items()
            if k not in drop and not (k == "cache_prompt" and v is False)
        }
    if isinstance(value, list):
        return [_without_defaults(v) for v in value]
    return value


async def _import(db: Database, store: SdkStore, **options: Any) -> ImportReport:
    return await import_store(
        db, VAULT, store.conversations_dir, openhands_secret_key=store.secret_key, **options
    )


async def _events(client: httpx.AsyncClient, cid: str) -> list[dict[str, Any]]:
    url = f"/api/conversations/{cid}/events/search"
    items: list[dict[str, Any]] = []
    page_id = None
    while True:
        params = {"limit": 100, **({"page_id": page_id} if page_id else {})}
        body = (await client.get(url, params=params)).json()
        items += body["items"]
        page_id = body["next_page_id"]
        if page_id is None:
            return items


async def test_every_readable_event_once_in_order_and_the_damage_reported(
    db: Database, client: httpx.AsyncClient, sdk_store: SdkStore, sdk_events: SdkEvents
) -> None:
    report = await _import(db, sdk_store)
    expected = sdk_store.conversations()
    assert {str(c.id) for c in report.conversations} == {c["id"] for c in expected.values()}
    for directory, conversation in expected.items():
        cid = conversation["id"]
        got = (await client.get(f"/api/conversations/{cid}")).json()
        assert got["title"] == conversation["title"] and got["tags"] == conversation["tags"]
        assert got["agent"]["kind"] == "Agent"
        assert got["agent"]["llm"]["model"] == conversation["llm_model"]
        assert sdk_store.manifest["api_key"] not in json.dumps(got)
        events = await _events(client, cid)
        assert [(e["id"], e["kind"]) for e in events] == _readable(conversation), directory
        count = (await client.get(f"/api/conversations/{cid}/events/count")).json()
        assert count == len(events)
        stamps = [e["timestamp"] for e in events]
        assert stamps == sorted(stamps)
        assert not await sdk_events(events), directory
        # Payloads as the SDK wrote them: every field of each file is served back (the
        # timestamp in this server's UTC format; `cache_prompt: false`, the SDK's default,
        # left out as this server leaves it out).
        for event in events[:: max(1, len(events) // 5)]:
            index = next(e[0] for e in conversation["events"] if e[1] == event["id"])
            path = sdk_store.conversations_dir / directory / "events"
            path = path / f"event-{index:05d}-{event['id']}.json"
            written = json.loads(await asyncio.to_thread(path.read_text))
            assert _without_defaults(event, "timestamp") == _without_defaults(written, "timestamp")
    damaged = {d: c for d, c in expected.items() if c["damaged"]}
    assert damaged, "the store has a damaged conversation"
    problems = [(p.conversation, p.file, p.what) for p in report.all_problems]
    for directory, conversation in damaged.items():
        for damage in conversation["damaged"]:
            index = f"event-{damage['index']:05d}-"
            assert any(where == directory and index in file for where, file, _ in problems), (
                damage,
                problems,
            )
    # The credentials were opened with the store's key and sealed again here.
    async with db.session(write=False) as session:
        rows = (await session.execute(text("SELECT id, agent, secrets FROM conversations"))).all()
    for _, agent, sealed in rows:
        assert sdk_store.manifest["api_key"] not in str(agent) + str(sealed)
        assert str(sealed).startswith("fernet:")


async def test_a_second_run_adds_nothing(db: Database, sdk_store: SdkStore) -> None:
    first = await _import(db, sdk_store)
    second = await _import(db, sdk_store)
    assert first.events_imported > 0 and second.events_imported == 0
    assert {c.outcome for c in second.conversations} == {"unchanged"}
    async with db.session(write=False) as session:
        total = (await session.execute(text("SELECT count(*) FROM events"))).scalar_one()
    assert total == first.events_imported


async def test_a_conversation_with_other_content_is_reported_not_merged(
    db: Database, client: httpx.AsyncClient, sdk_store: SdkStore
) -> None:
    taken = next(iter(sdk_store.conversations().values()))["id"]
    await create_conversation(client, id=taken, title="mine")
    report = await _import(db, sdk_store)
    [conflict] = report.conflicts
    assert str(conflict.id) == taken
    got = (await client.get(f"/api/conversations/{taken}")).json()
    assert got["title"] == "mine" and got["last_seq"] == 0


async def test_a_dry_run_writes_nothing(db: Database, sdk_store: SdkStore) -> None:
    report = await _import(db, sdk_store, dry_run=True)
    assert report.events_imported > 0
    assert {c.outcome for c in report.conversations} == {"would import"}
    async with db.session(write=False) as session:
        assert (await session.execute(text("SELECT count(*) FROM conversations"))).scalar_one() == 0


async def test_without_the_store_key_credentials_are_reported_missing(
    db: Database, client: httpx.AsyncClient, sdk_store: SdkStore
) -> None:
    report = await import_store(db, VAULT, sdk_store.conversations_dir)
    lost = [p for p in report.all_problems if "cannot be opened" in p.what]
    assert lost, report.all_problems
    cid = next(iter(sdk_store.conversations().values()))["id"]
    assert (await client.get(f"/api/conversations/{cid}")).status_code == 200
    assert uuid.UUID(cid)


async def test_the_command_lists_the_damage_and_exits_2(
    db: Database, database_url: str, sdk_store: SdkStore
) -> None:
    """(`db`: its tables are emptied after the test.)"""
    env = {**os.environ, "AGENT_SERVER_DATABASE_URL": database_url}
    env["OH_SECRET_KEY"] = sdk_store.secret_key
    command = [sys.executable, "-m", "app.cli", "import", "openhands"]
    done = await asyncio.to_thread(
        subprocess.run,
        [*command, str(sdk_store.conversations_dir)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    output = done.stdout.decode(errors="replace").replace("\n", " ")
    assert done.returncode == 2, output
    assert "SomethingNew" in output and "missing (a gap of 1)" in output
    assert sdk_store.manifest["api_key"] not in output + done.stderr.decode(errors="replace")


async def test_a_rerun_with_the_store_key_restores_the_credentials(
    db: Database, sdk_store: SdkStore
) -> None:
    await import_store(db, VAULT, sdk_store.conversations_dir)  # no key: left out
    await _import(db, sdk_store)  # the key now
    async with db.session(write=False) as session:
        rows = (await session.execute(text("SELECT agent, secrets FROM conversations"))).all()
    opened = [
        VAULT.unseal(json.loads(agent) if isinstance(agent, str) else agent, sealed)[0]["llm"].get(
            "api_key"
        )
        for agent, sealed in rows
    ]
    assert sdk_store.manifest["api_key"] in opened


async def test_a_conversation_that_went_on_here_is_not_merged(
    db: Database, client: httpx.AsyncClient, sdk_store: SdkStore
) -> None:
    await _import(db, sdk_store)
    cid = next(iter(sdk_store.conversations().values()))["id"]
    message = {"role": "user", "content": [{"type": "text", "text": "here now"}]}
    assert (await client.post(f"/api/conversations/{cid}/events", json=message)).is_success
    again = await _import(db, sdk_store)
    assert [str(c.id) for c in again.conflicts] == [cid]
    assert {c.outcome for c in again.conversations if str(c.id) != cid} == {"unchanged"}
