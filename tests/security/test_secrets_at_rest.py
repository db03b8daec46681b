"""Credentials at rest: the migration that seals existing plain-text keys, key rotation, and
the `agent-server secrets` commands, on SQLite and Postgres."""

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from app.db import migrations
from app.db.session import Database
from app.vault.cipher import Cipher, UnreadableSecrets, generate_key
from app.vault.redact import MASK
from app.vault.rotate import rotate
from tests.conftest import BASE_URL, create_conversation, make_app, serve_app
from tests.dbutil import create_database, drop_database

ROOT = Path(__file__).resolve().parents[2]
LEGACY_LLM = {
    "model": "m",
    "temperature": 0.5,
    "api_key": "sk-legacy-5c7e9a1b3d",
    "extra_headers": {"X-Token": "hdr-legacy-4a6c8e0b2d"},
    "vertex_credentials": "legacy-extra-1f3b5d7e9c",
}


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[None]:
    """Alembic and the CLI run in threads and processes reading their scripts from disk:
    start-up work, not the request path the loop gate is for."""
    yield


def _key(db: Database, cid: uuid.UUID) -> object:
    return cid.hex if db.is_sqlite else cid


async def _row(db: Database, cid: uuid.UUID) -> tuple[dict[str, object], str | None]:
    async with db.session(write=False) as session:
        row = (
            await session.execute(
                text("SELECT agent, secrets FROM conversations WHERE id = :id"),
                {"id": _key(db, cid)},
            )
        ).one()
    agent = row[0] if isinstance(row[0], dict) else json.loads(row[0])
    return agent, row[1]


async def test_0007_seals_existing_plain_keys_and_the_downgrade_restores_them(
    tmp_dir: Path,
) -> None:
    url = await asyncio.to_thread(create_database, BASE_URL, tmp_dir, "mig_secrets")
    db = await asyncio.to_thread(Database.from_url, url)
    key = generate_key()
    try:
        await asyncio.to_thread(migrations.upgrade, url, "0006")
        cid, keyless = uuid.uuid4(), uuid.uuid4()
        now = datetime.now(UTC)
        agent_sql = ":agent" if db.is_sqlite else "CAST(:agent AS JSONB)"
        async with db.session(write=True) as session:
            for conversation_id, llm in ((cid, LEGACY_LLM), (keyless, {"model": "m"})):
                await session.execute(
                    text(
                        "INSERT INTO conversations (id, title, tags, agent, execution_status, "
                        "max_iterations, stats, last_seq, version, created_at, updated_at) VALUES "
                        f"(:id, 't', '{{}}', {agent_sql}, 'idle', 5, '{{}}', 0, 1, :now, :now)"
                    ).bindparams(
                        id=_key(db, conversation_id),
                        agent=json.dumps({"kind": "LLMAgent", "llm": llm}),
                        now=now,
                    )
                )
        await asyncio.to_thread(migrations.upgrade, url, "0007", [key])
        agent, sealed = await _row(db, cid)
        assert agent["llm"] == {
            "model": "m",
            "temperature": 0.5,
            "api_key": MASK,
            "extra_headers": {"X-Token": MASK},
            "vertex_credentials": MASK,
        }
        assert sealed is not None and sealed.startswith("fernet:")
        for value in ("sk-legacy", "hdr-legacy", "legacy-extra"):
            assert value not in json.dumps(agent) and value not in sealed
        assert Cipher([key]).open(sealed)["llm"] == {
            k: v for k, v in LEGACY_LLM.items() if k not in ("model", "temperature")
        }
        assert (await _row(db, keyless)) == ({"kind": "LLMAgent", "llm": {"model": "m"}}, None)

        await asyncio.to_thread(migrations.downgrade, url, "0006", [key])
        async with db.session(write=False) as session:
            agent_text = (await session.execute(text("SELECT agent FROM conversations"))).all()
        restored = [a if isinstance(a, dict) else json.loads(a) for (a,) in agent_text]
        assert {"kind": "LLMAgent", "llm": LEGACY_LLM} in restored
    finally:
        await db.dispose()
        await asyncio.to_thread(drop_database, BASE_URL, url)


async def test_rotation_reseals_with_the_new_key_and_reports_what_no_key_opens(
    db: Database,
) -> None:
    old, new = generate_key(), generate_key()
    agent = {"llm": {"model": "m", "api_key": "sk-rotate-8b0d2f4a6c"}}
    ids = {}
    for name, keys in (("old", [old]), ("plain", []), ("lost", [generate_key()])):
        async with serve_app(make_app(db, secret_key=keys)) as client:
            ids[name] = uuid.UUID(str((await create_conversation(client, agent=agent))["id"]))
    cipher = Cipher([new, old])

    dry = await rotate(db, cipher, dry_run=True)
    assert (dry.checked, dry.resealed, dry.unreadable) == (3, 2, [ids["lost"]])
    assert (await _row(db, ids["plain"]))[1].startswith("plain:")  # type: ignore[union-attr]

    report = await rotate(db, cipher)
    assert (report.checked, report.resealed, report.unreadable) == (3, 2, [ids["lost"]])
    for name in ("old", "plain"):
        sealed = (await _row(db, ids[name]))[1]
        assert sealed is not None and sealed.startswith("fernet:")
        assert Cipher([new]).open(sealed)["llm"]["api_key"] == "sk-rotate-8b0d2f4a6c"
        with pytest.raises(UnreadableSecrets):
            Cipher([old]).open(sealed)
    again = await rotate(db, cipher)
    assert (again.resealed, again.unreadable) == (0, [ids["lost"]])


def _cli(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env={**os.environ, "AGENT_SERVER_DATABASE_URL": url, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_the_secrets_commands(tmp_path: Path) -> None:
    url = create_database(BASE_URL, tmp_path, "cli_secrets")
    try:
        generated = _cli(url, "secrets", "generate-key")
        assert generated.returncode == 0, generated.stderr
        key = generated.stdout.strip()
        Cipher([key])  # a valid Fernet key
        assert _cli(url, "db", "upgrade").returncode == 0
        rotated = _cli(url, "secrets", "rotate", AGENT_SERVER_SECRET_KEY=key)
        assert rotated.returncode == 0, rotated.stderr
        assert "0 conversations with credentials" in rotated.stdout
        keyless = _cli(url, "secrets", "rotate", AGENT_SERVER_SECRET_KEY="")
        assert keyless.returncode == 1
        assert keyless.stderr.strip() == (
            "agent-server: AGENT_SERVER_SECRET_KEY is not set: there is no key to encrypt with"
        )
        bad = _cli(url, "secrets", "rotate", AGENT_SERVER_SECRET_KEY="nope")
        assert bad.returncode == 1 and "Fernet" in bad.stderr
        assert "Traceback" not in bad.stderr
    finally:
        drop_database(BASE_URL, url)
