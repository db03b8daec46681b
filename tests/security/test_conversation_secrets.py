"""A conversation's environment secrets (`POST /api/conversations/{id}/secrets`, the OpenHands
SDK's `update_secrets`): the SDK's wire format, sealed with the LLM credentials, write-only,
bounded, and no lost name under concurrent writers; on SQLite and Postgres."""

import asyncio
import logging
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.db.session import Database
from app.vault import env as vault_env
from app.vault.cipher import Cipher, generate_key
from app.vault.redact import MASK
from app.vault.service import Vault
from app.vault.specs import reveal
from tests.conftest import create_conversation, make_app, send_message, serve_app

TOKEN = "tok-5e1b9d3f7a2c"
API_KEY = "sk-client-8c2e4a6b0d"
# What the SDK sends for str, StaticSecret and the older {"value": ...} (model_dump of 1.58.2).
SDK_BODY = {
    "secrets": {
        "API_TOKEN": TOKEN,
        "DB_PASSWORD": {"description": None, "value": "pw-3a5c7e9b1d", "kind": "StaticSecret"},
        "OLD_FORM": {"value": "old-4b6d8f0a2c"},
    }
}
VALUES = (TOKEN, "pw-3a5c7e9b1d", "old-4b6d8f0a2c")


def _url(cid: object) -> str:
    return f"/api/conversations/{cid}/secrets"


async def _sealed(db: Database, cid: object) -> str | None:
    key = uuid.UUID(str(cid))
    async with db.session(write=False) as session:
        row = (
            await session.execute(
                text("SELECT secrets FROM conversations WHERE id = :id"),
                {"id": key.hex if db.is_sqlite else key},
            )
        ).one()
    sealed: str | None = row[0]
    return sealed


async def test_the_sdk_wire_format_is_stored_beside_the_llm_credentials(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """Answered as the OpenHands agent-server answers (`Success`), merged by name, sealed
    under AGENT_SERVER_SECRET_KEY with the LLM key, and never shown again: not in the answer,
    GET, search, batch get, events, the sealed text, nor a log line."""
    key = generate_key()
    caplog.set_level(logging.DEBUG)
    async with serve_app(make_app(db, secret_key=[key])) as client:
        created = await create_conversation(
            client, agent={"llm": {"model": "m", "api_key": API_KEY}}
        )
        cid = created["id"]
        await send_message(client, cid, "hello")
        version = (await client.get(f"/api/conversations/{cid}")).json()["version"]
        answer = await client.post(_url(cid), json=SDK_BODY)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"success": True}
        again = await client.post(_url(cid), json={"secrets": {"API_TOKEN": "tok-replaced-0f2e"}})
        assert again.json() == {"success": True}
        got = await client.get(f"/api/conversations/{cid}")
        shown = [
            answer,
            again,
            got,
            await client.get("/api/conversations/search"),
            await client.get("/api/conversations", params={"ids": str(cid)}),
            await client.get(f"/api/conversations/{cid}/events/search"),
        ]
        sealed = await _sealed(db, cid)
    assert got.json()["version"] == version + 2 == int(got.headers["etag"].strip('"'))
    assert got.json()["agent"]["llm"]["api_key"] == MASK
    for response in shown:
        assert response.status_code == 200, response.text
        for value in (*VALUES, "tok-replaced-0f2e", API_KEY):
            assert value not in response.text
    assert sealed is not None and sealed.startswith("fernet:")
    for value in (*VALUES, "tok-replaced-0f2e", API_KEY):
        assert value not in sealed and value not in caplog.text
    opened = Cipher([key]).open(sealed)
    assert opened == {
        "llm": {"api_key": API_KEY},
        "env": {
            "API_TOKEN": "tok-replaced-0f2e",
            "DB_PASSWORD": "pw-3a5c7e9b1d",
            "OLD_FORM": "old-4b6d8f0a2c",
        },
    }
    # The runner's paths: the spec gets its LLM key back and nothing else; the tools' env.
    vault = Vault.from_settings(make_app(db, secret_key=[key]).state.settings)
    spec, hidden = vault.unseal(created["agent"], sealed)  # type: ignore[arg-type]
    assert spec["llm"] == {"model": "m", "api_key": API_KEY} and "env" not in spec
    assert set(hidden) >= {API_KEY, "pw-3a5c7e9b1d"}
    assert vault.env_secrets(sealed) == opened["env"]


def test_merge_and_read_are_pure_and_leave_the_llm_part_alone() -> None:
    llm_only = {"llm": {"api_key": API_KEY}}
    merged = vault_env.merge_env(llm_only, {"A": "1", "B": "2"})
    assert merged == {"llm": {"api_key": API_KEY}, "env": {"A": "1", "B": "2"}}
    assert llm_only == {"llm": {"api_key": API_KEY}}
    assert vault_env.merge_env(merged, {"B": "3"})["env"] == {"A": "1", "B": "3"}
    assert vault_env.merge_env(llm_only, {}) == llm_only
    assert vault_env.env_of(llm_only) == {} and vault_env.env_of({"env": "junk"}) == {}
    assert reveal({"llm": {"model": "m"}}, merged) == {"llm": {"model": "m", "api_key": API_KEY}}
    assert reveal({"llm": {"model": "m"}}, {"env": {"A": "1"}}) == {"llm": {"model": "m"}}


LEAK = "leak-9d1f3b5a7c"
INVALID: list[tuple[str, Any, str]] = [
    ("name not an env name", {"secrets": {"BAD-NAME": LEAK}}, "pattern"),
    ("name starting with a digit", {"secrets": {"1ABC": LEAK}}, "pattern"),
    ("empty name", {"secrets": {"": LEAK}}, "pattern"),
    ("name too long", {"secrets": {"A" * 129: LEAK}}, "pattern"),
    ("reserved name", {"secrets": {"AGENT_SERVER_SECRET_KEY": LEAK}}, "reserved"),
    ("reserved, lower case", {"secrets": {"agent_server_llm_api_key": LEAK}}, "reserved"),
    ("too many names", {"secrets": {f"N{i}": LEAK for i in range(101)}}, "100"),
    ("value too long", {"secrets": {"BIG": LEAK + "x" * 65_536}}, "65536 bytes"),
    ("value too long in bytes", {"secrets": {"BIG": LEAK + "\u00e9" * 32_764}}, "65536 bytes"),
    (
        "StaticSecret too long",
        {"secrets": {"BIG": {"kind": "StaticSecret", "value": LEAK + "x" * 65_536}}},
        "65536 bytes",
    ),
    ("NUL in a value", {"secrets": {"NUL": LEAK + "\x00"}}, "NUL"),
    ("null value", {"secrets": {"X": {"kind": "StaticSecret", "value": None}}}, "null"),
    ("number value", {"secrets": {"PIN": 90817263}}, "a string or an object"),
    (
        "number in StaticSecret",
        {"secrets": {"PIN": {"kind": "StaticSecret", "value": 90817263}}},
        "string",
    ),
    ("list value", {"secrets": {"X": [LEAK]}}, "a string or an object"),
    (
        "LookupSecret",
        {
            "secrets": {
                "X": {
                    "kind": "LookupSecret",
                    "url": "http://169.254.169.254/latest/meta-data/",
                    "headers": {"Authorization": f"Bearer {LEAK}"},
                    "description": None,
                }
            }
        },
        "server-side request forgery",
    ),
    ("unknown kind", {"secrets": {"X": {"kind": "VaultSecret", "value": LEAK}}}, "kind"),
    ("object without kind", {"secrets": {"X": {"token": LEAK}}}, "kind"),
    (
        "extra field",
        {"secrets": {"X": {"kind": "StaticSecret", "value": "v", "secret": LEAK}}},
        "unknown fields 'secret'",
    ),
    ("extra top-level field", {"secrets": {}, "other": LEAK}, "unknown fields 'other'"),
    ("secrets not an object", {"secrets": LEAK}, "must be an object"),
    ("no secrets", {}, "missing"),
]


@pytest.mark.parametrize(("case", "body", "reason"), INVALID, ids=[c[0] for c in INVALID])
async def test_invalid_secrets_are_422_without_echoing_a_value(
    client: httpx.AsyncClient, db: Database, case: str, body: Any, reason: str
) -> None:
    created = await create_conversation(client)
    before = await _sealed(db, created["id"])
    response = await client.post(_url(created["id"]), json=body)
    assert response.status_code == 422, response.text
    assert reason in response.text, response.text
    assert LEAK not in response.text and "90817263" not in response.text
    assert await _sealed(db, created["id"]) == before
    assert (await client.get(f"/api/conversations/{created['id']}")).json()["version"] == 1


async def test_at_most_200_names_are_stored_and_replacing_one_is_no_new_name(
    client: httpx.AsyncClient,
) -> None:
    cid = (await create_conversation(client))["id"]
    for start in (0, 100):
        batch = {f"N{i}": f"value-{i}" for i in range(start, start + 100)}
        assert (await client.post(_url(cid), json={"secrets": batch})).status_code == 200
    refused = await client.post(_url(cid), json={"secrets": {"N0": "new", "MORE": "x"}})
    assert refused.status_code == 422 and "at most 200" in refused.text
    replaced = await client.post(_url(cid), json={"secrets": {"N0": "new", "N199": "new"}})
    assert replaced.status_code == 200, replaced.text


async def test_unknown_conversations_are_404_and_an_empty_update_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    bodies: list[dict[str, Any]] = [{"secrets": {"A": "value"}}, {"secrets": {}}]
    for body in bodies:
        missing = await client.post(_url(uuid.uuid4()), json=body)
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    cid = (await create_conversation(client))["id"]
    empty = await client.post(_url(cid), json={"secrets": {}})
    assert empty.status_code == 200 and empty.json() == {"success": True}
    assert (await client.get(f"/api/conversations/{cid}")).json()["version"] == 1


async def test_credentials_no_key_opens_are_409_and_left_as_they_are(db: Database) -> None:
    async with serve_app(make_app(db, secret_key=[generate_key()])) as client:
        cid = (
            await create_conversation(client, agent={"llm": {"model": "m", "api_key": API_KEY}})
        )["id"]
    before = await _sealed(db, cid)
    async with serve_app(make_app(db, secret_key=[generate_key()])) as client:
        response = await client.post(_url(cid), json={"secrets": {"A": "value"}})
    assert response.status_code == 409 and "cannot be opened" in response.text
    assert await _sealed(db, cid) == before


async def test_concurrent_writers_lose_no_name(client: httpx.AsyncClient, db: Database) -> None:
    """Two requests setting different names at once on the same conversation (and 10 such
    pairs on 10 conversations at once, so that they interleave): every name survives.

    Checked once against a deliberately broken variant, set_env without lock_conversation:
    on Postgres the test failed (one name of a pair lost: both requests read the sealed
    value before either wrote). On SQLite write transactions are serialized whole (BEGIN
    IMMEDIATE and the process write lock), so there the test guards that machinery."""
    ids = [(await create_conversation(client))["id"] for _ in range(10)]

    async def put(cid: object, name: str) -> httpx.Response:
        return await client.post(_url(cid), json={"secrets": {name: f"{name}-{cid}"}})

    responses = await asyncio.gather(*(put(cid, name) for cid in ids for name in ("A_1", "B_2")))
    assert [r.status_code for r in responses] == [200] * 20, [r.text for r in responses]
    vault = Vault(Cipher(), None)  # type: ignore[arg-type]
    for cid in ids:
        assert vault.env_secrets(await _sealed(db, cid)) == {
            "A_1": f"A_1-{cid}",
            "B_2": f"B_2-{cid}",
        }
        version = (await client.get(f"/api/conversations/{cid}")).json()["version"]
        assert version == 3
