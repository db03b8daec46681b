"""Postgres LISTEN on a dedicated connection, outside the pool, reconnecting on loss.

One connection per process listens for the event channel (below) and for any other channel
registered with `listen` (the run workers' wake-up, runs.repository.RUNS_CHANNEL).

Writers call pg_notify('agent_events', '<conversation id>:<seq>') inside their transaction
(in the seq reservation's RETURNING and in the runner's one-statement append), so a
notification is delivered only once the events are committed. The payload names the
conversation and seq only: subscribers read the rows themselves.
"""

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import asyncpg  # type: ignore[import-untyped]

from app.db.engine import asyncpg_connect_args
from app.db.session import Database
from app.events.repository import NOTIFY_CHANNEL as CHANNEL

if TYPE_CHECKING:
    from app.streams.hub import EventHub

logger = logging.getLogger(__name__)

RECONNECT_SECONDS = (0.2, 0.5, 1.0, 2.0)


def _setter(event: asyncio.Event) -> Any:
    def on_termination(_conn: Any) -> None:
        event.set()

    return on_termination


class PgListener:
    def __init__(self, db: Database, hub: "EventHub") -> None:
        self.db = db
        self.hub = hub
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None
        # channel -> what gets its payloads; listened to again after every reconnect.
        self._channels: dict[str, Callable[[str], None]] = {CHANNEL: self._on_event_notice}

    async def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        """Also hand `channel`'s payloads to `callback` (a plain function, on the loop)."""
        self._channels[channel] = callback
        if self._conn is not None:
            with contextlib.suppress(Exception):  # lost meanwhile: the reconnect listens
                await self._conn.add_listener(channel, self._on_notify)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pg-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._close()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)

    def _on_notify(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        callback = self._channels.get(channel)
        if callback is not None:
            try:
                callback(payload)
            except Exception:
                logger.exception("handling a notification on %s failed", channel)

    def _on_event_notice(self, payload: str) -> None:
        conversation_id, _, seq = payload.partition(":")
        try:
            self.hub.notify(uuid.UUID(conversation_id), int(seq))
        except ValueError:
            logger.warning("ignoring a malformed notification %r", payload)

    async def _run(self) -> None:
        attempt = 0
        while True:
            lost = asyncio.Event()
            try:
                args, kwargs = asyncpg_connect_args(self.db.engine)
                self._conn = await asyncpg.connect(*args, **kwargs)
                self._conn.add_termination_listener(_setter(lost))
                for channel in list(self._channels):
                    await self._conn.add_listener(channel, self._on_notify)
                attempt = 0
                self.hub.notify_all()  # whatever was missed while away
                while not lost.is_set():  # a quiet connection can die unnoticed: probe it
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), 5)
                    if not lost.is_set():
                        await asyncio.wait_for(self._conn.execute("SELECT 1"), 5)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("LISTEN connection lost or refused (%s); reconnecting", exc)
            await self._close()
            await asyncio.sleep(RECONNECT_SECONDS[min(attempt, len(RECONNECT_SECONDS) - 1)])
            attempt += 1
