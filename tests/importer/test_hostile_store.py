"""A store is untrusted input: every hostile file or value below is reported and left out,
the rest imported, and the imported conversations keep the API working (no 500), on both
databases. Each case was found by a review that crashed the whole import with it before."""

import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from app.config import Settings
from app.db.session import Database
from app.importer.service import import_store
from app.vault.service import Vault

VAULT = Vault.from_settings(
    Settings(_env_file=None, secret_key=Fernet.generate_key().decode())  # type: ignore[call-arg]
)


def _message(text: str, stamp: str = "2026-11-01T10:00:00.000001") -> dict[str, Any]:
    return {
        "kind": "MessageEvent",
        "id": str(uuid.uuid4()),
        "timestamp": stamp,
        "source": "user",
        "llm_message": {"role": "user", "content": [{"type": "text", "text": text}]},
    }


def _conversation(root: Path, state: dict[str, Any], events: list[Any]) -> str:
    cid = uuid.uuid4()
    directory = root / cid.hex
    (directory / "events").mkdir(parents=True)
    (directory / "base_state.json").write_text(json.dumps({"id": str(cid), **state}))
    for index, event in enumerate(events):
        if event is None:
            continue  # a gap
        raw = event if isinstance(event, bytes) else json.dumps(event).encode()
        event_id = event.get("id", "x" * 8) if isinstance(event, dict) else "f" * 8
        name = f"event-{index:05d}-{str(event_id)[:64]}.json"
        (directory / "events" / name).write_bytes(raw)
    return str(cid)


def _build(root: Path) -> dict[str, str]:
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    cases = {
        "healthy": _conversation(root, {"title": "fine"}, [_message("a"), _message("b")]),
        "odd values": _conversation(
            root,
            {
                "title": "nul\u0000title",
                "tags": {"k\u0000": "v"},
                "stats": {"n": 2**70},
                "max_iterations": 10**30,
                "workspace": "not an object",
                "confirmation_policy": {"kind": "Whatever"},
                "agent": {"kind": "Agent", "llm": {"model": "m", "api_key": "\ud800"}},
                "secret_registry": {"secret_sources": {"TOKEN": {"value": "\ud800x"}}},
            },
            [_message("ok")],
        ),
        "odd events": _conversation(
            root,
            {},
            [
                _message("first"),
                {**_message("x"), "kind": [1]},
                {**_message("x"), "timestamp": "9999-12-31T23:00:00-05:00"},
                {**_message("x"), "extra": 2**70},
                {**_message("x"), "extra": deep},
                {**_message("x"), "id": "i" * 80},
                _message("older", stamp="2001-01-01T00:00:00"),
                b"\xff not json",
                _message("last"),
            ],
        ),
    }
    # A symlink to a device, a FIFO and a link out of the store, named as event files.
    events = root / uuid.UUID(cases["healthy"]).hex / "events"
    os.symlink("/dev/zero", events / f"event-00002-{'a' * 8}.json")
    os.mkfifo(events / f"event-00003-{'b' * 8}.json")
    os.symlink("/etc/hostname", events / f"event-00004-{'c' * 8}.json")
    # One far index: a huge gap, reported as one range; a non-ASCII digit is no index.
    (events / "event-0300000000-dddddddd.json").write_text(json.dumps(_message("far")))
    (events / "event-\u0663\u0663\u0663\u0663\u0663-eeeeeeee.json").write_text("{}")
    return cases


async def test_hostile_files_and_values_are_reported_and_the_rest_imported(
    db: Database, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    cases = await asyncio.to_thread(_build, tmp_path)
    report = await asyncio.wait_for(import_store(db, VAULT, tmp_path), 60)
    outcomes = {str(c.id): c.outcome for c in report.conversations}
    assert set(outcomes.values()) == {"imported"}, report
    problems = " | ".join(f"{p.file}: {p.what}" for p in report.all_problems)
    for expected in (
        "not a regular file",  # /dev/zero
        "unreadable",  # the link out of the store (never followed)
        "a gap of 299999995",  # one problem for the whole range
        "workspace: not valid",
        "confirmation_policy: not valid",
        "stats: not storable",
        "unknown event kind",
        "not storable",
        "not a valid MessageEvent",
        "older than the one before",
        "no usable timestamp",
        "not valid JSON",
    ):
        assert expected in problems, (expected, problems)
    texts = {}
    for name, cid in cases.items():
        response = await client.get(f"/api/conversations/{cid}/events/search")
        assert response.status_code == 200, (name, response.text)
        items = response.json()["items"]
        texts[name] = [i["llm_message"]["content"][0]["text"] for i in items]
        got = await client.get(f"/api/conversations/{cid}")
        assert got.status_code == 200, (name, got.text)
    assert texts["healthy"] == ["a", "b", "far"]
    # The unusable timestamp's event is kept, with the time of the one before it.
    assert texts["odd events"] == ["first", "x", "older", "last"]
    assert (await client.get("/api/conversations/search")).status_code == 200
    odd = (await client.get(f"/api/conversations/{cases['odd values']}")).json()
    assert odd["max_iterations"] == 100_000 and odd["stats"] == {}
    assert odd["confirmation_policy"] == {"kind": "NeverConfirm"} and odd["workspace"] is None
