"""Every POST that creates or changes something takes an Idempotency-Key: a retry is the
stored response, and the OpenAPI document says so on exactly those routes.

Checked once against a broken variant: with IDEMPOTENT left off the pause route,
test_every_opted_in_route_replays failed on it (its retry was not marked replayed)."""

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from app.idempotency.route import HEADER, REPLAYED, idempotency_key
from tests.conftest import AGENT, create_conversation
from tests.skills.conftest import create_skill, skill_md

# route path -> how to make its request: (path, json body) from a fresh conversation id
Make = Callable[[httpx.AsyncClient], Awaitable[tuple[str, Any]]]


async def _conversation(client: httpx.AsyncClient) -> str:
    return str((await create_conversation(client))["id"])


async def _running(client: httpx.AsyncClient) -> str:
    """A conversation with a queued run (no worker runs it here)."""
    cid = await _conversation(client)
    assert (await client.post(f"/api/conversations/{cid}/run")).status_code == 202
    return cid


async def _with_skill(client: httpx.AsyncClient) -> str:
    name = f"s{uuid.uuid4().hex[:8]}"
    await create_skill(client, name)
    changed = await client.patch(f"/api/skills/{name}", json={"enabled": False})
    assert changed.status_code == 200, changed.text
    return name


REQUESTS: dict[str, Make] = {
    "/api/conversations": lambda c: _const("/api/conversations", {"agent": AGENT}),
    "/api/conversations/{conversation_id}/fork": lambda c: _in(c, _conversation, "fork", {}),
    "/api/conversations/{conversation_id}/secrets": lambda c: _in(
        c, _conversation, "secrets", {"secrets": {"TOKEN": "tok-idem-1"}}
    ),
    "/api/conversations/{conversation_id}/confirmation_policy": lambda c: _in(
        c, _conversation, "confirmation_policy", {"policy": {"kind": "AlwaysConfirm"}}
    ),
    "/api/conversations/{conversation_id}/security_analyzer": lambda c: _in(
        c, _conversation, "security_analyzer", {"security_analyzer": None}
    ),
    "/api/conversations/{conversation_id}/run": lambda c: _in(c, _conversation, "run", None),
    "/api/conversations/{conversation_id}/events/respond_to_confirmation": lambda c: _in(
        c, _conversation, "events/respond_to_confirmation", {"accept": True}
    ),
    "/api/conversations/{conversation_id}/pause": lambda c: _in(c, _running, "pause", None),
    "/api/conversations/{conversation_id}/interrupt": lambda c: _in(c, _running, "interrupt", None),
    "/api/conversations/{conversation_id}/events": lambda c: _in(
        c, _conversation, "events", {"content": [{"type": "text", "text": "hi"}]}
    ),
    "/api/skills": lambda c: _const("/api/skills", {"content": skill_md("idem")}),
    "/api/skills/{name}/rollback": lambda c: _skill(c),
}


async def _const(path: str, body: Any) -> tuple[str, Any]:
    return path, body


async def _in(
    client: httpx.AsyncClient,
    make: Callable[[httpx.AsyncClient], Awaitable[str]],
    tail: str,
    body: Any,
) -> tuple[str, Any]:
    return f"/api/conversations/{await make(client)}/{tail}", body


async def _skill(client: httpx.AsyncClient) -> tuple[str, Any]:
    return f"/api/skills/{await _with_skill(client)}/rollback", {"version": 1}


def _opted_in(app: FastAPI) -> list[str]:
    return sorted(
        route.path
        for route in iter_route_contexts(app.routes)
        if isinstance(route.original_route, APIRoute)
        and any(dep.call is idempotency_key for dep in route.original_route.dependant.dependencies)
    )


def test_the_routes_that_take_a_key(app: FastAPI) -> None:
    assert _opted_in(app) == sorted(REQUESTS)
    spec = app.openapi()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            names = {p["name"] for p in operation.get("parameters", [])}
            assert (HEADER in names) == (method == "post" and path in REQUESTS), (method, path)
            if HEADER in names:
                assert "409" in operation["responses"] and "422" in operation["responses"]


@pytest.mark.parametrize("route", sorted(REQUESTS))
async def test_every_opted_in_route_replays(client: httpx.AsyncClient, route: str) -> None:
    path, body = await REQUESTS[route](client)
    key = {HEADER: str(uuid.uuid4())}
    first = await client.post(path, json=body, headers=key)
    assert 200 <= first.status_code < 300, first.text
    again = await client.post(path, json=body, headers=key)
    assert again.status_code == first.status_code, again.text
    assert again.headers.get(REPLAYED) == "true", (route, again.headers)
    assert again.content == first.content
