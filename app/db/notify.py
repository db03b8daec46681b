"""Postgres LISTEN/NOTIFY: one dedicated connection per process, outside the pool,
reconnecting on loss; the stream hub and the run worker subscribe to their channels here.

Writers call pg_notify inside their transaction (in a RETURNING or a CTE), so a
notification is delivered only once the write is committed. Payloads name rows only (a
conversation and a seq, a run id): subscribers read the rows themselves. Notifications sent
while the connection was away are lost: after every reconnect the `on_reconnect` callbacks
run, so each subscriber can look for what it missed.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import asyncpg_connect_args

logger = logging.getLogger(__name__)

# Events were committed; payload '<conversation id>:<last seq>'.
EVENTS_CHANNEL = "agent_events"
# A run was queued (started, or given back at shutdown), or a control flag of a running run
# was set; payload: the run's id.
RUNS_CHANNEL = "agent_runs"

RECONNECT_SECONDS = (0.2, 0.5, 1.0, 2.0)
PROBE_SECONDS = 5.0


def _setter(event: asyncio.Event) -> Callable[[Any], None]:
    def on_termination(_conn: Any) -> None:
        event.set()

    return on_termination


class Listener:
    """Hands each channel's payloads to its callback: plain functions, called on the loop."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None
        # channel -> its callback; listened to again after every reconnect.
        self._channels: dict[str, Callable[[str], None]] = {}
        self._on_reconnect: list[Callable[[], None]] = []

    async def subscribe(
        self,
        channel: str,
        callback: Callable[[str], None],
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        self._channels[channel] = callback
        if on_reconnect is not None:
            self._on_reconnect.append(on_reconnect)
        if self._conn is not None:
            with contextlib.suppress(Exception):  # lost meanwhile: the reconnect listens
                await self._conn.add_listener(channel, self._deliver)

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

    def _deliver(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        callback = self._channels.get(channel)
        if callback is not None:
            try:
                callback(payload)
            except Exception:
                logger.exception("handling a notification on %s failed", channel)

    def _reconnected(self) -> None:
        for callback in list(self._on_reconnect):
            try:
                callback()
            except Exception:
                logger.exception("a reconnect callback failed")

    async def _run(self) -> None:
        attempt = 0
        while True:
            lost = asyncio.Event()
            try:
                args, kwargs = asyncpg_connect_args(self.engine)
                self._conn = await asyncpg.connect(*args, **kwargs)
                self._conn.add_termination_listener(_setter(lost))
                for channel in list(self._channels):
                    await self._conn.add_listener(channel, self._deliver)
                attempt = 0
                self._reconnected()
                while not lost.is_set():  # a quiet connection can die unnoticed: probe it
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), PROBE_SECONDS)
                    if not lost.is_set():
                        await asyncio.wait_for(self._conn.execute("SELECT 1"), PROBE_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("LISTEN connection lost or refused (%s); reconnecting", exc)
            await self._close()
            await asyncio.sleep(RECONNECT_SECONDS[min(attempt, len(RECONNECT_SECONDS) - 1)])
            attempt += 1
