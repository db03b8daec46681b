"""Starting a run wakes this process's worker on the event loop, not on a worker thread."""

import threading
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import pytest

from app.runs.worker import Worker
from tests.conftest import create_conversation
from tests.runs.agents import agent_spec
from tests.runs.conftest import RunAppFactory, wait_run


async def test_starting_a_run_wakes_the_worker_on_the_loop(
    run_app: RunAppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wake-up after POST .../run and POST .../events (run: true) is an after-response
    task. Checked once against the broken variant (the worker's sync `wake` handed to
    Starlette as the task): it ran on a worker thread, setting an asyncio event off its loop,
    and this test failed."""
    hops: list[str] = []
    original = anyio.to_thread.run_sync

    async def recording(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(func, "__qualname__", repr(func)))
        return await original(func, *args, **kwargs)

    loop_thread = threading.get_ident()
    woken_on: list[int] = []
    original_wake = Worker.wake

    def wake(self: Worker) -> None:
        woken_on.append(threading.get_ident())
        original_wake(self)

    monkeypatch.setattr(Worker, "wake", wake)
    async with run_app() as client:
        monkeypatch.setattr(anyio.to_thread, "run_sync", recording)
        created = await create_conversation(client, agent=agent_spec("AsyncTestAgent", steps=1))
        cid = created["id"]
        started = await client.post(f"/api/conversations/{cid}/run")
        assert started.status_code == 202, started.text
        await wait_run(client, started.json()["id"], {"completed"})
        sent = await client.post(
            f"/api/conversations/{cid}/events",
            json={"role": "user", "content": [{"type": "text", "text": "again"}], "run": True},
        )
        assert sent.status_code == 201, sent.text
        await wait_run(client, sent.headers["X-Run-Id"], {"completed"})
    assert len(woken_on) == 2 and set(woken_on) == {loop_thread}
    assert hops == []
