"""The OpenAPI document as a client generator needs it (app/openapi.py), the session key as a
security scheme (app/security.py), and /docs without a CDN (app/system/docs.py).

Each test was checked once against a broken variant, named in its docstring.
"""

import json
import re
import typing
from collections.abc import Awaitable, Callable, Iterator
from html.parser import HTMLParser
from typing import Any

import httpx
import jsonschema_rs
import pytest
import schemathesis
from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from app import main
from app.config import Settings
from app.db.session import Database, DatabaseDep, ReadSessionDep, WriteSessionDep
from app.errors import RESPONSE_HEADERS
from app.main import create_app
from app.openapi import AgentServerAPI, check_operation_ids, operation_id
from app.system.docs import ASSETS_DIRECTORY
from app.system.endpoints import router as system_router
from tests.conftest import AGENT, create_conversation, make_app, serve_app

ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
KEY_SECURITY = [{"SessionApiKey": []}, {"BearerAuth": []}]


@pytest.fixture
def document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """`node`, or what its local `$ref` points at."""
    ref = node.get("$ref")
    if ref is None:
        return node
    assert ref.startswith("#/"), ref
    target: Any = document
    for part in ref[2:].split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    assert isinstance(target, dict), ref
    return target


def refs(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


# ---- a valid OpenAPI 3.1 document ---------------------------------------------------------


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    """Against the OpenAPI 3.1 schema (schemathesis ships it), and every `$ref` resolves.
    Checked once without app.openapi's `_without_item_schema`: FastAPI's SSE `itemSchema`
    (an OpenAPI 3.2 field) failed it."""
    assert document["openapi"].startswith("3.1.")
    schemathesis.openapi.from_dict(document).validate()
    for ref in refs(document):
        resolve(document, ref)
    for name, schema in document["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name


def test_the_document_passes_openapi_spec_validator(document: dict[str, Any]) -> None:
    """The reference validator, when installed (a dev dependency to add). Checked once as the
    test above (a PYTHONPATH install): it failed on the same `itemSchema`."""
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(document)


# ---- operation ids ------------------------------------------------------------------------


def test_operation_ids_are_short_snake_case_and_unique(document: dict[str, Any]) -> None:
    """Checked once with FastAPI's default ids: 31 of the 43, such as
    `create_conversation_api_conversations_post`, were longer than 40 characters."""
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    for name in ids:
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", name) and len(name) <= 40, name
    assert len(ids) == len(set(ids))
    # FastAPI names a multipart body's schema after the id: no `Body_..._api_file_upload_post`.
    assert not [name for name in document["components"]["schemas"] if "__" in name]


def test_a_duplicate_operation_id_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second `health` route, in an included router: create_app raises. Checked once with
    the check_operation_ids call removed from create_app: the app was made."""
    doubled = APIRouter()
    doubled.include_router(system_router)
    nested = APIRouter(prefix="/again")

    @nested.get("/health")
    async def health() -> None:
        """The same function name as GET /health."""

    doubled.include_router(nested)
    monkeypatch.setattr(main, "system_router", doubled)
    settings = Settings(_env_file=None, database_url="sqlite+aiosqlite://")  # type: ignore[call-arg]
    with pytest.raises(RuntimeError, match="operation id 'health' of GET /again/health"):
        create_app(settings)


def test_operation_ids_are_checked_through_included_routers() -> None:
    app = AgentServerAPI(generate_unique_id_function=operation_id)
    inner, outer = APIRouter(prefix="/inner"), APIRouter(prefix="/outer")

    async def ping() -> None:
        """Pong."""

    inner.add_api_route("/ping", ping)
    outer.include_router(inner)
    app.include_router(outer)
    check_operation_ids(app)  # one route: fine
    app.add_api_route("/ping", ping, methods=["POST"])
    with pytest.raises(RuntimeError, match="'ping' of POST /ping is also that of GET"):
        check_operation_ids(app)


# ---- the session key as a security scheme ---------------------------------------------------


def test_the_key_is_a_security_scheme_of_every_guarded_operation(
    document: dict[str, Any],
) -> None:
    """Checked once with require_api_key's old Header parameters: no security schemes, and
    two header parameters on each of 41 operations."""
    schemes = document["components"]["securitySchemes"]
    assert schemes["SessionApiKey"] | {"description": ""} == {
        "type": "apiKey",
        "in": "header",
        "name": "X-Session-API-Key",
        "description": "",
    }
    assert schemes["BearerAuth"] | {"description": ""} == {
        "type": "http",
        "scheme": "bearer",
        "description": "",
    }
    guarded = 0
    for method, path, operation in operations(document):
        needs_key = path.startswith("/api/") or path in ("/server_info", "/metrics")
        assert operation.get("security") == (KEY_SECURITY if needs_key else None), (method, path)
        headers = {
            p["name"].lower() for p in operation.get("parameters", []) if p["in"] == "header"
        }
        assert not headers & {"x-session-api-key", "authorization"}, (method, path)
        if needs_key:
            guarded += 1
            assert "WWW-Authenticate" in operation["responses"]["401"]["headers"], (method, path)
    assert guarded >= 40


@pytest.mark.parametrize(
    ("headers", "accepted"),
    [
        ({}, False),
        ({"X-Session-API-Key": "k"}, True),
        ({"X-Session-API-Key": "wrong"}, False),
        ({"Authorization": "Bearer k"}, True),
        ({"Authorization": "bearer   k  "}, True),
        ({"Authorization": "Basic k"}, False),
        ({"Authorization": "Bearer"}, False),
        ({"X-Session-API-Key": "", "Authorization": "Bearer k"}, True),
        ({"X-Session-API-Key": "wrong", "Authorization": "Bearer k"}, False),
    ],
)
async def test_the_gate_and_the_dependency_decide_and_refuse_alike(
    db: Database, headers: dict[str, str], accepted: bool
) -> None:
    """/api/... is refused by ApiKeyGate (and then require_api_key), /metrics (not a gated
    prefix) by require_api_key alone: the same decision, the same 401. Checked once with
    require_api_key reading X-Session-API-Key only: the three Bearer cases failed."""
    async with serve_app(make_app(db, session_api_keys=["k"])) as client:
        gate = await client.get("/api/conversations/count", headers=headers)
        dependency = await client.get("/metrics", headers=headers)
    assert (gate.status_code, dependency.status_code) == ((200, 200) if accepted else (401, 401))
    if not accepted:
        assert gate.json() == dependency.json()
        assert gate.json()["code"] == "unauthorized"
        assert gate.headers["www-authenticate"] == dependency.headers["www-authenticate"]


# ---- one error shape ----------------------------------------------------------------------


def test_every_error_is_documented_as_the_error_response(document: dict[str, Any]) -> None:
    """Checked once without app.openapi's error content: the stream's and /metrics' errors
    were documented as text/event-stream and text/plain, navigate's and load_plugin's 422 as
    FastAPI's HTTPValidationError."""
    assert "HTTPValidationError" not in json.dumps(document)
    assert "ValidationError" not in document["components"]["schemas"]
    for method, path, operation in operations(document):
        if operation.get("parameters") or operation.get("requestBody"):
            assert "422" in operation["responses"], (method, path)
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                assert response["content"] == ERROR_CONTENT, (method, path, status)


async def test_a_validation_error_has_the_documented_shape(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    """Checked once without app/main.py's RequestValidationError handler: FastAPI's
    `{"detail": [...]}` failed the ErrorResponse schema."""
    response = await client.get("/api/conversations/count", params={"status": "nope"})
    assert response.status_code == 422
    schema = {**document["components"]["schemas"]["ErrorResponse"], "additionalProperties": False}
    jsonschema_rs.validate(schema, response.json())
    details = response.json()["details"]
    assert [set(error) >= {"type", "loc", "msg"} for error in details] == [True]


# ---- response headers and 503 -----------------------------------------------------------


def _documented_headers(
    document: dict[str, Any], method: str, path: str, status: int
) -> dict[str, dict[str, Any]]:
    response = document["paths"][path][method.lower()]["responses"][str(status)]
    return {name: resolve(document, h) for name, h in response.get("headers", {}).items()}


def assert_headers_as_documented(
    document: dict[str, Any], method: str, path: str, response: httpx.Response
) -> None:
    """Every required header the document names for this status is sent, and every header of
    RESPONSE_HEADERS that is sent is documented."""
    documented = _documented_headers(document, method, path, response.status_code)
    for name, header in documented.items():
        if header["required"]:
            assert name in response.headers, (method, path, response.status_code, name)
    for name in RESPONSE_HEADERS:
        if name in response.headers:
            assert name in documented, (method, path, response.status_code, name)


async def test_sent_headers_are_the_documented_ones(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    """ETag, X-Run-Id, X-Event-Seq and X-Request-ID as answered, on each status. Checked once
    without the `response_headers(...)` of update_conversation: its 200 sent an undocumented
    ETag."""
    conversations, conversation = "/api/conversations", "/api/conversations/{conversation_id}"
    skills, skill = "/api/skills", "/api/skills/{name}"
    message = {"content": [{"type": "text", "text": "hi"}]}
    cid = (await create_conversation(client))["id"]
    url = f"/api/conversations/{cid}"
    stale = {"If-Match": '"99"'}
    content = "---\nname: doc\ndescription: d\n---\nDo.\n"
    # (method, documented path, URL, request arguments)
    requests: list[tuple[str, str, str, dict[str, Any]]] = [
        ("POST", conversations, conversations, {"json": {"id": cid, "agent": AGENT}}),
        ("GET", conversation, url, {}),
        ("GET", conversation, f"{conversations}/{'0' * 32}", {}),
        ("PATCH", conversation, url, {"json": {"title": "t"}}),
        ("PATCH", conversation, url, {"json": {}, "headers": stale}),
        ("POST", f"{conversation}/fork", f"{url}/fork", {"json": {}}),
        ("POST", f"{conversation}/events", f"{url}/events", {"json": message}),
        ("POST", f"{conversation}/events", f"{url}/events", {"json": {**message, "run": True}}),
        ("POST", skills, skills, {"json": {"content": content}}),
        ("GET", skill, f"{skills}/doc", {}),
        ("PATCH", skill, f"{skills}/doc", {"json": {"enabled": False}}),
        ("PATCH", skill, f"{skills}/doc", {"json": {}, "headers": stale}),
        ("POST", f"{skill}/rollback", f"{skills}/doc/rollback", {"json": {"version": 1}}),
        ("GET", f"{conversations}/count", f"{conversations}/count?status=x", {}),
        ("GET", "/health", "/health", {}),
        (
            "POST",
            conversations,
            conversations,
            {"json": {"agent": AGENT, "initial_message": {**message, "run": True}}},
        ),
    ]
    answered = set()
    for method, path, target, arguments in requests:
        response = await client.request(method, target, **arguments)
        assert response.status_code < 500, response.text
        answered.add((method, path, response.status_code, "x-run-id" in response.headers))
        assert_headers_as_documented(document, method, path, response)
    assert {
        ("POST", conversations, 200, False),
        ("POST", conversations, 201, True),
        ("POST", f"{conversation}/events", 201, True),
        ("POST", f"{conversation}/fork", 201, False),
        ("PATCH", conversation, 412, False),
        ("PATCH", skill, 412, False),
        ("POST", f"{skill}/rollback", 200, False),
    } <= answered, answered


_DATABASE = {
    typing.get_args(dep)[1].dependency for dep in (ReadSessionDep, WriteSessionDep, DatabaseDep)
}


def _calls(dependant: Dependant) -> Iterator[Any]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)


def test_every_route_that_uses_the_database_documents_503_with_retry_after(
    app: FastAPI, document: dict[str, Any]
) -> None:
    """Routes whose dependencies reach the database. Checked once without the events router's
    `responses=database_responses()`: its four routes failed."""
    using = []
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        if not any(call in _DATABASE for call in _calls(route.dependant)):
            continue
        for method in route.methods:
            using.append(f"{method} {route.path}")
            unavailable = document["paths"][route.path_format][method.lower()]["responses"]["503"]
            assert "Retry-After" in unavailable["headers"], using[-1]
    assert "GET /api/conversations/{conversation_id}/events/stream" in using
    assert len(using) >= 30


# ---- PATCH and PUT bodies refuse unknown fields alike -------------------------------------


async def _a_conversation(client: httpx.AsyncClient) -> str:
    return f"/api/conversations/{(await create_conversation(client))['id']}"


async def _a_skill(client: httpx.AsyncClient) -> str:
    content = "---\nname: patched\ndescription: d\n---\nDo.\n"
    response = await client.post("/api/skills", json={"content": content})
    assert response.status_code == 201, response.text
    return "/api/skills/patched"


# How to make a resource for each PATCH or PUT path: a new one must be added here.
RESOURCES: dict[str, Callable[[httpx.AsyncClient], Awaitable[str]]] = {
    "/api/conversations/{conversation_id}": _a_conversation,
    "/api/skills/{name}": _a_skill,
}


async def test_unknown_fields_in_patch_and_put_bodies_are_one_422(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    """Every PATCH and PUT of the document. (The OpenHands SDK's one PATCH, set_title, sends
    `title` alone.) Checked once without ConversationUpdate's extra="forbid": the
    conversation answered 200 and ignored the field."""
    writes = [(m, p, op) for m, p, op in operations(document) if m in ("PATCH", "PUT")]
    assert len(writes) >= 2
    for method, path, operation in writes:
        assert path in RESOURCES, f"{method} {path}: add how to make its resource to RESOURCES"
        url = await RESOURCES[path](client)
        response = await client.request(method, url, json={"no_such": 1})
        assert response.status_code == 422, (path, response.text)
        assert response.json() == {
            "status": 422,
            "code": "validation_error",
            "message": "request validation failed",
            "details": [
                {
                    "type": "extra_forbidden",
                    "loc": ["body", "no_such"],
                    "msg": "Extra inputs are not permitted",
                    "input": 1,
                }
            ],
        }, path
        body_schema = operation["requestBody"]["content"]["application/json"]["schema"]
        assert resolve(document, body_schema).get("additionalProperties") is False, path


# ---- /docs and /redoc without a CDN --------------------------------------------------------


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [value for name, value in attrs if name in ("src", "href") and value]


ASSET_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


@pytest.mark.skipif(
    ASSETS_DIRECTORY is None, reason="fastapi-offline is not installed: /docs uses the CDN"
)
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_pages_load_only_from_this_server(
    client: httpx.AsyncClient, page: str
) -> None:
    """Checked once with FastAPI's own /docs (docs_url left on): its page named
    cdn.jsdelivr.net and fastapi.tiangolo.com."""
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert not re.search(r"https?:|//[a-z]", html, re.IGNORECASE), html
    parser = _Links()
    parser.feed(html)
    assert len(parser.links) >= 2, html
    for link in parser.links:
        assert link.startswith("/docs-assets/"), link
        asset = await client.get(link)
        assert asset.status_code == 200, link
        kind = ASSET_TYPES[link[link.rindex(".") :]]
        assert kind in asset.headers["content-type"], (link, asset.headers["content-type"])
        assert len(asset.content) > (100_000 if kind != "image/png" else 100), link
    spec_url = re.search(r"""(?:url: |spec-url=)['"]([^'"]+)""", html)
    assert spec_url is not None and spec_url.group(1) == "/openapi.json"
    assert (await client.get(spec_url.group(1))).status_code == 200
