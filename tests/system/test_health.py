import asyncio

import httpx
from fastapi import FastAPI

from app.db.session import Database
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
