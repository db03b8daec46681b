"""Live event fan-out inside one process; the database stays the only source of truth.

Nothing here carries event payloads between processes. A change is only a wake-up ("this
conversation has events up to seq N"), and the rows are always read back from the database:

- a commit in this process wakes at once (Database commit listeners, the runner's writer);
- on Postgres, other processes' commits arrive by LISTEN/NOTIFY (see db.notify);
- a poll of `conversations.last_seq` for every watched conversation backs both up, every
  `stream_poll_seconds` on SQLite (the only cross-process signal there) and at most every
  2 s on Postgres (a NOTIFY lost while the listener reconnected).

One tail per watched conversation reads the new rows once, in seq order, in a short read
transaction, and hands them to every subscriber's bounded buffer. A subscriber whose buffer
overflows is dropped (its stream ends; the client resumes by seq), so a slow client never
slows the runner, the tail or the other clients. Streams hold no transaction while waiting.
"""

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Mapping
from typing import Any

from app.conversations import repository as conversations
from app.db.notify import EVENTS_CHANNEL, Listener
from app.db.session import Database
from app.events import service as events_service
from app.metrics import STREAM_DROPPED, STREAM_SUBSCRIBERS

logger = logging.getLogger(__name__)

READ_LIMIT = 500


class Subscription:
    """One client's view of a conversation's live events: a bounded buffer."""

    def __init__(self, tail: "Tail", max_buffer: int) -> None:
        self.tail = tail
        self.max_buffer = max_buffer
        self.overflowed = False
        self.closed = False
        self._buffer: deque[dict[str, Any]] = deque()
        self._ready = asyncio.Event()

    def push(self, events: list[dict[str, Any]]) -> None:
        if self.overflowed:
            return
        if len(self._buffer) + len(events) > self.max_buffer:
            self.overflowed = True
            self._buffer.clear()
        else:
            self._buffer.extend(events)
        self._ready.set()

    def end(self) -> None:
        """The conversation is gone (or the hub is stopping): the stream ends."""
        self.closed = True
        self._ready.set()

    async def next(self, wait_seconds: float) -> list[dict[str, Any]] | None:
        """Buffered events (possibly none once ended or overflowed); None after waiting
        `wait_seconds` for nothing."""
        if not self._buffer and not self.overflowed and not self.closed:
            try:
                await asyncio.wait_for(self._ready.wait(), wait_seconds)
            except TimeoutError:
                return None
        self._ready.clear()
        events = list(self._buffer)
        self._buffer.clear()
        return events


class Tail:
    """Reads a conversation's new rows once for all of this process's subscribers."""

    def __init__(self, hub: "EventHub", conversation_id: uuid.UUID, position: int) -> None:
        self.hub = hub
        self.conversation_id = conversation_id
        self.position = position
        self.subscribers: set[Subscription] = set()
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def add(self, subscription: Subscription) -> None:
        self.subscribers.add(subscription)
        STREAM_SUBSCRIBERS.inc()

    def drop(self, subscription: Subscription) -> None:
        if subscription in self.subscribers:
            self.subscribers.discard(subscription)
            STREAM_SUBSCRIBERS.dec()

    def end_all(self) -> None:
        """Every stream of this tail ends (the conversation is gone, or the hub stops)."""
        for subscription in self.subscribers:
            subscription.end()
        STREAM_SUBSCRIBERS.dec(len(self.subscribers))
        self.subscribers.clear()

    def notify(self, seq: int | None) -> None:
        if seq is None or seq > self.position:
            self.wake.set()

    async def run(self) -> None:
        while self.subscribers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.hub.tail_backstop_seconds)
            self.wake.clear()
            try:
                await self._read_new()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is away: keep the subscribers, try again
                logger.warning("stream tail %s: read failed", self.conversation_id, exc_info=True)
                await asyncio.sleep(0.5)

    async def _read_new(self) -> None:
        while self.subscribers:
            async with self.hub.db.session(write=False) as session:
                rows = await events_service.read_after(
                    session, self.conversation_id, self.position, limit=READ_LIMIT
                )
            if not rows:
                return
            self.position = int(rows[-1]["seq"])
            for subscription in list(self.subscribers):
                subscription.push(rows)
                if subscription.overflowed:
                    self.drop(subscription)
                    STREAM_DROPPED.inc()
            if len(rows) < READ_LIMIT:
                return


class EventHub:
    def __init__(
        self,
        db: Database,
        *,
        poll_seconds: float,
        max_buffer: int,
        tail_backstop_seconds: float = 2.0,
    ) -> None:
        self.db = db
        self.poll_seconds = poll_seconds
        self.max_buffer = max_buffer
        self.tail_backstop_seconds = tail_backstop_seconds
        self.tails: dict[uuid.UUID, Tail] = {}
        self._poller: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self, listener: Listener | None = None) -> None:
        """`listener` (Postgres): other processes' commits arrive through it."""
        self.db.commit_listeners.append(self.notify_many)
        self._poller = asyncio.create_task(self._poll_loop(), name="stream-poller")
        if listener is not None:
            await listener.subscribe(EVENTS_CHANNEL, self._on_notice, on_reconnect=self.notify_all)

    async def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(ValueError):
            self.db.commit_listeners.remove(self.notify_many)
        tasks = [t for t in [self._poller, *(tail.task for tail in self.tails.values())] if t]
        for tail in self.tails.values():
            tail.end_all()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    # ---- wake-ups ---------------------------------------------------------------------

    def notify(self, conversation_id: uuid.UUID, seq: int | None = None) -> None:
        tail = self.tails.get(conversation_id)
        if tail is not None:
            tail.notify(seq)

    def notify_many(self, appended: Mapping[uuid.UUID, int]) -> None:
        for conversation_id, seq in appended.items():
            self.notify(conversation_id, seq)

    def _on_notice(self, payload: str) -> None:
        """A NOTIFY on EVENTS_CHANNEL: '<conversation id>:<last seq>'."""
        conversation_id, _, seq = payload.partition(":")
        try:
            self.notify(uuid.UUID(conversation_id), int(seq))
        except ValueError:
            logger.warning("ignoring a malformed notification %r", payload)

    def notify_all(self) -> None:
        """After a gap in notifications (the listener reconnected): every tail looks."""
        for tail in self.tails.values():
            tail.wake.set()

    async def _poll_loop(self) -> None:
        """Cheap change detection: one indexed read of last_seq for all watched conversations."""
        while True:
            await asyncio.sleep(self.poll_seconds)
            if not self.tails:
                continue
            try:
                ids = list(self.tails)
                async with self.db.session(write=False) as session:
                    seen = await conversations.last_seqs(session, ids)
                for conversation_id in ids:
                    tail = self.tails.get(conversation_id)
                    if tail is None:
                        continue
                    if conversation_id not in seen:  # deleted: its streams end
                        tail.end_all()
                        tail.wake.set()
                    else:
                        tail.notify(seen[conversation_id])
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("stream poll failed", exc_info=True)

    # ---- subscribing ------------------------------------------------------------------

    async def subscribe(self, conversation_id: uuid.UUID, last_seq: int) -> Subscription:
        """Subscribe to events after the tail's position (at least `last_seq`, the
        conversation's last seq as the caller just read it)."""
        tail = self.tails.get(conversation_id)
        if tail is None:
            tail = Tail(self, conversation_id, last_seq)
            self.tails[conversation_id] = tail
        subscription = Subscription(tail, self.max_buffer)
        tail.add(subscription)
        if tail.task is None or tail.task.done():
            self._start_tail(tail)
        return subscription

    def _start_tail(self, tail: Tail) -> None:
        conversation_id = tail.conversation_id

        def forget(_task: asyncio.Task[None]) -> None:
            self._forget(conversation_id)

        tail.task = asyncio.create_task(tail.run(), name=f"stream-tail-{conversation_id}")
        tail.task.add_done_callback(forget)

    def unsubscribe(self, subscription: Subscription) -> None:
        tail = subscription.tail
        tail.drop(subscription)
        if not tail.subscribers:
            tail.wake.set()  # its task sees no subscribers and ends

    def _forget(self, conversation_id: uuid.UUID) -> None:
        tail = self.tails.get(conversation_id)
        if tail is not None and (tail.task is None or tail.task.done()):
            if tail.subscribers and not self._stopping:  # subscribed as it ended: restart
                self._start_tail(tail)
            else:
                del self.tails[conversation_id]
