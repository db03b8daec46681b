"""Housekeeping: every process prunes expired idempotency keys and, with
AGENT_SERVER_RETENTION_DAYS, deletes the conversations idle for longer.

Checked once against a broken variant: with Housekeeping.start not called by the lifespan,
test_the_server_prunes_by_itself timed out waiting."""

import uuid
from datetime import timedelta

import httpx
from sqlalchemy import func, select, update

from app.clock import utcnow
from app.config import Settings
from app.db.session import Database
from app.idempotency.route import HEADER
from app.models import Conversation, IdempotencyKey
from app.system.housekeeping import Housekeeping
from tests.conftest import AGENT, create_conversation, make_app, serve_app, wait_for


async def _count(db: Database, model: type) -> int:
    async with db.session(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def _age(db: Database, model: type, **values: object) -> None:
    async with db.session(write=True) as session:
        await session.execute(update(model).values(**values))


def _settings(db: Database, **values: object) -> Settings:
    url = db.engine.url.render_as_string(hide_password=False)
    return Settings(_env_file=None, database_url=url, **values)  # type: ignore[call-arg,arg-type]


async def test_expired_keys_go_and_old_conversations_only_with_retention(
    client: httpx.AsyncClient, db: Database
) -> None:
    await client.post("/api/conversations", json={"agent": AGENT}, headers={HEADER: "k1"})
    await create_conversation(client)
    long_ago = utcnow() - timedelta(days=100)
    await _age(db, IdempotencyKey, expires_at=utcnow() - timedelta(seconds=1))
    await _age(db, Conversation, created_at=long_ago, updated_at=long_ago, last_event_at=None)

    await Housekeeping(db, _settings(db)).run_once()
    assert await _count(db, IdempotencyKey) == 0
    assert await _count(db, Conversation) == 2  # no retention set: kept

    await Housekeeping(db, _settings(db, retention_days=30)).run_once()
    assert await _count(db, Conversation) == 0
    fresh = await create_conversation(client)
    await Housekeeping(db, _settings(db, retention_days=30)).run_once()
    assert (await client.get(f"/api/conversations/{fresh['id']}")).status_code == 200


async def test_the_server_prunes_by_itself(db: Database) -> None:
    app = make_app(db, housekeeping_interval_seconds=0.1)
    async with serve_app(app) as client:
        key = {HEADER: str(uuid.uuid4())}
        assert (
            await client.post("/api/conversations", json={"agent": AGENT}, headers=key)
        ).status_code == 201
        await _age(db, IdempotencyKey, expires_at=utcnow() - timedelta(seconds=1))

        async def pruned() -> bool:
            return await _count(db, IdempotencyKey) == 0

        await wait_for(pruned, "the expired key to be pruned", limit=10)
