"""kill -9 between the commit of an idempotent request and its answer: the retry with the
same Idempotency-Key, on another server process, gets the stored answer and the message is
stored once. Both databases.

Server A runs through tests.crash.die_after_commit, which SIGKILLs the process as soon as
the write transaction that appended the message has committed (the key's row with it), so
the client gets no answer. Server B is a normal server on the same database.

Checked once against a broken variant: with the POSTs sent without an Idempotency-Key, A's
commit left no stored answer and this test failed.
"""

import asyncio
import signal
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from app.db.session import Database
from app.idempotency.route import HEADER, REPLAYED
from app.models import Event, IdempotencyKey
from tests.conftest import create_conversation
from tests.crash.conftest import ServerFactory

pytestmark = pytest.mark.slow  # server processes

MESSAGE = {"content": [{"type": "text", "text": "once"}]}
HTTP_SECONDS = 30
EXIT_SECONDS = 30
# Server A's command line: the real one, through the launcher that dies after a commit.
DYING = "tests.crash.die_after_commit"


async def _count(db: Database, model: type, **where: object) -> int:
    async with db.session(write=False) as session:
        stmt = select(func.count()).select_from(model).filter_by(**where)
        return int(await session.scalar(stmt) or 0)


async def test_a_kill_after_commit_then_a_retry_elsewhere_replays_the_stored_answer(
    servers: ServerFactory,
    client: httpx.AsyncClient,
    db: Database,
) -> None:
    conversation = await create_conversation(client)  # in-process, before A exists
    cid = uuid.UUID(str(conversation["id"]))
    url = f"/api/conversations/{cid}/events"
    key = {HEADER: str(uuid.uuid4())}
    a = await servers(worker=False, module=DYING, TEST_DIE_AFTER_COMMIT="1")
    async with httpx.AsyncClient(base_url=a.base, timeout=HTTP_SECONDS) as ca:
        with pytest.raises(httpx.TransportError):
            await ca.post(url, json=MESSAGE, headers=key)
    returncode = await asyncio.to_thread(a.proc.wait, EXIT_SECONDS)
    assert returncode == -signal.SIGKILL, (returncode, a.log_text())
    # A died after its commit: the message and the key's stored answer are there.
    assert await _count(db, Event, conversation_id=cid) == 1
    assert await _count(db, IdempotencyKey) == 1

    b = await servers(worker=False)
    async with httpx.AsyncClient(base_url=b.base, timeout=HTTP_SECONDS) as cb:
        again = await cb.post(url, json=MESSAGE, headers=key)
        assert again.status_code == 201, again.text
        assert again.headers.get(REPLAYED) == "true", again.headers
        assert again.headers["X-Event-Seq"] == "1"
        found = await cb.get(f"{url}/search", params={"kind": "MessageEvent"})
    assert found.status_code == 200, found.text
    messages = [e for e in found.json()["items"] if e["source"] == "user"]
    assert [m["id"] for m in messages] == [again.json()["id"]], messages
    assert await _count(db, Event, conversation_id=cid) == 1
