"""`serve` listens from the start: /health answers while the application is still being
loaded (app/system/starting.py), the rest answers 503 with Retry-After until it is, and a
failed start is reported for the command to exit with.

Checked once against a broken variant: with Starting's lifespan waiting for the load before
it completes startup (as `serve` did, migrating and building the app first), the startup
never completed while the load was held, and test_health_answers_while_the_app_loads timed
out before its first /health."""

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from app.db.session import Database
from app.system.starting import Starting
from tests.conftest import AGENT, make_app


class Lifespan:
    """Drives an ASGI app's lifespan protocol, as uvicorn does."""

    def __init__(self, app: Starting) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(
            self.app({"type": "lifespan"}, self.inbox.get, self._send)  # type: ignore[arg-type]
        )
        await self.inbox.put({"type": "lifespan.startup"})
        assert (await asyncio.wait_for(self.sent.get(), 5))["type"] == "lifespan.startup.complete"

    async def stop(self) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        done = await asyncio.wait_for(self.sent.get(), 30)
        assert done["type"] == "lifespan.shutdown.complete", done
        assert self.task is not None
        await self.task

    async def _send(self, message: dict[str, Any]) -> None:
        await self.sent.put(message)


@pytest.fixture
async def started(db: Database) -> AsyncIterator[tuple[Starting, threading.Event]]:
    release = threading.Event()

    def load() -> Starlette:
        assert release.wait(30), "the test never released the load"
        return make_app(db)

    app = Starting(load)
    lifespan = Lifespan(app)
    await lifespan.start()
    try:
        yield app, release
    finally:
        release.set()
        await lifespan.stop()


def _client(app: Starting) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def _until(check: Callable[[], Any]) -> None:
    for _ in range(300):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_health_answers_while_the_app_loads(
    started: tuple[Starting, threading.Event],
) -> None:
    app, release = started
    async with _client(app) as client:
        health = await client.get("/health")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        for response in (
            await client.get("/ready"),
            await client.post("/api/conversations", json={"agent": AGENT}),
        ):
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "1"
            assert response.json()["details"] == {"starting": True}
        release.set()

        async def ready() -> bool:
            return (await client.get("/ready")).status_code == 200

        await _until(ready)
        created = await client.post("/api/conversations", json={"agent": AGENT})
        assert created.status_code == 201, created.text
        assert app.failure is None


async def test_a_failed_start_is_kept_and_reported() -> None:
    def load() -> Starlette:
        raise RuntimeError("the database is at a revision this code does not know")

    app = Starting(load)
    reported = asyncio.Event()
    app.on_failure = reported.set
    lifespan = Lifespan(app)
    await lifespan.start()
    await asyncio.wait_for(reported.wait(), 10)
    assert isinstance(app.failure, RuntimeError)
    async with _client(app) as client:
        assert (await client.get("/ready")).status_code == 503
    await lifespan.stop()
