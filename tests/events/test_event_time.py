"""Server-assigned timestamps: UTC, never decreasing along seq, and windows over them."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.events import service
from tests.conftest import create_conversation, event_seqs, send_message

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    fake = FakeClock()
    monkeypatch.setattr(service, "utcnow", fake)
    yield fake


async def test_timestamps_never_decrease_when_the_clock_steps_back(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    conversation = await create_conversation(client)
    clock.now = T0 + timedelta(minutes=10)
    first = await send_message(client, conversation["id"], "a", with_seq=True)
    clock.now = T0  # the clock jumps back ten minutes
    second = await send_message(client, conversation["id"], "b", with_seq=True)
    assert second["seq"] == first["seq"] + 1
    assert second["timestamp"] == first["timestamp"] == "2026-01-01T12:10:00.000000Z"


async def test_timestamp_window_is_gte_inclusive_lt_exclusive(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    conversation = await create_conversation(client)
    cid = conversation["id"]
    for minute in range(6):  # events at 12:00 .. 12:05, two per minute
        clock.now = T0 + timedelta(minutes=minute)
        await send_message(client, cid, f"a{minute}")
        await send_message(client, cid, f"b{minute}")
    url = f"/api/conversations/{cid}/events"

    async def window(**params: str) -> list[int]:
        seqs = await event_seqs(client, cid, **params)
        count = (await client.get(f"{url}/count", params=params)).json()
        assert count == len(seqs)
        return seqs

    gte, lt = "2026-01-01T12:02:00Z", "2026-01-01T12:04:00Z"
    assert await window(timestamp__gte=gte, timestamp__lt=lt) == [5, 6, 7, 8]
    # Naive means UTC; an offset is converted.
    assert await window(timestamp__gte="2026-01-01T12:02:00") == [5, 6, 7, 8, 9, 10, 11, 12]
    assert await window(timestamp__lt="2026-01-01T13:01:00+01:00") == [1, 2]
    assert await window(timestamp__gte="2026-01-01T12:05:00.000001Z") == []
    assert await window(timestamp__lt="2026-01-01T12:00:00Z") == []
    assert await window(timestamp__gte="2025-01-01T00:00:00Z") == list(range(1, 13))
    assert await window(timestamp__gte=lt, timestamp__lt=gte) == []
    desc = await window(timestamp__gte=gte, timestamp__lt=lt, sort_order="TIMESTAMP_DESC")
    assert desc == [8, 7, 6, 5]
    combined = await window(timestamp__gte=gte, body="b")
    assert combined == [6, 8, 10, 12]
