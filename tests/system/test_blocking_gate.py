"""The blocking-call gate is real: a handler that blocks the event loop fails its test."""

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from blockbuster import BlockingError
from fastapi import FastAPI

from app.db.session import Database
from tests.conftest import make_app, serve_app


@pytest.fixture
async def app_with_probes(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = make_app(db)

    @app.get("/probe/blocking")
    async def blocking() -> dict[str, str]:
        time.sleep(0.01)  # noqa: ASYNC251  (the deliberate mistake: blocks the event loop)
        return {"slept": "blocking"}

    @app.get("/probe/async")
    async def non_blocking() -> dict[str, str]:
        await asyncio.sleep(0.01)
        return {"slept": "async"}

    async with serve_app(app) as client:
        yield client


async def test_gate_fails_a_handler_that_blocks_the_loop(
    app_with_probes: httpx.AsyncClient,
) -> None:
    with pytest.raises(BlockingError, match="sleep"):
        await app_with_probes.get("/probe/blocking")


async def test_gate_passes_the_same_handler_written_async(
    app_with_probes: httpx.AsyncClient,
) -> None:
    response = await app_with_probes.get("/probe/async")
    assert response.status_code == 200 and response.json() == {"slept": "async"}
