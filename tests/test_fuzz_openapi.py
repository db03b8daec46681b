"""Property-based fuzzing of the real server against its own OpenAPI document (schemathesis).

One real `agent-server serve` process runs on a scratch database (SQLite or Postgres, as
TEST_DATABASE_URL says), seeded over HTTP with a few conversations and events. Schemathesis
runs every operation of the OpenAPI document through its examples, coverage (deterministic
boundary and invalid values) and fuzzing phases, with positive and negative data, one pytest
item per operation. Every response must pass:

- not_a_server_error: no 5xx, whatever the input;
- response_schema_conformance: the body matches the schema declared for its status;
- content_type_conformance and response_headers_conformance: declared media type and headers.

Deliberate 4xx answers to invalid input are not judged (no status_code_conformance,
positive_data_acceptance or negative_data_rejection), but a 4xx the operation declares must
still carry a body that matches ErrorResponse.

The schema is built from the code (create_app().openapi()) at collection time, because
schemathesis' fixture-based loader (`schemathesis.pytest.from_fixture`, 4.32) does not work on
pytest 9.2; the server fixture asserts that the running server serves exactly that document at
/openapi.json, and every request goes to that server. Its run worker is off, so no run ever
calls an LLM; the run endpoints are fuzzed all the same.

Seeded rows (schema hooks, about half of the fuzzed cases each): path parameters and id lists
name seeded rows (conversations and skills; DELETE gets its own sacrificial ones), `page_id`
gets real cursors, If-Match gets well-formed ETags (`*`, stale, lists, beyond int32) and
appends get a storable message with arbitrary text, so that later searches and counts run
over odd stored text. After
each conversation or event operation, the `_reaches_seeded_rows` fixture asserts that it
answered 2xx for a seeded id at least once, so the hooks cannot silently stop applying. A
failing request's report carries the server log written while it ran (a 500's traceback).

Deterministic: a fixed seed, derandomized Hypothesis, no example database, no deadline, at most
MAX_EXAMPLES fuzzed cases per operation. Hypothesis' cache of the constants it finds in local
modules goes to the temp directory, not into the repository.

Checked once against a deliberately broken variant (a scratch copy of the repository):
GET /api/conversations/count raised RuntimeError for `status=paused`, and
GET /api/conversations/{conversation_id}/events/{event_id} answered `seq` as a JSON string. The
test failed on both items: ST101 Server error with `curl ... /count?status=paused` and the
server's traceback ending in the RuntimeError (found by the coverage phase), and ST108 Response
violates schema for the event (reachable only through a seeded event id). On the unbroken copy
all items passed.
"""

import os
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)

from app.config import Settings
from app.main import create_app
from tests.conftest import BASE_URL
from tests.dbutil import create_database, drop_database
from tests.procs import free_port, start_server, stop, wait_ready

pytestmark = pytest.mark.slow  # a server process

# Hypothesis caches the constants it finds in local modules under ./.hypothesis by default.
set_hypothesis_home_dir(
    os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY")
    or Path(tempfile.gettempdir()) / "agent-server-hypothesis"
)

# Operations whose 5xx is their documented answer: 501 for behaviour this server does not
# have (README), 502 when the LLM provider fails (the fuzzing server has no LLM at all).
DOCUMENTED_5XX = {
    "POST /api/conversations/{conversation_id}/navigate": 501,
    "POST /api/conversations/{conversation_id}/load_plugin": 501,
    "POST /api/conversations/{conversation_id}/ask_agent": 502,
    "POST /api/conversations/{conversation_id}/condense": 502,
}


@schemathesis.check
def no_undocumented_server_error(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """not_a_server_error, except an operation's documented 5xx (DOCUMENTED_5XX), whose body
    response_schema_conformance still checks against ErrorResponse."""
    if DOCUMENTED_5XX.get(case.operation.label) == response.status_code:
        return None
    return not_a_server_error(ctx, response, case)


CHECKS = [
    no_undocumented_server_error,
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
]

MAX_EXAMPLES = 50  # fuzzed cases per operation; the examples and coverage phases add their own
# The first ask_agent/condense of a server without a run worker loads litellm (seconds of CPU,
# many more on a busy machine): a hang still fails, that first answer does not.
REQUEST_TIMEOUT = 60.0

CONFIG = {
    "seed": 20_241_123,
    "suppress-health-check": ["all"],
    "request-timeout": REQUEST_TIMEOUT,
    "generation": {
        "mode": "all",
        "max-examples": MAX_EXAMPLES,
        "deterministic": True,
        "database": "none",
    },
    # Link-following (stateful) runs are a different test; this one is per operation.
    "phases": {"stateful": {"enabled": False}},
}

# The live stream never ends by design: every request with a real conversation id would wait
# out REQUEST_TIMEOUT (about 2 minutes of this test per database). tests/streams covers it,
# its 404 and 422 answers included.
STREAM_PATH = "/api/conversations/{conversation_id}/events/stream"

# The document /openapi.json serves (the server fixture checks that it is the same).
fuzz = schemathesis.openapi.from_dict(
    create_app(Settings(_env_file=None, database_url="sqlite+aiosqlite://")).openapi(),  # type: ignore[call-arg]
    config=schemathesis.Config.from_dict(CONFIG),
).exclude(path=STREAM_PATH)


# Operations that take a conversation id or a skill name: each must answer 2xx for a seeded
# one at least once.
ID_OPERATIONS = {
    "GET /api/skills/{name}",
    "PATCH /api/skills/{name}",
    "DELETE /api/skills/{name}",
    "GET /api/skills/{name}/revisions",
    "GET /api/conversations/{conversation_id}",
    "PATCH /api/conversations/{conversation_id}",
    "DELETE /api/conversations/{conversation_id}",
    "POST /api/conversations/{conversation_id}/events",
    "GET /api/conversations/{conversation_id}/events",
    "GET /api/conversations/{conversation_id}/events/search",
    "GET /api/conversations/{conversation_id}/events/count",
    "GET /api/conversations/{conversation_id}/events/{event_id}",
}


@dataclass
class Seeds:
    """Rows created over HTTP before fuzzing; the generation hooks draw from them."""

    conversation_ids: list[str] = field(default_factory=list)
    deletable_ids: list[str] = field(default_factory=list)  # DELETE's own conversations
    event_ids: list[tuple[str, str]] = field(default_factory=list)  # (conversation, event)
    cursors: list[str] = field(default_factory=list)  # real next_page_id values
    run_ids: list[str] = field(default_factory=list)  # queued runs (no worker runs them)
    skill_names: list[str] = field(default_factory=list)
    deletable_skills: list[str] = field(default_factory=list)  # DELETE's own skills
    # Per pytest item: its operation, and the statuses of requests that named a seeded
    # conversation in their path.
    operation: str | None = None
    seeded_statuses: Counter[int] = field(default_factory=Counter)
    item_failed: bool = False

    def is_seeded(self, path_parameters: dict[str, Any]) -> bool:
        seeded = {*self.conversation_ids, *self.deletable_ids}
        seeded |= {*self.skill_names, *self.deletable_skills}
        key = path_parameters.get("conversation_id") or path_parameters.get("name")
        return str(key) in seeded


SEEDS = Seeds()


@dataclass
class LiveServer:
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_offset(self) -> int:
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[None]:
    """This test drives a server process from plain sync code; the loop gate does not apply."""
    yield


def _seed(client: httpx.Client) -> Seeds:
    """A few conversations with messages, created over HTTP, and cursors into them."""
    seeds = Seeds()

    def create(**fields: object) -> str:
        body = {"agent": {"llm": {"model": "fuzz-model", "api_key": "sk-fuzz"}}, **fields}
        response = client.post("/api/conversations", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def message(text: str) -> dict[str, object]:
        return {"role": "user", "content": [{"type": "text", "text": text}]}

    for n in range(4):
        cid = create(
            title=f"seeded {n}",
            tags={"team": "fuzz", "n": str(n)},
            initial_message=message(f"hello {n}"),
        )
        for text in ("What is 2+2?", "zebracorn sighting", "Ünïcödé ✓ text"):
            response = client.post(f"/api/conversations/{cid}/events", json=message(text))
            assert response.status_code == 201, response.text
        seeds.conversation_ids.append(cid)
    seeds.deletable_ids += [create(title=f"doomed {n}") for n in range(3)]

    for cid in seeds.conversation_ids:
        events = client.get(f"/api/conversations/{cid}/events/search").json()["items"]
        seeds.event_ids += [(cid, event["id"]) for event in events]
        for order in ("TIMESTAMP", "TIMESTAMP_DESC"):
            page = client.get(
                f"/api/conversations/{cid}/events/search", params={"limit": 1, "sort_order": order}
            )
            seeds.cursors.append(page.json()["next_page_id"])
    page = client.get("/api/conversations/search", params={"limit": 2})
    seeds.cursors.append(page.json()["next_page_id"])
    if "/api/conversations/{conversation_id}/run" in fuzz.raw_schema["paths"]:
        response = client.post(f"/api/conversations/{seeds.conversation_ids[0]}/run")
        assert response.status_code == 202, response.text
        seeds.run_ids.append(str(response.json()["id"]))
    for name in ("fuzz-skill", "fuzz-skill-2", "doomed-skill", "doomed-skill-2"):
        content = f"---\nname: {name}\ndescription: seeded\n---\nSeeded instructions.\n"
        response = client.post("/api/skills", json={"content": content})
        assert response.status_code == 201, response.text
        (seeds.deletable_skills if name.startswith("doomed") else seeds.skill_names).append(name)
    client.patch("/api/skills/fuzz-skill", json={"enabled": False})
    seeds.cursors.append(client.get("/api/skills", params={"limit": 1}).json()["next_page_id"])
    assert all(seeds.cursors), seeds.cursors
    return seeds


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp_path = tmp_path_factory.mktemp("fuzz")
    url = create_database(BASE_URL, tmp_path, "fuzz")
    server = LiveServer(port=free_port(), log_path=tmp_path / "server.log")
    env: dict[str, str | None] = {
        "AGENT_SERVER_DATABASE_URL": url,
        "AGENT_SERVER_SESSION_API_KEYS": "",
        "AGENT_SERVER_LOG_LEVEL": "INFO",
        # No run ever executes: a run would call an LLM (litellm) with whatever model and
        # base_url the fuzzer put in a conversation. Runs are still created, paused and read.
        "AGENT_SERVER_RUN_WORKER_ENABLED": "false",
        "AGENT_SERVER_WORKSPACE_ROOT": str(tmp_path / "workspaces"),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    try:
        # A file, not a pipe: nothing reads the log while the server runs, and a full pipe
        # would block the server.
        with server.log_path.open("wb") as log:
            proc = start_server(server.port, env, stdout=log, stderr=subprocess.STDOUT)
        try:
            try:
                wait_ready(server.base_url, proc)
            except RuntimeError as exc:
                log_text = server.log_path.read_text(errors="replace")
                raise AssertionError(f"server did not answer /ready: {exc}\n{log_text}") from exc
            with httpx.Client(base_url=server.base_url, timeout=REQUEST_TIMEOUT) as client:
                served = client.get("/openapi.json")
                assert served.status_code == 200, served.text
                assert served.json() == fuzz.raw_schema, "the server serves another OpenAPI"
                seeds = _seed(client)
            vars(SEEDS).update(vars(seeds))
            yield server
        finally:
            stop(proc, timeout=15)
    finally:
        drop_database(BASE_URL, url)


@pytest.fixture(autouse=True)
def _reaches_seeded_rows() -> Iterator[None]:
    SEEDS.operation = None
    SEEDS.seeded_statuses.clear()
    SEEDS.item_failed = False
    yield
    label = SEEDS.operation
    if SEEDS.item_failed or label not in ID_OPERATIONS:
        return
    assert any(status < 300 for status in SEEDS.seeded_statuses), (
        f"{label} never answered 2xx for a seeded id (statuses: {dict(SEEDS.seeded_statuses)});"
        " the seeding hooks no longer apply"
    )


def _with_known(
    value: dict[str, Any] | None, known: list[dict[str, Any]]
) -> st.SearchStrategy[dict[str, Any] | None]:
    """The generated value as it is, or with some keys replaced by a known (seeded) set."""
    if not known or not isinstance(value, dict):
        return st.just(value)
    return st.one_of(st.just(value), st.sampled_from(known).map(lambda k: {**value, **k}))


def _prepend_known(
    query: dict[str, Any], key: str, known: list[str]
) -> st.SearchStrategy[dict[str, Any]]:
    """The query as it is, or with a few known ids in front of the generated list."""
    generated = query[key] if isinstance(query[key], list) else [query[key]]
    some_known = st.lists(st.sampled_from(known), min_size=1, max_size=3)
    return st.one_of(st.just(query), some_known.map(lambda ids: {**query, key: ids + generated}))


@fuzz.hook("flatmap_path_parameters")
def _seeded_path(
    context: schemathesis.HookContext, path_parameters: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    operation = context.operation
    if operation is None or not path_parameters:
        return st.just(path_parameters)
    if "run_id" in path_parameters:
        known = [{"run_id": r} for r in SEEDS.run_ids]
    elif "event_id" in path_parameters:
        known = [{"conversation_id": c, "event_id": e} for c, e in SEEDS.event_ids]
    elif "name" in path_parameters:
        names = SEEDS.deletable_skills if operation.method.upper() == "DELETE" else None
        known = [{"name": n} for n in names or SEEDS.skill_names]
    elif "conversation_id" not in path_parameters:
        known = []
    elif operation.method.upper() == "DELETE":
        # Deleting the shared seeded conversations would leave later operations no rows.
        known = [{"conversation_id": c} for c in SEEDS.deletable_ids]
    else:
        known = [{"conversation_id": c} for c in SEEDS.conversation_ids]
    return _with_known(path_parameters, known)


@fuzz.hook("flatmap_query")
def _seeded_query(
    context: schemathesis.HookContext, query: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    if not isinstance(query, dict):
        return st.just(query)
    if "ids" in query and SEEDS.conversation_ids:
        return _prepend_known(query, "ids", SEEDS.conversation_ids)
    if "event_ids" in query and SEEDS.event_ids:
        return _prepend_known(query, "event_ids", [e for _, e in SEEDS.event_ids])
    if "page_id" in query:
        return _with_known(query, [{"page_id": cursor} for cursor in SEEDS.cursors])
    return st.just(query)


# Well-formed If-Match values: any version, stale versions (412), a list, beyond int32.
IF_MATCH = ["*", '"1"', 'W/"4", "5"', '"99999999999999999999"']


@fuzz.hook("flatmap_headers")
def _real_etags(
    context: schemathesis.HookContext, headers: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    operation = context.operation
    if operation is None or operation.get_parameter("if-match", "header") is None:
        return st.just(headers)
    rest = {k: v for k, v in (headers or {}).items() if k.lower() != "if-match"}
    etags = st.sampled_from(IF_MATCH).map(lambda etag: {**rest, "if-match": etag})
    return st.one_of(st.just(headers), st.just(rest), etags)


_STORABLE_TEXT = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=200
)


@fuzz.hook("flatmap_body")
def _storable_messages(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    """Appends whose text the store accepts, so that searches run over odd stored text."""
    operation = context.operation
    if operation is None or (operation.method.upper(), operation.path) != (
        "POST",
        "/api/conversations/{conversation_id}/events",
    ):
        return st.just(body)
    message = _STORABLE_TEXT.map(
        lambda text: {"role": "user", "content": [{"type": "text", "text": text}]}
    )
    return st.one_of(st.just(body), message)


@fuzz.hook("after_call")
def _count_seeded(
    context: schemathesis.HookContext, case: schemathesis.Case, response: schemathesis.Response
) -> None:
    if SEEDS.is_seeded(case.path_parameters or {}):
        SEEDS.seeded_statuses[response.status_code] += 1


@fuzz.parametrize()
def test_api_answers_no_5xx_and_conforms_to_its_openapi(
    case: schemathesis.Case, live_server: LiveServer
) -> None:
    SEEDS.operation = case.operation.label
    offset = live_server.log_offset()
    try:
        case.call_and_validate(
            base_url=live_server.base_url, checks=CHECKS, timeout=REQUEST_TIMEOUT
        )
    except BaseException as exc:
        SEEDS.item_failed = True
        log = live_server.log_since(offset).strip()
        exc.add_note(f"server log while this request ran:\n{log or '(nothing)'}")
        raise
