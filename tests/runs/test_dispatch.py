"""Dispatch by capability, the run cap, and the separate tool pool."""

import itertools
import time

import httpx

from tests.conftest import create_conversation
from tests.runs.agents import agent_spec
from tests.runs.conftest import RunAppFactory, events_of, states, wait_run


async def _start(client: httpx.AsyncClient, kind: str, **spec: object) -> tuple[str, str]:
    conversation = await create_conversation(client, agent=agent_spec(kind, **spec))
    response = await client.post(f"/api/conversations/{conversation['id']}/run")
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    return str(conversation["id"]), str(response.json()["id"])


def _threads(events: list[dict[str, object]]) -> list[str]:
    texts = [
        e["llm_message"]["content"][0]["text"]  # type: ignore[index]
        for e in events
        if e["kind"] == "MessageEvent" and e["source"] == "agent"
    ]
    return [t.split("thread=")[1].split()[0] for t in texts]


async def test_async_agent_steps_run_on_the_event_loop(run_app: RunAppFactory) -> None:
    async with run_app() as client:
        cid, run_id = await _start(client, "AsyncTestAgent", steps=3)
        run = await wait_run(client, run_id, {"completed", "failed"})
        assert run["status"] == "completed" and run["stop_reason"] == "finished", run
        assert run["iterations"] == 3
        events = await events_of(client, cid, with_seq=True)
    assert _threads(events) == ["MainThread"] * 3
    assert states(events) == ["running", "finished", "full_state=finished"]
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(events) + 1))


async def test_sync_agent_runs_its_whole_loop_on_the_run_pool(run_app: RunAppFactory) -> None:
    async with run_app() as client:
        cid, run_id = await _start(client, "SyncTestAgent", steps=3)
        run = await wait_run(client, run_id, {"completed", "failed"})
        assert run["status"] == "completed", run
        threads = _threads(await events_of(client, cid))
    assert len(threads) == 3
    assert all(name.startswith("conversation-run_") for name in threads), threads


async def test_max_concurrent_runs_caps_all_runs_and_queues_in_order(
    run_app: RunAppFactory,
) -> None:
    async with run_app(max_concurrent_runs=1) as client:
        started = []
        for kind in ("SyncTestAgent", "AsyncTestAgent", "SyncTestAgent"):
            started.append(await _start(client, kind, steps=2, sleep=0.15))
        runs = [await wait_run(client, run_id, {"completed"}) for _, run_id in started]
    for earlier, later in itertools.pairwise(runs):
        assert earlier["started_at"] < later["started_at"], "runs start in queue order"
        assert earlier["finished_at"] <= later["started_at"], "never two at once with 1 slot"


async def test_parallel_tool_calls_of_a_sync_agent_do_not_deadlock_one_run_slot(
    run_app: RunAppFactory,
) -> None:
    """With max_concurrent_runs=1 the only run-pool thread waits for 4 parallel tool calls;
    they run on the tool pool. Checked once against a variant that submits the tools to the
    run pool instead: it hung until the 20 s wait ran out."""
    async with run_app(max_concurrent_runs=1, tool_pool_size=4) as client:
        cid, run_id = await _start(client, "FanOutTestAgent", fan_out=4, sleep=0.2)
        begun = time.monotonic()
        run = await wait_run(client, run_id, {"completed", "failed"}, wait=20)
        elapsed = time.monotonic() - begun
        events = await events_of(client, cid)
    assert run["status"] == "completed", run
    text = next(e for e in events if e["kind"] == "MessageEvent")["llm_message"]["content"][0]
    assert (
        "tools=tool" in text["text"] and "conversation-run" not in text["text"].split("tools=")[1]
    )
    assert elapsed < 10


async def test_short_requests_answer_while_every_run_slot_is_busy(
    run_app: RunAppFactory,
) -> None:
    """Two slots, both held by sync agents sleeping 1.5 s per step: health, search and count
    still answer quickly (generous bound; the benchmark measures the real latency)."""
    async with run_app(max_concurrent_runs=2) as client:
        busy = [await _start(client, "SyncTestAgent", steps=2, sleep=1.5) for _ in range(2)]
        for _, run_id in busy:
            await wait_run(client, run_id, {"running"})
        cid = busy[0][0]
        for path in (
            "/health",
            f"/api/conversations/{cid}/events/search",
            f"/api/conversations/{cid}/events/count",
        ):
            begun = time.monotonic()
            response = await client.get(path)
            assert response.status_code == 200
            assert time.monotonic() - begun < 1.0, path
        running = [(await client.get(f"/api/runs/{r}")).json()["status"] for _, r in busy]
        assert running == ["running", "running"]
        for _, run_id in busy:
            await wait_run(client, run_id, {"completed"})
