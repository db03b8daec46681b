"""Provider credentials stay with the server (security review, issue "Security").

Attacks as a client holding a valid session key would send them: point a conversation's LLM
at a recording endpoint to catch the server's key; smuggle litellm keywords through
`agent.llm`; read credentials back through any response, event or log line. The recording
endpoint is the fake LLM under another path prefix (`/evil/v1`), so the test can tell which
endpoint received which Authorization header.
"""

import asyncio
import json
import logging
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from websockets.asyncio.client import connect

from app.db.session import Database
from app.vault.cipher import Cipher, generate_key
from app.vault.redact import MASK
from tests.conftest import create_conversation
from tests.runs.conftest import FakeLLM, RunAppFactory, events_of, wait_run
from tests.streams.conftest import LiveServer

SERVER_KEY = "sk-server-7f3a9c1e5b"
CLIENT_KEY = "sk-client-2d8e4f6a0c"
ENDED = {"completed", "failed", "interrupted", "cancelled"}


def _server(llm: FakeLLM, **extra: Any) -> dict[str, Any]:
    return {
        "llm_model": "openai/fake-model",
        "llm_base_url": llm.model_url,
        "llm_api_key": SERVER_KEY,
        **extra,
    }


def _evil(llm: FakeLLM) -> str:
    return f"{llm.base_url}/evil/v1"


async def _run(client: httpx.AsyncClient, llm_spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    conversation = await create_conversation(
        client,
        agent={"llm": llm_spec},
        initial_message={"content": [{"type": "text", "text": "hi"}]},
    )
    cid = str(conversation["id"])
    response = await client.post(f"/api/conversations/{cid}/run")
    assert response.status_code == 202, response.text
    return cid, await wait_run(client, response.json()["id"], ENDED)


def _auth(seen: list[dict[str, Any]], prefix: str) -> list[str | None]:
    return [h["headers"].get("authorization") for h in seen if h["path"].startswith(prefix)]


async def test_a_conversation_url_without_its_own_key_is_422(
    run_app: RunAppFactory, llm: FakeLLM
) -> None:
    """The stolen-key attack: before the fix, a conversation with its own base_url and no
    api_key got AGENT_SERVER_LLM_API_KEY attached to its calls. Checked once with the policy
    check removed from Vault.store: 201."""
    async with run_app(**_server(llm)) as client:
        response = await client.post(
            "/api/conversations", json={"agent": {"llm": {"base_url": _evil(llm)}}}
        )
    assert response.status_code == 422, response.text
    assert response.json()["details"][0]["loc"] == ["body", "agent", "llm", "api_key"]
    assert "server's own endpoint" in response.json()["message"]
    assert await llm.headers() == []


async def test_the_server_key_goes_only_to_the_server_url(
    run_app: RunAppFactory, llm: FakeLLM
) -> None:
    """Each endpoint gets the key that belongs to it: the client's URL the client's key, the
    server's URL (named or not) the server's key."""
    async with run_app(**_server(llm)) as client:
        _, own = await _run(client, {"base_url": _evil(llm), "api_key": CLIENT_KEY})
        _, default = await _run(client, {})
        # The server's own URL, spelled with a trailing slash, is still the server's.
        _, same = await _run(client, {"base_url": llm.model_url + "/"})
    assert (own["status"], default["status"], same["status"]) == ("completed",) * 3
    seen = await llm.headers()
    assert _auth(seen, "/evil/") == [f"Bearer {CLIENT_KEY}"]
    assert _auth(seen, "/v1/") == [f"Bearer {SERVER_KEY}"] * 2
    assert SERVER_KEY not in str([h for h in seen if h["path"].startswith("/evil/")])


async def test_a_stored_conversation_breaking_the_rule_never_gets_the_key(
    run_app: RunAppFactory, llm: FakeLLM, db: Database
) -> None:
    """A row written before the rule existed (base_url, no key) fails its run with the rule's
    message; nothing reaches its URL. Checked against the run-time check removed: the evil
    endpoint received the server's key."""
    async with run_app(**_server(llm)) as client:
        conversation = await create_conversation(client, agent={"llm": {}})
        cid = str(conversation["id"])
        agent = f'{{"kind": "LLMAgent", "llm": {{"base_url": "{_evil(llm)}"}}}}'
        async with db.session(write=True) as session:
            stmt = "UPDATE conversations SET agent = :agent WHERE id = :id"
            if not db.is_sqlite:
                stmt = "UPDATE conversations SET agent = CAST(:agent AS jsonb) WHERE id = :id"
            key = uuid.UUID(cid).hex if db.is_sqlite else uuid.UUID(cid)
            await session.execute(text(stmt).bindparams(agent=agent, id=key))
        await client.post(
            f"/api/conversations/{cid}/events", json={"content": [{"type": "text", "text": "x"}]}
        )
        response = await client.post(f"/api/conversations/{cid}/run")
        run = await wait_run(client, response.json()["id"], ENDED)
    assert run["status"] == "failed", run
    assert "server's own endpoint" in run["error"]
    assert await llm.headers() == []


async def test_only_allowed_base_urls(run_app: RunAppFactory, llm: FakeLLM) -> None:
    allowed = f"{llm.base_url}/good/v1"
    async with run_app(**_server(llm, llm_allowed_base_urls=[allowed])) as client:
        refused = await client.post(
            "/api/conversations",
            json={"agent": {"llm": {"base_url": _evil(llm), "api_key": CLIENT_KEY}}},
        )
        _, run = await _run(client, {"base_url": allowed, "api_key": CLIENT_KEY})
        _, default = await _run(client, {})
    assert refused.status_code == 422, refused.text
    assert refused.json()["details"][0]["loc"] == ["body", "agent", "llm", "base_url"]
    assert "AGENT_SERVER_LLM_ALLOWED_BASE_URLS" in refused.json()["message"]
    assert (run["status"], default["status"]) == ("completed", "completed")
    assert _auth(await llm.headers(), "/good/") == [f"Bearer {CLIENT_KEY}"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("api_base", "http://127.0.0.1:9/v1"),
        ("custom_llm_provider", "openai"),
        ("headers", {"Authorization": "Bearer x"}),
        ("extra_body", {"a": 1}),
        ("vertex_credentials", "{}"),
        ("mock_response", "pwned"),
    ],
)
async def test_llm_keywords_outside_the_allowlist_are_422(
    client: httpx.AsyncClient, field: str, value: Any
) -> None:
    """Before: `extra="allow"` passed any litellm keyword through to the provider call."""
    body = {"agent": {"llm": {"model": "m", field: value}}}
    response = await client.post("/api/conversations", json=body)
    assert response.status_code == 422, response.text
    locs = [error["loc"] for error in response.json()["details"]]
    assert ["body", "agent", "llm", field] in locs


async def test_deeply_nested_llm_extras_are_422_not_500(client: httpx.AsyncClient) -> None:
    nested: Any = "x"
    for _ in range(300):
        nested = {"a": nested}
    response = await client.post(
        "/api/conversations", json={"agent": {"llm": {"model": "m", "extra": nested}}}
    )
    assert response.status_code == 422, response.text[:300]
    assert len(response.content) < 10_000  # the hostile input is not echoed back


async def test_allowlisted_parameters_reach_the_llm(run_app: RunAppFactory, llm: FakeLLM) -> None:
    params = {"temperature": 0.3, "top_p": 0.9, "max_tokens": 77, "seed": 5, "stop": ["END"]}
    header = "hdr-secret-91c2e7"
    async with run_app(**_server(llm)) as client:
        _, run = await _run(client, {**params, "extra_headers": {"X-Tenant-Token": header}})
    assert run["status"] == "completed", run
    request = (await llm.requests())[0]
    assert {k: request.get(k) for k in params} == params
    assert (await llm.headers())[0]["headers"]["x-tenant-token"] == header


SECRETS = {
    "api_key": "sk-at-rest-3b5d7f9a1c",
    "extra_headers": {"X-Api-Token": "hdr-at-rest-8e6c4a2b0d"},
    "aws_access_key_id": "AKIAATREST12345678",
    "aws_secret_access_key": "aws-secret-at-rest-6f4e2d0c",
}
VALUES = ["sk-at-rest-3b5d7f9a1c", "hdr-at-rest-8e6c4a2b0d", "AKIAATREST12345678"]
VALUES.append("aws-secret-at-rest-6f4e2d0c")


async def _raw_row(db: Database, cid: str) -> tuple[str, str | None]:
    async with db.session(write=False) as session:
        key = uuid.UUID(cid).hex if db.is_sqlite else uuid.UUID(cid)
        row = (
            await session.execute(
                text("SELECT CAST(agent AS TEXT), secrets FROM conversations WHERE id = :id"),
                {"id": key},
            )
        ).one()
    return row[0], row[1]


async def test_credentials_are_encrypted_at_rest_and_masked_in_every_response(
    run_app: RunAppFactory, db: Database
) -> None:
    key = generate_key()
    async with run_app(secret_key=[key], run_worker_enabled=False) as client:
        created = await client.post(
            "/api/conversations", json={"agent": {"llm": {"model": "m", **SECRETS}}}
        )
        assert created.status_code == 201, created.text
        cid = created.json()["id"]
        responses = [
            created,
            await client.get(f"/api/conversations/{cid}"),
            await client.get(f"/api/conversations?ids={cid}"),
            await client.get("/api/conversations/search"),
            await client.get(f"/api/conversations/{cid}/events/search"),
        ]
        agent_text, sealed = await _raw_row(db, cid)
    for response in responses:
        assert response.status_code == 200 or response is created
        for value in VALUES:
            assert value not in response.text
    shown = created.json()["agent"]["llm"]
    assert shown["api_key"] == MASK and shown["extra_headers"] == {"X-Api-Token": MASK}
    assert shown["aws_secret_access_key"] == MASK
    assert sealed is not None and sealed.startswith("fernet:")
    for value in VALUES:
        assert value not in agent_text and value not in sealed
    opened = Cipher([key]).open(sealed)
    assert opened["llm"]["api_key"] == SECRETS["api_key"]
    assert opened["llm"]["extra_headers"] == SECRETS["extra_headers"]


async def test_without_a_key_the_server_warns_and_still_masks(
    run_app: RunAppFactory, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="app.main")
    async with run_app(run_worker_enabled=False) as client:
        created = await client.post(
            "/api/conversations", json={"agent": {"llm": {"model": "m", **SECRETS}}}
        )
        agent_text, sealed = await _raw_row(db, created.json()["id"])
    assert "AGENT_SERVER_SECRET_KEY is not set" in caplog.text
    assert sealed is not None and sealed.startswith("plain:")
    for value in VALUES:
        assert value not in agent_text and value not in created.text


async def test_a_malformed_secret_key_stops_the_start(db: Database) -> None:
    from app.vault.cipher import SecretKeyError
    from tests.conftest import make_app

    with pytest.raises(SecretKeyError, match="Fernet"):
        make_app(db, secret_key=["not-a-fernet-key"])


async def test_no_secret_in_any_log_line_event_or_error_at_debug(
    run_app: RunAppFactory, llm: FakeLLM, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """The endpoint answers 401 and repeats the Authorization header it got (as a careless
    or hostile one might); the run fails. At DEBUG on every logger, no log line, event, run
    error or llm_calls row holds the key. Checked once with the redaction removed (no record
    factory, no masking of error texts): the key appeared in the log, the run's error, the
    ConversationErrorEvent and llm_calls.error."""
    await llm.script({"error": 401, "message": "bad key", "echo_auth": True})
    caplog.set_level(logging.DEBUG)
    async with run_app(**_server(llm)) as client:
        cid, run = await _run(client, {"base_url": _evil(llm), "api_key": CLIENT_KEY})
        events = await events_of(client, cid)
    assert run["status"] == "failed", run
    assert "you sent Bearer " + MASK in run["error"]
    async with db.session(write=False) as session:
        calls = (await session.execute(text("SELECT error FROM llm_calls"))).scalars().all()
    logged = "\n".join(
        record.getMessage() + "\n" + (record.exc_text or "") for record in caplog.records
    )
    assert "bad key" in logged  # the failure was logged, with the key masked
    for text_ in (logged, str(events), str(calls), str(run)):
        assert CLIENT_KEY not in text_ and SERVER_KEY not in text_


async def test_the_websocket_full_state_frame_masks_credentials(live: LiveServer) -> None:
    async with live() as base, httpx.AsyncClient(base_url=base) as client:
        created = await client.post(
            "/api/conversations", json={"agent": {"llm": {"model": "m", **SECRETS}}}
        )
        cid = created.json()["id"]
        url = base.replace("http://", "ws://") + f"/sockets/events/{cid}"
        async with connect(url) as ws:
            frame = await asyncio.wait_for(ws.recv(), 10)
    assert '"full_state"' in str(frame)
    for value in VALUES:
        assert value not in str(frame)
    assert json.loads(frame)["value"]["agent"]["llm"]["api_key"] == MASK
