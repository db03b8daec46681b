"""Starting a run wakes this process's worker on the event loop, not on a worker thread, and
(Postgres) the workers of other processes through NOTIFY."""

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest

from app.db.session import Database
from app.runs.worker import Worker
from tests.conftest import create_conversation, make_app, serve_app
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
    original_wake = Worker.claim_now

    def wake(self: Worker) -> None:
        woken_on.append(threading.get_ident())
        original_wake(self)

    monkeypatch.setattr(Worker, "claim_now", wake)
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
    # twice from this process; on Postgres also from the NOTIFY each start sends
    assert len(woken_on) >= 2 and set(woken_on) == {loop_thread}
    assert hops == []


async def test_a_start_and_a_pause_reach_a_worker_in_another_process_at_once(
    db: Database, tmp_path: Path
) -> None:
    """Postgres: the API of one process queues a run and later pauses it; the worker of
    another (an app of its own on the same database, polling only every 30 s) claims the run
    and pauses it within seconds, woken by NOTIFY. Checked once against each broken variant:
    no pg_notify in runs.repository.insert_unless_active (the run was still queued after
    5 s) and none in set_flag (the run was still running 5 s after the pause); this test
    failed on both."""
    if db.is_sqlite:
        pytest.skip("Postgres NOTIFY: on SQLite other processes' workers poll")
    slow_polls = {
        "worker_poll_seconds": 30,
        "control_poll_seconds": 30,
        "workspace_root": tmp_path / "workspaces",
    }
    worker_app = make_app(db, run_worker_enabled=True, **slow_polls)
    api_app = make_app(db, run_worker_enabled=False, **slow_polls)
    async with serve_app(worker_app), serve_app(api_app) as api:
        await asyncio.sleep(0.5)  # the worker's claim loop is in its 30 s wait now
        spec = agent_spec("AsyncTestAgent", steps=200, sleep=0.05)
        cid = (await create_conversation(api, agent=spec))["id"]
        started = await api.post(f"/api/conversations/{cid}/run")
        assert started.status_code == 202, started.text
        run_id = started.json()["id"]
        await wait_run(api, run_id, {"running"}, wait=5)
        paused = await api.post(f"/api/conversations/{cid}/pause")
        assert paused.status_code == 202, paused.text
        run = await wait_run(api, run_id, {"completed", "cancelled", "failed"}, wait=5)
        assert run["stop_reason"] == "paused", run


async def test_a_run_given_back_at_shutdown_reaches_another_worker_at_once(
    db: Database, tmp_path: Path
) -> None:
    """Postgres: worker A holds a run and shuts down (its lifespan ends, as on SIGTERM),
    giving the run back; worker B, started while A held it and polling only every 30 s,
    claims it within seconds, woken by the NOTIFY of the give-back. Checked once against the
    broken variant (no pg_notify in runs.repository.requeue): the run was still queued after
    5 s and this test failed."""
    if db.is_sqlite:
        pytest.skip("Postgres NOTIFY: on SQLite other processes' workers poll")
    settings = {"workspace_root": tmp_path / "workspaces", "shutdown_grace_seconds": 5}
    spec = agent_spec("AsyncTestAgent", steps=40, sleep=0.05)
    holder = serve_app(make_app(db, run_worker_enabled=True, worker_poll_seconds=0.05, **settings))
    api = await holder.__aenter__()
    try:
        cid = (await create_conversation(api, agent=spec))["id"]
        run_id = (await api.post(f"/api/conversations/{cid}/run")).json()["id"]
        await wait_run(api, run_id, {"running"}, wait=5)
        slow = make_app(
            db, run_worker_enabled=True, worker_poll_seconds=30, control_poll_seconds=30, **settings
        )
        async with serve_app(slow) as other:
            await asyncio.sleep(0.5)  # B's first claim found nothing; it waits 30 s now
            await holder.__aexit__(None, None, None)  # A shuts down and gives the run back
            holder = None
            run = await wait_run(other, run_id, {"running", "completed"}, wait=5)
            assert run["worker_id"] is not None, run
            await wait_run(other, run_id, {"completed"}, wait=20)
    finally:
        if holder is not None:
            await holder.__aexit__(None, None, None)
