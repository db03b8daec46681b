"""Bounds on what a client sends, tested as an attacker would send it (security review).

Raw bodies, declared and chunked: a body over AGENT_SERVER_MAX_BODY_BYTES is 413 before it is
read whole (a declared Content-Length over the limit is refused without reading any of it; a
chunked body stops being read as soon as it passes the limit); a message beyond its bounds
(parts, text, image URLs, extra fields) or a body nested too deep or holding too many values
is 422; nothing is a 500 or a reset connection, and none of it stalls the event loop.

Found before these bounds: a message of 1,000,000 parts was accepted after 30-47 s (7.6 s on
this machine) while /health waited as long; extras nested 300 levels were a 500 ("Maximum
serialization depth exceeded").

Checked once against broken variants (a scratch copy of the repository), on SQLite:
- without the BodyLimits middleware, 13 tests failed: the 413 tests (a message one byte over
  the limit was 201, the 12 MB body 422, a 5,000-level body 400) and the stall test (/health
  waited 1.0 and 1.6 s in two runs);
- without its byte scan (JSONShape.feed answering None), the stall test failed (/health
  waited 1.2 and 1.5 s behind FastAPI's parsing of the 4 MiB bodies), so did the 5,000-level
  body (400) and the property test;
- without the depth and value bounds of reject_unstorable, the value budget test (201 for one
  value over) and the walk-alone tests failed;
- without the schema's max_length bounds, their four 422 cases and the OpenAPI test failed;
  with extra fields allowed on content parts, the three extra-field cases and the OpenAPI
  test failed.
"""

import asyncio
import itertools
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.config import Settings
from app.db.session import Database
from app.events.schemas import (
    MAX_IMAGE_URLS,
    MAX_PARTS,
    MAX_TEXT_CHARS,
    MAX_URL_CHARS,
    UserMessageCreate,
)
from app.limits import JSONShape
from app.validators import (
    MAX_JSON_DEPTH,
    MAX_JSON_VALUES,
    TOO_DEEP,
    TOO_MANY_VALUES,
    reject_unstorable,
)
from tests.conftest import create_conversation, make_app, serve_app
from tests.crash.conftest import Server, ServerFactory, servers  # noqa: F401  (fixture)

MAX_BODY = Settings.model_fields["max_body_bytes"].default
JSON = {"content-type": "application/json"}
CHUNK = 64 * 1024
SMALL_LIMIT = 64 * 1024


def message(*texts: str, **top: Any) -> bytes:
    parts = [{"type": "text", "text": text} for text in texts]
    return json.dumps({"content": parts, **top}).encode()


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def _repeat_within(prefix: str, item: str, suffix: str, size: int) -> bytes:
    """prefix + item,item,...,item + suffix: as many items as fit in `size` bytes."""
    count = (size - len(prefix) - len(suffix) + 1) // (len(item) + 1)
    return (prefix + ",".join([item] * count) + suffix).encode()


def max_size_message(size: int) -> bytes:
    """A message of exactly `size` bytes: text parts of MAX_TEXT_CHARS, the last one shorter."""
    count = size // MAX_TEXT_CHARS + 1
    texts, room = [], size - len(message(*[""] * count))
    for _ in range(count):
        texts.append("m" * min(room, MAX_TEXT_CHARS))
        room -= len(texts[-1])
    body = message(*texts)
    assert len(body) == size, len(body)
    return body


def _many_parts(size: int) -> bytes:
    return _repeat_within('{"content":[', '{"text":""}', "]}", size)


def _many_values(item: str) -> Callable[[int], bytes]:
    return lambda size: _repeat_within('{"content":[{"text":"x"}],"x":[', item, "]}", size)


# Name -> (the body for a body limit, the status it must get). Each fills the limit at most,
# unless its name says it is over.
HOSTILE: dict[str, tuple[Callable[[int], bytes], int]] = {
    "message 1 byte over the limit": (lambda size: max_size_message(size + 1), 413),
    "1,000,000 parts (12 MB)": (lambda _: _many_parts(12_000_000), 413),
    "parts filling the limit": (_many_parts, 422),
    "arrays filling the limit": (_many_values("[]"), 422),
    "numbers filling the limit": (_many_values("0"), 422),
    "extras nested 300 levels": (
        lambda _: ('{"content":[{"text":"x","e":' + nested(300) + "}]}").encode(),
        422,
    ),
    "body nested 300 levels": (lambda _: message("x", x=json.loads(nested(300))), 422),
    "body nested 5,000 levels": (
        lambda _: ('{"content":[{"text":"x"}],"x":' + nested(5000) + "}").encode(),
        422,
    ),
}


async def chunks(total: int, sent: list[int] | None = None) -> AsyncIterator[bytes]:
    """`total` bytes of a JSON message, CHUNK bytes at a time (httpx sends them chunked);
    `sent` counts what the server actually pulled."""
    body = max_size_message(total)
    for start in range(0, total, CHUNK):
        if sent is not None:
            sent.append(min(CHUNK, total - start))
        yield body[start : start + CHUNK]


def assert_413(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 413, response.text[:300]
    body = response.json()
    assert body["code"] == "payload_too_large"
    assert body["status"] == 413 and body["details"] is None
    assert str(limit) in body["message"], body


@pytest.fixture
async def small(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app whose body limit is SMALL_LIMIT bytes."""
    async with serve_app(make_app(db, max_body_bytes=SMALL_LIMIT)) as client:
        yield client


async def events_url(client: httpx.AsyncClient) -> str:
    conversation = await create_conversation(client)
    return f"/api/conversations/{conversation['id']}/events"


# ---- the body size limit ------------------------------------------------------------------


async def test_declared_length_over_the_limit_is_413_before_any_read(
    small: httpx.AsyncClient,
) -> None:
    url = await events_url(small)
    sent: list[int] = []
    headers = {**JSON, "content-length": str(SMALL_LIMIT + 1)}
    response = await small.post(url, content=chunks(SMALL_LIMIT + 1, sent), headers=headers)
    assert_413(response, SMALL_LIMIT)
    assert sent == []  # not one chunk was asked for
    assert (await small.get(f"{url}/count")).json() == 0


async def test_chunked_body_over_the_limit_stops_being_read_at_the_limit(
    small: httpx.AsyncClient,
) -> None:
    url = await events_url(small)
    sent: list[int] = []
    response = await small.post(url, content=chunks(20 * SMALL_LIMIT, sent), headers=JSON)
    assert_413(response, SMALL_LIMIT)
    assert sum(sent) <= SMALL_LIMIT + CHUNK  # refused at the chunk that passed the limit
    assert (await small.get(f"{url}/count")).json() == 0


async def test_body_longer_than_its_declared_length_is_counted(small: httpx.AsyncClient) -> None:
    """A Content-Length under the limit does not let more bytes through."""
    url = await events_url(small)
    headers = {**JSON, "content-length": "100"}
    response = await small.post(url, content=chunks(2 * SMALL_LIMIT), headers=headers)
    assert_413(response, SMALL_LIMIT)


async def test_a_body_at_the_limit_is_accepted_and_stored_whole(
    small: httpx.AsyncClient,
) -> None:
    url = await events_url(small)
    body = max_size_message(SMALL_LIMIT)
    response = await small.post(url, content=body, headers=JSON)
    assert response.status_code == 201, response.text[:300]
    stored = (await small.get(f"{url}/{response.json()['id']}")).json()
    assert stored["llm_message"]["content"] == json.loads(body)["content"]
    chunked = await small.post(url, content=chunks(SMALL_LIMIT), headers=JSON)
    assert chunked.status_code == 201, chunked.text[:300]


@pytest.mark.parametrize(
    ("method", "path", "reads_body"),
    [
        ("POST", "/api/conversations", True),
        ("PATCH", "/api/conversations/{cid}", True),
        ("POST", "/api/skills", True),
        ("POST", "/api/conversations/{cid}/pause", False),
        ("GET", "/health", False),
        ("GET", "/api/no-such-route", False),
    ],
)
async def test_every_http_route_has_the_limit(
    small: httpx.AsyncClient, method: str, path: str, reads_body: bool
) -> None:
    """A declared length over the limit is 413 on any route; a chunked body is refused where
    the route reads it (a route that never reads it leaves it unread)."""
    conversation = await create_conversation(small)
    url = path.format(cid=conversation["id"])
    body = b'{"title": "' + b"t" * SMALL_LIMIT + b'"}'
    assert_413(await small.request(method, url, content=body, headers=JSON), SMALL_LIMIT)
    sent: list[int] = []
    chunked = await small.request(method, url, content=chunks(20 * SMALL_LIMIT, sent), headers=JSON)
    if reads_body:
        assert_413(chunked, SMALL_LIMIT)
    else:
        assert chunked.status_code < 500 and sum(sent) <= CHUNK, chunked.text[:300]


# ---- hostile bodies at the default limit -------------------------------------------------


@pytest.mark.parametrize("name", list(HOSTILE))
async def test_hostile_body_is_a_quick_4xx(
    client: httpx.AsyncClient, app: FastAPI, name: str
) -> None:
    """Each HOSTILE body at the default 4 MiB limit: the 4xx it must get, in well under the
    seconds a 1,000,000-part message used to take (a generous bound)."""
    limit = app.state.settings.max_body_bytes
    build, status = HOSTILE[name]
    body = build(limit)
    url = await events_url(client)
    started = time.perf_counter()
    response = await client.post(url, content=body, headers=JSON)
    elapsed = time.perf_counter() - started
    assert response.status_code == status, response.text[:300]
    assert elapsed < 2, elapsed
    assert len(response.content) < 2000  # the hostile input is not echoed back
    if status == 413:
        assert_413(response, limit)
    if status == 422:
        assert response.json()["code"] == "validation_error"
    assert (await client.get(f"{url}/count")).json() == 0


# ---- the message's bounds -----------------------------------------------------------------


async def _post(client: httpx.AsyncClient, url: str, content: list[dict[str, Any]]) -> Any:
    return await client.post(url, json={"content": content})


@pytest.mark.parametrize(
    ("content", "loc"),
    [
        ([{"text": "x"}] * (MAX_PARTS + 1), ["body", "content"]),
        ([{"text": "x" * (MAX_TEXT_CHARS + 1)}], ["body", "content", 0, "text", "text"]),
        (
            [{"type": "image", "image_urls": ["https://example.com/a.png"] * (MAX_IMAGE_URLS + 1)}],
            ["body", "content", 0, "image", "image_urls"],
        ),
        (
            [{"type": "image", "image_urls": ["data:," + "u" * MAX_URL_CHARS]}],
            ["body", "content", 0, "image", "image_urls", 0],
        ),
        ([{"text": "x", "extra": {"nested": True}}], ["body", "content", 0, "text", "extra"]),
        ([{"text": "x", "extra": 1}], ["body", "content", 0, "text", "extra"]),
        (
            [{"type": "image", "image_urls": [], "note": "n"}],
            ["body", "content", 0, "image", "note"],
        ),
    ],
    ids=["parts", "text", "image_urls", "url", "dict-extra", "extra", "image-extra"],
)
async def test_message_beyond_its_bounds_is_422(
    client: httpx.AsyncClient, content: list[dict[str, Any]], loc: list[object]
) -> None:
    url = await events_url(client)
    response = await _post(client, url, content)
    assert response.status_code == 422, response.text[:300]
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["details"][0]["loc"][: len(loc)] == loc, body
    assert (await client.get(f"{url}/count")).json() == 0
    start = await client.post(
        "/api/conversations",
        json={"agent": {"llm": {"model": "m"}}, "initial_message": {"content": content}},
    )
    assert start.status_code == 422, start.text[:300]


async def test_message_at_its_bounds_is_kept_as_given(client: httpx.AsyncClient) -> None:
    url = await events_url(client)
    content: list[dict[str, Any]] = [
        {"type": "text", "text": "t", "cache_prompt": True},
        {"type": "text", "text": "x" * MAX_TEXT_CHARS},
        {"type": "image", "image_urls": ["https://example.com/a.png"] * MAX_IMAGE_URLS},
    ]
    content += [{"type": "text", "text": "p"}] * (MAX_PARTS - len(content))
    response = await _post(client, url, content)
    assert response.status_code == 201, response.text[:300]
    stored = (await client.get(f"{url}/{response.json()['id']}")).json()
    assert stored["llm_message"]["content"] == content


async def test_depth_bound_on_any_body(client: httpx.AsyncClient) -> None:
    """The body is level 1; its `x` holds arrays nested up to MAX_JSON_DEPTH in all."""
    url = await events_url(client)
    deepest = message("x", x=json.loads(nested(MAX_JSON_DEPTH - 1)))
    assert (await client.post(url, content=deepest, headers=JSON)).status_code == 201
    deeper = message("x", x=json.loads(nested(MAX_JSON_DEPTH)))
    response = await client.post(url, content=deeper, headers=JSON)
    assert response.status_code == 422, response.text[:300]
    assert response.json()["message"] == "request validation failed"  # as any invalid body
    assert f"deeper than {MAX_JSON_DEPTH}" in response.json()["details"][0]["msg"]
    agent = {"llm": {"model": "m"}, "custom": json.loads(nested(MAX_JSON_DEPTH))}
    response = await client.post("/api/conversations", json={"agent": agent})
    assert response.status_code == 422, response.text[:300]


async def test_value_budget_on_any_body(client: httpx.AsyncClient) -> None:
    """A message whose ignored field `x` brings the body's values and keys to the budget is
    accepted; one more is 422 (so is the same excess in a skill)."""
    url = await events_url(client)
    room = MAX_JSON_VALUES - _values(json.loads(message("x", x=[])))
    at_budget = message("x", x=[0] * room)
    assert (await client.post(url, content=at_budget, headers=JSON)).status_code == 201
    over = message("x", x=[0] * (room + 1))
    response = await client.post(url, content=over, headers=JSON)
    assert response.status_code == 422, response.text[:300]
    assert response.json()["message"] == "request validation failed"
    assert f"more than {MAX_JSON_VALUES}" in response.json()["details"][0]["msg"]
    skill = {"content": "---\nname: s\ndescription: d\n---\n", "x": list(range(MAX_JSON_VALUES))}
    assert (await client.post("/api/skills", json=skill)).status_code == 422


def _frame(extra: object) -> str:
    return json.dumps({"content": [{"text": "x"}], "x": extra})


_ROOM = MAX_JSON_VALUES - 7  # {"content": [{"text": "x"}], "x": []} holds 7 values and keys


@pytest.mark.parametrize(
    ("largest", "too_large", "problem"),
    [
        (json.loads(nested(MAX_JSON_DEPTH - 1)), json.loads(nested(MAX_JSON_DEPTH)), TOO_DEEP),
        (
            {"a": [{"b": json.loads(nested(MAX_JSON_DEPTH - 4))}]},
            {"a": [{"b": json.loads(nested(MAX_JSON_DEPTH - 3))}]},
            TOO_DEEP,
        ),
        (list(range(_ROOM)), list(range(_ROOM + 1)), TOO_MANY_VALUES),
        (
            {str(i): i for i in range(_ROOM // 2)},
            {str(i): i for i in range(_ROOM // 2 + 1)},
            TOO_MANY_VALUES,
        ),
    ],
    ids=["arrays", "mixed", "array", "object"],
)
def test_the_walk_alone_refuses_depth_and_values(
    largest: object, too_large: object, problem: str
) -> None:
    """Without the middleware's scan in front (as a WebSocket frame is validated),
    reject_unstorable accepts a body at its bounds and refuses one level or value more."""
    UserMessageCreate.model_validate_json(_frame(largest))
    with pytest.raises(ValidationError) as caught:
        UserMessageCreate.model_validate_json(_frame(too_large))
    assert caught.value.errors()[0]["msg"] == f"Value error, {problem}"


def _depth(value: object) -> int:
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _values(value: object) -> int:
    """What reject_unstorable counts: values and keys inside containers."""
    if isinstance(value, dict):
        return sum(2 + _values(v) for v in value.values())
    if isinstance(value, list):
        return sum(1 + _values(v) for v in value)
    return 0


_TRICKY = st.text(alphabet=st.sampled_from('a"\\\\[]{},: \n\u00e9/'), max_size=6)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(-1e6, 1e6) | _TRICKY,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TRICKY, inner, max_size=4),
    max_leaves=40,
)


@settings(max_examples=400, derandomize=True, database=None, deadline=None)
@given(
    value=_JSON,
    wrap=st.integers(0, MAX_JSON_DEPTH + 2),
    ascii_only=st.booleans(),
    cuts=st.lists(st.integers(0, 10_000), max_size=6),
)
def test_the_byte_scan_agrees_with_the_walk(
    value: object, wrap: int, ascii_only: bool, cuts: list[int]
) -> None:
    """The middleware's scan of raw bytes, cut into chunks anywhere (inside strings, between
    a backslash and what it escapes): refuses depth exactly when reject_unstorable does, and
    counts at most 2 x values + 1 tokens, so it never refuses a body the walk accepts."""
    for _ in range(wrap):
        value = [value]
    raw = json.dumps(value, ensure_ascii=ascii_only).encode()
    bounds = sorted({0, len(raw), *(cut % (len(raw) + 1) for cut in cuts)})
    shape = JSONShape()
    problems = [shape.feed(raw[a:b]) for a, b in itertools.pairwise(bounds)]
    problem = next((p for p in problems if p is not None), None)
    too_deep = _depth(value) > MAX_JSON_DEPTH
    assert (problem == TOO_DEEP) == too_deep, (problem, _depth(value))
    if not too_deep:
        assert shape.tokens <= 2 * _values(value) + 1
        assert shape.depth == 0 and not shape.in_string
        reject_unstorable(value)  # the walk accepts it too


def test_bounds_are_in_the_openapi_document(app: FastAPI) -> None:
    schemas = app.openapi()["components"]["schemas"]
    content = schemas["UserMessageCreate"]["properties"]["content"]
    assert content["maxItems"] == MAX_PARTS
    text = schemas["UserTextContent"]
    assert text["properties"]["text"]["maxLength"] == MAX_TEXT_CHARS
    assert text["additionalProperties"] is False  # only the OpenHands SDK's fields
    urls = schemas["UserImageContent"]["properties"]["image_urls"]
    assert urls["maxItems"] == MAX_IMAGE_URLS
    assert urls["items"]["maxLength"] == MAX_URL_CHARS
    assert str(MAX_JSON_DEPTH) in schemas["UserMessageCreate"]["description"]


# ---- the event loop keeps answering -------------------------------------------------------

HEALTH_BOUND_SECONDS = 0.25


def poll_health(base: str, stop: threading.Event, every: float = 0.01) -> list[float]:
    """GET /health until `stop`, from a thread of its own: the seconds of each answer."""
    latencies: list[float] = []
    with httpx.Client(base_url=base, timeout=30) as client:
        while not stop.is_set():
            started = time.perf_counter()
            assert client.get("/health").status_code == 200
            latencies.append(time.perf_counter() - started)
            stop.wait(every)
    return latencies


def _outcome(response: httpx.Response | BaseException) -> object:
    if isinstance(response, BaseException):
        return repr(response)
    return response.status_code


@pytest.mark.slow
async def test_hostile_bodies_do_not_stall_the_server(servers: ServerFactory) -> None:  # noqa: F811
    """A real server on the database under test: the hostile bodies, a message of the
    largest accepted size and an over-limit chunked body are posted all at once, twice over,
    while another thread polls /health. Every /health answers within HEALTH_BOUND_SECONDS,
    every hostile post gets its 4xx (never a 500 or a reset), the large message is stored."""
    server: Server = await servers(worker=False)
    bodies = {name: (build(MAX_BODY), status) for name, (build, status) in HOSTILE.items()}
    large = max_size_message(MAX_BODY)
    async with httpx.AsyncClient(base_url=server.base, timeout=60) as client:
        url = await events_url(client)
        stop = threading.Event()
        health = asyncio.create_task(asyncio.to_thread(poll_health, server.base, stop))
        await asyncio.sleep(0.2)

        async def post(body: bytes | None) -> httpx.Response:
            # One connection per post: a refused body must not reset another post's socket.
            async with httpx.AsyncClient(base_url=server.base, timeout=60) as own:
                if body is None:
                    return await own.post(url, content=chunks(2 * MAX_BODY), headers=JSON)
                return await own.post(url, content=body, headers=JSON)

        expected = [*(status for _, status in bodies.values()), 413, 201]
        sent: list[bytes | None] = [*(body for body, _ in bodies.values()), None, large]
        outcomes: list[object] = []
        for _ in range(2):
            answers = await asyncio.gather(*map(post, sent), return_exceptions=True)
            outcomes.append([_outcome(answer) for answer in answers])
        await asyncio.sleep(0.2)
        stop.set()
        latencies = await health
        count = (await client.get(f"{url}/count")).json()
    assert len(latencies) > 10
    assert max(latencies) < HEALTH_BOUND_SECONDS, sorted(latencies)[-5:]
    names = [*bodies, "chunked, twice the limit", "message of the limit"]
    assert outcomes == [expected, expected], [dict(zip(names, o, strict=True)) for o in outcomes]
    assert count == 2  # the two large messages, nothing else
