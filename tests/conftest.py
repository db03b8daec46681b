"""Test harness.

The suite runs against one database per run, chosen by TEST_DATABASE_URL: unset means a fresh
SQLite file; a Postgres URL names the server and an existing database to connect to, and the
suite creates its own database next to it and drops it at the end. The schema is built once
by `alembic upgrade head`. Tests commit for real (the concurrency tests need several
connections), so each test ends by deleting every row.

Every test runs under blockbuster: a blocking call on the event loop thread fails the test.
"""

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from blockbuster import BlockBuster, blockbuster_ctx
from fastapi import FastAPI

from app import models  # noqa: F401  (registers every table in Base.metadata)
from app.agent.loader import AGENTS
from app.config import Settings
from app.db import migrations
from app.db.base import Base
from app.db.session import Database
from app.main import create_app
from tests.dbutil import create_database, drop_database, run_in_thread

BASE_URL = os.environ.get("TEST_DATABASE_URL", "sqlite+aiosqlite:///")
# Events carry their `seq` only when asked (it is not an OpenHands field): the query
# parameter for REST, SSE and the WebSocket.
WITH_SEQ = {"with_seq": "true"}


def pytest_report_header() -> str:
    return f"database under test: {BASE_URL.split('@')[-1] if '@' in BASE_URL else BASE_URL}"


@pytest.fixture(scope="session")
def tmp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("db")


@pytest.fixture(scope="session")
def database_url(tmp_dir: Path) -> Iterator[str]:
    url = create_database(BASE_URL, tmp_dir, "test")
    run_in_thread(lambda: migrations.upgrade(url, "head"))
    yield url
    drop_database(BASE_URL, url)


@pytest.fixture(scope="session")
async def db(database_url: str) -> AsyncIterator[Database]:
    settings = Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]
    database = Database.from_settings(settings)
    yield database
    await database.dispose()


def make_app(db: Database, **settings: object) -> FastAPI:
    # _env_file=None: tests never read a developer's .env (and never touch files on the loop).
    url = db.engine.url.render_as_string(hide_password=False)
    settings.setdefault("run_worker_enabled", False)  # the run tests start their own workers
    config = Settings(_env_file=None, database_url=url, **settings)  # type: ignore[arg-type]
    return create_app(config, database=db)


@contextlib.asynccontextmanager
async def serve_app(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and give an in-process HTTP client for it, once the app is as
    ready as /ready says: with a run worker, once the agents (litellm) have loaded in the
    background, so a test's clock never includes that load."""
    async with app.router.lifespan_context(app):
        if app.state.settings.run_worker_enabled:
            await AGENTS.wait()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def collect_pages(
    client: httpx.AsyncClient, url: str, key: str, **params: object
) -> list[Any]:
    """Follow next_page_id from the first page to the last; the `key` of every item."""
    found: list[Any] = []
    page_id = None
    while True:
        query = {**params, **({"page_id": page_id} if page_id else {})}
        response = await client.get(url, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        found += [item[key] for item in body["items"]]
        page_id = body["next_page_id"]
        if page_id is None:
            return found


@pytest.fixture(scope="session")
async def app(db: Database) -> AsyncIterator[FastAPI]:
    application = make_app(db)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.fixture(autouse=True)
async def _clean_tables(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    yield
    if "db" not in request.fixturenames:
        return
    database: Database = request.getfixturevalue("db")
    async with database.session(write=True) as session:
        # Every table of the models, children before their parents (the foreign keys).
        for table in reversed(Base.metadata.sorted_tables):
            await session.execute(table.delete())


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """Fail any test that makes a blocking call on the event loop thread."""
    with blockbuster_ctx() as bb:
        # asyncpg resolves ~/.pgpass, ~/.pg_service.conf and ~/.postgresql/* with small
        # synchronous file calls when it opens a connection: once per new pooled connection,
        # never per request. That one function is allowed by name; nothing else is.
        for function in bb.functions.values():
            function.can_block_in("asyncpg/connect_utils.py", "_parse_connect_dsn_and_args")
        yield bb


AGENT = {"llm": {"model": "test-model"}}


async def create_conversation(client: httpx.AsyncClient, **fields: object) -> dict[str, object]:
    body: dict[str, object] = {"agent": AGENT, **fields}
    response = await client.post("/api/conversations", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, object] = response.json()
    return data


async def send_message(
    client: httpx.AsyncClient, conversation_id: object, text: str, with_seq: bool = False
) -> dict[str, object]:
    """Append a user message; the event as answered (with its seq only `with_seq`, which is
    always in the X-Event-Seq header)."""
    response = await client.post(
        f"/api/conversations/{conversation_id}/events",
        json={"role": "user", "content": [{"type": "text", "text": text}]},
        params=WITH_SEQ if with_seq else {},
    )
    assert response.status_code == 201, response.text
    data: dict[str, object] = response.json()
    seq = int(response.headers["X-Event-Seq"])
    assert data.get("seq") == (seq if with_seq else None), (seq, data)
    return data


async def event_seqs(
    client: httpx.AsyncClient, conversation_id: object, **params: object
) -> list[int]:
    """The seqs of a conversation's events matching `params`, every page, in page order."""
    url = f"/api/conversations/{conversation_id}/events/search"
    return await collect_pages(client, url, "seq", **params, **WITH_SEQ)


async def wait_for(
    check: Callable[[], Any], what: str, limit: float = 30, every: float = 0.1
) -> Any:
    """Await `check()` until it returns something truthy; fail after `limit` seconds."""
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(every)
