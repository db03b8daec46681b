"""A database that cannot serve now answers 503 with Retry-After, never 500."""

import asyncio
import sqlite3

import httpx
from sqlalchemy import exc as sa_exc

from app.db.availability import unavailable_reason
from app.db.engine import create_engine
from app.db.session import Database
from tests.conftest import make_app


async def test_no_free_pooled_connection_answers_503(db: Database) -> None:
    """The pool's only connection is held: a request waits the pool timeout, then gets 503
    with Retry-After and the error body. Checked once against a broken variant (the
    SQLAlchemyError handler in app/main.py not registered): it answered 500."""
    url = db.engine.url.render_as_string(hide_password=False)
    # create_engine resolves a SQLite path (file IO): off the loop, as the lifespan does.
    engine = await asyncio.to_thread(
        create_engine, url, pool_size=1, max_overflow=0, pool_timeout=0.2
    )
    small = Database(engine)
    app = make_app(small)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            created = await client.post(
                "/api/conversations", json={"agent": {"llm": {"model": "m"}}}
            )
            assert created.status_code == 201, created.text
            cid = created.json()["id"]
            async with small.engine.connect():
                busy = await client.get(f"/api/conversations/{cid}")
                busy_write = await client.post(f"/api/conversations/{cid}/pause")
            after = await client.get(f"/api/conversations/{cid}")
    finally:
        await small.dispose()
    for answer in (busy, busy_write):
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "1"
        assert answer.json()["code"] == "service_unavailable"
        assert "busy" in answer.json()["message"]
    assert after.status_code == 200


def test_what_counts_as_unavailable() -> None:
    # The error SQLAlchemy raises for asyncpg's TooManyConnectionsError: SQLSTATE 53300.
    wrapped = sa_exc.OperationalError("connect", {}, Exception("x"))
    wrapped.orig = type("PgError", (Exception,), {"sqlstate": "53300"})()  # type: ignore[assignment]
    assert unavailable_reason(wrapped) is not None
    assert unavailable_reason(sa_exc.TimeoutError("QueuePool limit reached")) is not None
    locked = sa_exc.OperationalError("UPDATE", {}, sqlite3.OperationalError("database is locked"))
    assert unavailable_reason(locked) is not None
    try:
        raise RuntimeError("while connecting") from ConnectionRefusedError(111, "refused")
    except RuntimeError as chained:
        assert unavailable_reason(chained) is not None
    # Not passing conditions: errors in the request or in the code.
    unique = sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key"))
    unique.orig = type("PgError", (Exception,), {"sqlstate": "23505"})()  # type: ignore[assignment]
    assert unavailable_reason(unique) is None
    other = sa_exc.OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: x"))
    assert unavailable_reason(other) is None
    assert unavailable_reason(ValueError("bad")) is None
