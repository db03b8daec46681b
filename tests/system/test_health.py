import asyncio
import threading

import httpx
import pytest
from blockbuster import BlockBuster
from fastapi import FastAPI

from app import main
from app.agent import loader
from app.agent.loader import AgentLoading
from app.db import migrations
from app.db.session import Database
from app.runs import worker
from app.system import endpoints as system_endpoints
from tests.conftest import make_app, serve_app


async def test_health_answers_without_auth(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_when_database_is_at_head(client: httpx.AsyncClient, app: FastAPI) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200, response.text
    assert response.json()["database_revision"] == app.state.head_revision


async def test_ready_is_503_when_schema_is_behind(tmp_dir: object, database_url: str) -> None:
    """A database alembic has not migrated is not ready, and says which revisions differ."""
    from tests.conftest import BASE_URL
    from tests.dbutil import create_database, drop_database

    url = await asyncio.to_thread(create_database, BASE_URL, tmp_dir, "behind")  # type: ignore[arg-type]
    behind = await asyncio.to_thread(Database.from_url, url)
    try:
        app = make_app(behind)
        async with serve_app(app) as c:
            response = await c.get("/ready")
        assert response.status_code == 503
        body = response.json()
        assert body["code"] == "service_unavailable"
        assert body["details"] == {"current": None, "head": app.state.head_revision}
    finally:
        await behind.dispose()
        await asyncio.to_thread(drop_database, BASE_URL, url)


async def test_ready_names_an_older_revision_without_blocking_the_loop(
    tmp_dir: object, blockbuster: BlockBuster
) -> None:
    """A database at an older known revision is 503 naming both; naming it reads the
    migration scripts, off the loop (checked against the call made on the loop: blockbuster
    failed this test)."""
    from tests.conftest import BASE_URL
    from tests.dbutil import create_database, drop_database, run_in_thread

    url = await asyncio.to_thread(create_database, BASE_URL, tmp_dir, "older")  # type: ignore[arg-type]
    blockbuster.deactivate()  # alembic runs its own loop in that thread, with file IO
    try:
        await asyncio.to_thread(run_in_thread, lambda: migrations.upgrade(url, "0011"))
    finally:
        blockbuster.activate()
    older = await asyncio.to_thread(Database.from_url, url)
    try:
        app = make_app(older)
        async with serve_app(app) as c:
            response = await c.get("/ready")
        assert response.status_code == 503, response.text
        assert "0011" in response.json()["message"]
        assert app.state.head_revision in response.json()["message"]
    finally:
        await older.dispose()
        await asyncio.to_thread(drop_database, BASE_URL, url)


async def test_ready_is_503_when_database_is_unreachable() -> None:
    url = "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"  # nothing listens on port 1
    unreachable = await asyncio.to_thread(Database.from_url, url)
    try:
        async with serve_app(make_app(unreachable)) as c:
            response = await c.get("/ready")
            health = await c.get("/health")
        assert response.status_code == 503
        assert response.json()["message"] == "database unreachable"
        assert health.status_code == 200
    finally:
        await unreachable.dispose()


class _HeldLoad(AgentLoading):
    """A background load that waits for `release` (or fails when told to)."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.release = threading.Event()
        self.fail = fail

    def _load(self) -> None:
        self.release.wait(30)
        if self.fail:
            self._future.set_exception(ImportError("no litellm here"))
            return
        super()._load()


async def test_ready_waits_for_the_agents_while_health_answers(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a run worker, /ready is 503 (Retry-After) while the agents load, /health is 200
    meanwhile, and /ready is 200 once they are loaded."""
    held = _HeldLoad()
    for module in (loader, system_endpoints, main, worker):
        monkeypatch.setattr(module, "AGENTS", held)
    async with serve_app(make_app(db, run_worker_enabled=True)) as c:
        assert held.state == "loading"
        response = await c.get("/ready")
        assert response.status_code == 503, response.text
        assert response.json()["details"] == {"agents": "loading"}
        assert response.headers["retry-after"] == "1"
        assert (await c.get("/health")).status_code == 200
        held.release.set()
        await held.wait()
        response = await c.get("/ready")
        assert response.status_code == 200, response.text


async def test_ready_says_when_the_agents_failed_to_load(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = _HeldLoad(fail=True)
    held.release.set()
    for module in (loader, system_endpoints, main, worker):
        monkeypatch.setattr(module, "AGENTS", held)
    async with serve_app(make_app(db, run_worker_enabled=True)) as c:
        with pytest.raises(ImportError):
            await held.wait()
        response = await c.get("/ready")
    assert response.status_code == 503
    assert response.json()["details"] == {"agents": "failed"}
    assert "retry-after" not in response.headers
