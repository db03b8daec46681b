"""Request ids, the access log, JSON log lines, request latency metrics, and litellm's log
lines routed once."""

import json
import logging
import re
import sys

import pytest
from fastapi import APIRouter

from app.agent.loader import AGENTS
from app.db.session import Database
from app.logging_config import REQUEST_ID, JsonLines
from tests.conftest import make_app, serve_app

probe = APIRouter()
inner = logging.getLogger("tests.probe")


@probe.get("/probe")
async def _probe() -> dict[str, str]:
    inner.warning("inside the request")
    return {"ok": "yes"}


def _records(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name]


async def test_a_request_id_is_made_returned_and_on_every_line_of_the_request(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(db)
    app.include_router(probe)
    caplog.set_level(logging.INFO)
    async with serve_app(app) as client:
        made = await client.get("/probe")
        given = await client.get("/probe", headers={"X-Request-ID": "client-id.1:a@b"})
        refused = await client.get("/probe", headers={"X-Request-ID": "bad id\twith space"})
        too_long = await client.get("/probe", headers={"X-Request-ID": "a" * 129})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert given.headers["x-request-id"] == "client-id.1:a@b"
    for response in (refused, too_long):  # not a plain token: a new id instead
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    ids = [r.headers["x-request-id"] for r in (made, given, refused, too_long)]
    assert len(set(ids)) == 4
    assert [r.request_id for r in _records(caplog, "tests.probe")] == ids  # type: ignore[attr-defined]
    access = _records(caplog, "agent_server.access")
    assert [r.request_id for r in access] == ids  # type: ignore[attr-defined]
    assert re.fullmatch(r"GET /probe 200 \d+\.\d ms", access[0].getMessage())
    assert REQUEST_ID.get() is None  # nothing leaks out of the request


async def test_an_error_answer_carries_its_request_id_and_is_logged(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A refusal before the routes (no key: 401) and a 404 still get an id and a line; the
    path is logged without its query string (it may hold user text)."""
    caplog.set_level(logging.INFO)
    async with serve_app(make_app(db, session_api_keys="k")) as client:
        refused = await client.get("/api/conversations?secret=hunter2")
        missing = await client.get("/nowhere", headers={"X-Session-API-Key": "k"})
    assert refused.status_code == 401 and "x-request-id" in refused.headers
    assert missing.status_code == 404 and "x-request-id" in missing.headers
    lines = [r.getMessage() for r in _records(caplog, "agent_server.access")]
    assert lines[0].startswith("GET /api/conversations 401 ")
    assert lines[1].startswith("GET /nowhere 404 ")
    server_side = [r.getMessage() for r in caplog.records if r.name != "httpx"]  # not the client's
    assert not [line for line in server_side if "hunter2" in line]


async def test_request_latency_is_in_metrics_by_route_template(db: Database) -> None:
    async with serve_app(make_app(db)) as client:
        for _ in range(3):
            missing = await client.get(f"/api/conversations/{'0' * 32}")
            assert missing.status_code == 404
        text = (await client.get("/metrics")).text
    series = (
        'agent_server_http_request_seconds_count{method="GET",'
        'route="/api/conversations/{conversation_id}",status="404"}'
    )
    count = next(line for line in text.splitlines() if line.startswith(series))
    assert float(count.split()[-1]) >= 3
    assert "0" * 32 not in text  # no series per conversation


def test_json_log_lines_carry_the_request_id_and_the_traceback() -> None:
    token = REQUEST_ID.set("rid-1")
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            record = logging.getLogger("x").makeRecord(
                "x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info()
            )
    finally:
        REQUEST_ID.reset(token)
    record.request_id = "rid-1"
    line = json.loads(JsonLines().format(record))
    assert line["message"] == "failed here"
    assert (line["level"], line["logger"], line["request_id"]) == ("ERROR", "x", "rid-1")
    assert "ValueError: boom" in line["exception"]
    assert line["time"].endswith("+00:00")


async def test_litellm_lines_go_through_the_root_handler_only() -> None:
    """litellm adds a handler of its own at import: each of its lines printed twice."""
    await AGENTS.wait()
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logger = logging.getLogger(name)
        assert logger.handlers == [] and logger.propagate, name
