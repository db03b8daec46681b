"""A connection cut during COMMIT, after Postgres has committed: retries make no duplicates.

A TCP proxy between the app and Postgres forwards a share of the COMMITs (asyncpg sends them
as simple-query `COMMIT;` messages), waits for Postgres's answer so the commit really
happened, then drops that answer and closes both sides. The app answers 503
`commit_outcome_unknown`; the client retries the same request until it gets 2xx. With an
Idempotency-Key, or with a client-chosen event `id`, every message is stored exactly once.

Checked once against a broken variant: without a key and without an id (the last test here,
kept as a control), every cut append is stored twice after its retry.
"""

import asyncio
import contextlib
import logging
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from app.db.session import Database
from app.idempotency.route import HEADER, REPLAYED
from app.models import Event
from tests.conftest import AGENT, make_app, serve_app

logger = logging.getLogger(__name__)

MESSAGES = 100
CUT_PROBABILITY = 0.3
SEED = 20240611
# Bounds: one request (a retry included), the wait for Postgres's answer to a cut COMMIT,
# the retries of one request, and a whole run of appends.
REQUEST_SECONDS = 10
ANSWER_SECONDS = 5
MAX_ATTEMPTS = 30
RUN_SECONDS = 45

# Untyped requests a client may send before its StartupMessage (protocol codes).
_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104


@dataclass
class CommitCutter:
    """A Postgres proxy on 127.0.0.1 that cuts the connection after a share of COMMITs."""

    target_host: str
    target_port: int
    rng: random.Random
    probability: float
    queries: Counter[str] = field(default_factory=Counter)  # simple-query SQL seen
    commits: int = 0
    cuts: int = 0
    answered_cuts: int = 0  # cuts whose COMMIT answer came (and was dropped)
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        writers = [client_w]
        try:
            server_r, server_w = await asyncio.wait_for(
                asyncio.open_connection(self.target_host, self.target_port), ANSWER_SECONDS
            )
            writers.append(server_w)
            await self._startup(client_r, client_w, server_w)
            cut, answered = asyncio.Event(), asyncio.Event()
            pumps = [
                asyncio.create_task(self._client_to_server(client_r, server_w, cut, answered)),
                asyncio.create_task(self._server_to_client(server_r, client_w, cut, answered)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            for writer in writers:
                writer.close()
            self._handlers.discard(task)

    async def _startup(
        self,
        client_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        server_w: asyncio.StreamWriter,
    ) -> None:
        """Pass the StartupMessage on; refuse SSL/GSS encryption ourselves ('N'), so the rest
        of the stream is plain protocol messages."""
        while True:
            header = await client_r.readexactly(8)
            length = int.from_bytes(header[:4], "big")
            code = int.from_bytes(header[4:], "big")
            if code in (_SSL_REQUEST, _GSSENC_REQUEST):
                client_w.write(b"N")
                await client_w.drain()
                continue
            server_w.write(header + await client_r.readexactly(length - 8))
            await server_w.drain()
            return

    async def _client_to_server(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        cut: asyncio.Event,
        answered: asyncio.Event,
    ) -> None:
        while True:
            message = await _read_message(reader)
            if message[:1] == b"Q":
                sql = message[5:].rstrip(b"\0").decode(errors="replace")
                self.queries[sql] += 1
                logger.debug("simple query: %r", sql)
                if sql.strip().rstrip(";").strip().upper() == "COMMIT":
                    self.commits += 1
                    if self.rng.random() < self.probability:
                        self.cuts += 1
                        cut.set()  # before the COMMIT leaves: its whole answer is dropped
                        writer.write(message)
                        await writer.drain()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(answered.wait(), ANSWER_SECONDS)
                        return  # ends the connection: both sides are closed
            writer.write(message)
            await writer.drain()

    async def _server_to_client(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        cut: asyncio.Event,
        answered: asyncio.Event,
    ) -> None:
        while True:
            message = await _read_message(reader)
            if cut.is_set():
                if message[:1] == b"Z":  # ReadyForQuery: the COMMIT is done
                    self.answered_cuts += 1
                    answered.set()
                    return
                continue
            writer.write(message)
            await writer.drain()


async def _read_message(reader: asyncio.StreamReader) -> bytes:
    """One typed protocol message: its type byte, length (which counts itself) and body."""
    header = await reader.readexactly(5)
    return header + await reader.readexactly(int.from_bytes(header[1:], "big") - 4)


@dataclass
class Tally:
    unavailable: Counter[str] = field(default_factory=Counter)  # 503s by error code
    replayed: int = 0  # final answers marked Idempotent-Replayed
    mismatched: list[str] = field(default_factory=list)  # replayed iff cut, broken


@pytest.fixture
async def proxied(
    database_url: str, db: Database
) -> AsyncIterator[tuple[httpx.AsyncClient, CommitCutter]]:
    if db.is_sqlite:
        pytest.skip("cuts a Postgres connection during COMMIT: SQLite has no connection to cut")
    url = make_url(database_url)
    cutter = CommitCutter(
        url.host or "127.0.0.1", url.port or 5432, random.Random(SEED), CUT_PROBABILITY
    )
    port = await cutter.start()
    via_proxy = Database.from_url(
        url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    )
    try:
        async with serve_app(make_app(via_proxy)) as client:
            yield client, cutter
    finally:
        await via_proxy.dispose()
        await cutter.close()


async def _until_2xx(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str], tally: Tally
) -> tuple[httpx.Response, int]:
    """POST until 2xx (the same body and headers each time); the answer and the number of
    503 commit_outcome_unknown answers before it."""
    unknown = 0
    for _ in range(MAX_ATTEMPTS):
        response = await asyncio.wait_for(
            client.post(url, json=body, headers=headers), REQUEST_SECONDS
        )
        if 200 <= response.status_code < 300:
            return response, unknown
        assert response.status_code == 503, response.text
        assert response.headers.get("Retry-After"), response.headers
        code = response.json().get("code", "?")
        tally.unavailable[code] += 1
        unknown += code == "commit_outcome_unknown"
    raise AssertionError(f"no 2xx after {MAX_ATTEMPTS} attempts at {url}")


async def _append_all(
    client: httpx.AsyncClient, with_key: bool, with_id: bool
) -> tuple[str, list[str], Tally]:
    """Create a conversation, then append MESSAGES user messages, each retried until 2xx;
    the conversation id, the texts sent and the tally."""
    created, _ = await _until_2xx(
        client, "/api/conversations", {"agent": AGENT}, {HEADER: str(uuid.uuid4())}, Tally()
    )
    tally = Tally()  # the appends' own
    cid = str(created.json()["id"])
    texts = [f"message {i}" for i in range(MESSAGES)]
    async with asyncio.timeout(RUN_SECONDS):
        for text in texts:
            body: dict[str, Any] = {"content": [{"type": "text", "text": text}]}
            if with_id:
                body["id"] = str(uuid.uuid4())
            headers = {HEADER: str(uuid.uuid4())} if with_key else {}
            response, unknown = await _until_2xx(
                client, f"/api/conversations/{cid}/events", body, headers, tally
            )
            replayed = response.headers.get(REPLAYED) == "true"
            tally.replayed += replayed
            # A cut COMMIT did commit: the retry must find it (the key's or the id's event).
            if (with_key or with_id) and replayed != (unknown > 0):
                tally.mismatched.append(f"{text}: {unknown} cuts, replayed={replayed}")
    return cid, texts, tally


async def _stored_texts(db: Database, cid: str) -> list[str]:
    """The user messages' texts, read straight from Postgres (not through the proxy)."""
    async with db.session(write=False) as session:
        payloads = await session.scalars(
            select(Event.payload)
            .where(Event.conversation_id == uuid.UUID(cid))
            .where(Event.kind == "MessageEvent", Event.source == "user")
            .order_by(Event.seq)
        )
        return [p["llm_message"]["content"][0]["text"] for p in payloads]


def _report(cutter: CommitCutter, tally: Tally, stored: list[str], texts: list[str]) -> str:
    counts = Counter(stored)
    duplicates = sum(n - 1 for n in counts.values())
    lost = len(set(texts) - set(counts))
    return (
        f"commits={cutter.commits} cuts={cutter.cuts} answered_cuts={cutter.answered_cuts}"
        f" 503s={dict(tally.unavailable)} replayed={tally.replayed}"
        f" stored={len(stored)} duplicates={duplicates} lost={lost}"
    )


async def _check_exactly_once(
    proxied: tuple[httpx.AsyncClient, CommitCutter], db: Database, with_key: bool, with_id: bool
) -> None:
    client, cutter = proxied
    cid, texts, tally = await _append_all(client, with_key=with_key, with_id=with_id)
    stored = await _stored_texts(db, cid)
    report = _report(cutter, tally, stored, texts)
    print(report)
    assert cutter.queries["COMMIT;"] == cutter.commits > 0, cutter.queries  # asyncpg's COMMIT
    assert sorted(stored) == sorted(texts), report  # 0 duplicates, 0 lost
    assert tally.unavailable["commit_outcome_unknown"] >= 10, report  # cuts really happened
    assert set(tally.unavailable) == {"commit_outcome_unknown"}, report
    assert cutter.answered_cuts == cutter.cuts, report  # each cut COMMIT was answered first
    assert not tally.mismatched, tally.mismatched


async def test_retries_with_an_idempotency_key_store_each_message_once(
    proxied: tuple[httpx.AsyncClient, CommitCutter], db: Database
) -> None:
    await _check_exactly_once(proxied, db, with_key=True, with_id=False)


async def test_retries_with_a_client_event_id_store_each_message_once(
    proxied: tuple[httpx.AsyncClient, CommitCutter], db: Database
) -> None:
    await _check_exactly_once(proxied, db, with_key=False, with_id=True)


async def test_control_retries_without_key_or_id_duplicate_the_cut_appends(
    proxied: tuple[httpx.AsyncClient, CommitCutter], db: Database
) -> None:
    """The broken variant: nothing tells the retry that the first COMMIT did commit."""
    client, cutter = proxied
    cid, texts, tally = await _append_all(client, with_key=False, with_id=False)
    stored = await _stored_texts(db, cid)
    report = _report(cutter, tally, stored, texts)
    print(report)
    duplicates = len(stored) - len(set(stored))
    assert set(stored) == set(texts), report  # nothing lost
    assert duplicates > 0, report
    # Each cut append committed, and its retry appended the message again.
    assert duplicates == tally.unavailable["commit_outcome_unknown"], report
    assert tally.replayed == 0, report
