"""Run control across the database: one active run, pause, interrupt, fencing, recovery."""

import asyncio
import uuid
from datetime import timedelta

import httpx
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from app.clock import utcnow
from app.db.session import Database
from app.events import service as events_service
from app.models import Conversation, Run
from app.runs.sweeper import sweep_once
from tests.conftest import create_conversation
from tests.runs.agents import action_event, agent_spec
from tests.runs.conftest import RunAppFactory, events_of, states, wait_run


async def _conversation(client: httpx.AsyncClient, kind: str, **spec: object) -> str:
    created = await create_conversation(client, agent=agent_spec(kind, **spec))
    return str(created["id"])


async def test_a_second_run_is_409_naming_the_active_one(run_app: RunAppFactory) -> None:
    async with run_app(max_concurrent_runs=1) as client:
        cid = await _conversation(client, "AsyncTestAgent", steps=2, sleep=0.3)
        first = (await client.post(f"/api/conversations/{cid}/run")).json()
        second = await client.post(f"/api/conversations/{cid}/run")
        assert second.status_code == 409
        assert second.json()["details"]["run_id"] == first["id"]
        await wait_run(client, first["id"], {"completed"})
        again = await client.post(f"/api/conversations/{cid}/run")
        assert again.status_code == 202
        await wait_run(client, again.json()["id"], {"completed"})
        runs = (await client.get(f"/api/conversations/{cid}/runs?limit=1")).json()
        assert runs["items"][0]["id"] == again.json()["id"] and runs["next_page_id"]
        older = await client.get(
            f"/api/conversations/{cid}/runs", params={"page_id": runs["next_page_id"]}
        )
        assert [r["id"] for r in older.json()["items"]] == [first["id"]]


async def test_concurrent_starts_let_exactly_one_through(run_app: RunAppFactory) -> None:
    """Two guards hold: the conditional status transition (checked: it alone still gave one
    202 on Postgres with the unique index dropped) and the partial unique index (next test)."""
    async with run_app(run_worker_enabled=False) as client:
        cid = await _conversation(client, "AsyncTestAgent")
        responses = await asyncio.gather(
            *(client.post(f"/api/conversations/{cid}/run") for _ in range(20))
        )
    assert sorted(r.status_code for r in responses) == [202] + [409] * 19


async def test_the_database_refuses_a_second_active_run(
    run_app: RunAppFactory, db: Database
) -> None:
    """The partial unique index itself, with no application code in the way."""
    async with run_app(run_worker_enabled=False) as client:
        cid = uuid.UUID(await _conversation(client, "AsyncTestAgent"))
    async with db.session(write=True) as session:
        session.add(Run(conversation_id=cid, status="queued", created_at=utcnow()))
        session.add(Run(conversation_id=cid, status="completed", created_at=utcnow()))
    try:
        async with db.session(write=True) as session:
            session.add(Run(conversation_id=cid, status="running", created_at=utcnow()))
    except IntegrityError:
        pass
    else:
        raise AssertionError("a second active run was accepted")


async def test_the_index_wins_when_the_status_says_startable(
    run_app: RunAppFactory, db: Database
) -> None:
    """An active run row exists while the conversation's status still says `idle` (written
    behind the API's back): POST .../run is 409 naming that run, and its status change and
    state event are rolled back with it. Checked once against a broken variant (the run
    INSERT without ON CONFLICT DO NOTHING): the IntegrityError made it a 500."""
    async with run_app(run_worker_enabled=False) as client:
        cid = await _conversation(client, "AsyncTestAgent")
        before = (await client.get(f"/api/conversations/{cid}")).json()
        async with db.session(write=True) as session:
            hidden = Run(conversation_id=uuid.UUID(cid), status="queued", created_at=utcnow())
            session.add(hidden)
        answer = await client.post(f"/api/conversations/{cid}/run")
        after = (await client.get(f"/api/conversations/{cid}")).json()
    assert answer.status_code == 409, answer.text
    assert answer.json()["details"]["run_id"] == str(hidden.id)
    assert after["execution_status"] == "idle"
    assert (after["version"], after["last_seq"]) == (before["version"], before["last_seq"])


async def test_unknown_conversation_and_run_are_404(run_app: RunAppFactory) -> None:
    async with run_app(run_worker_enabled=False) as client:
        for path in ("run", "pause", "interrupt"):
            response = await client.post(f"/api/conversations/{uuid.uuid4()}/{path}")
            assert response.status_code == 404, path
        assert (await client.get(f"/api/runs/{uuid.uuid4()}")).status_code == 404
        assert (await client.get(f"/api/conversations/{uuid.uuid4()}/runs")).status_code == 404
        cid = await _conversation(client, "AsyncTestAgent")
        # No active run: nothing to stop, 200 and null (as OpenHands answers), nothing recorded.
        for path in ("pause", "interrupt"):
            response = await client.post(f"/api/conversations/{cid}/{path}")
            assert (response.status_code, response.json()) == (200, None), path
        assert (await client.get(f"/api/conversations/{cid}/events/count")).json() == 0


async def test_pause_stops_after_the_current_step(run_app: RunAppFactory) -> None:
    async with run_app() as client:
        cid = await _conversation(client, "AsyncTestAgent", steps=50, sleep=0.2)
        run = (await client.post(f"/api/conversations/{cid}/run")).json()
        await wait_run(client, run["id"], {"running"})
        await asyncio.sleep(0.3)
        paused = await client.post(f"/api/conversations/{cid}/pause")
        assert paused.status_code == 202
        done = await wait_run(client, run["id"], {"cancelled", "completed", "failed"})
        conversation = (await client.get(f"/api/conversations/{cid}")).json()
        events = await events_of(client, cid)
    assert done["status"] == "cancelled" and done["stop_reason"] == "paused", done
    assert 1 <= done["iterations"] < 50
    assert conversation["execution_status"] == "paused"
    kinds = [e["kind"] for e in events]
    assert "PauseEvent" in kinds
    assert states(events)[-2:] == ["paused", "full_state=paused"]
    assert events[-1]["kind"] == "ConversationStateUpdateEvent"


async def test_pause_of_a_queued_run_cancels_it_at_once(run_app: RunAppFactory) -> None:
    async with run_app(run_worker_enabled=False) as client:
        cid = await _conversation(client, "AsyncTestAgent")
        run = (await client.post(f"/api/conversations/{cid}/run")).json()
        paused = (await client.post(f"/api/conversations/{cid}/pause")).json()
        assert paused["id"] == run["id"] and paused["status"] == "cancelled"
        conversation = (await client.get(f"/api/conversations/{cid}")).json()
        assert conversation["execution_status"] == "paused"
        assert states(await events_of(client, cid)) == ["running", "paused", "full_state=paused"]


async def test_interrupt_cancels_the_in_flight_step(run_app: RunAppFactory) -> None:
    async with run_app() as client:
        cid = await _conversation(client, "AsyncTestAgent", steps=1, sleep=30)
        run = (await client.post(f"/api/conversations/{cid}/run")).json()
        await wait_run(client, run["id"], {"running"})
        begun = asyncio.get_running_loop().time()
        assert (await client.post(f"/api/conversations/{cid}/interrupt")).status_code == 202
        done = await wait_run(client, run["id"], {"interrupted", "completed", "failed"}, 10)
        took = asyncio.get_running_loop().time() - begun
        events = await events_of(client, cid)
        conversation = (await client.get(f"/api/conversations/{cid}")).json()
    assert done["status"] == "interrupted" and done["iterations"] == 0, done
    assert took < 5, "the 30 s step was cancelled, not waited for"
    assert "InterruptEvent" in [e["kind"] for e in events]
    assert conversation["execution_status"] == "paused"


async def test_a_runner_that_lost_its_lease_writes_nothing_more(
    run_app: RunAppFactory, db: Database
) -> None:
    """Another worker takes the run over (a new lease epoch): the first runner's next write is
    refused by the fence and it stops. Control polling is slowed to 30 s so that the fence,
    not the control loop, is what stops it. Checked once against a runner without the fence
    check: it kept appending events after the takeover."""
    async with run_app(control_poll_seconds=30) as client:
        cid = await _conversation(client, "AsyncTestAgent", steps=100, sleep=0.1)
        run = (await client.post(f"/api/conversations/{cid}/run")).json()
        await wait_run(client, run["id"], {"running"})
        await asyncio.sleep(0.3)
        async with db.session(write=True) as session:
            await session.execute(
                update(Run)
                .where(Run.id == uuid.UUID(run["id"]))
                .values(lease_epoch=Run.lease_epoch + 1, worker_id="someone-else")
            )
        taken_at = (await client.get(f"/api/conversations/{cid}")).json()["last_seq"]
        await asyncio.sleep(1.0)
        after = (await client.get(f"/api/conversations/{cid}")).json()["last_seq"]
        still = (await client.get(f"/api/runs/{run['id']}")).json()
        worker = client.app.state.worker  # type: ignore[attr-defined]
        assert uuid.UUID(run["id"]) not in worker.runners, "the runner stopped"
    assert after <= taken_at + 1, "at most a write already past its fence check"
    assert still["status"] == "running" and still["worker_id"] == "someone-else"


async def test_sweeper_fails_runs_whose_lease_expired(run_app: RunAppFactory, db: Database) -> None:
    """A run held by a dead worker, with an action that never got its observation."""
    async with run_app(run_worker_enabled=False) as client:
        cid = await _conversation(client, "AsyncTestAgent")
        run = (await client.post(f"/api/conversations/{cid}/run")).json()
        conversation_id, run_id = uuid.UUID(cid), uuid.UUID(run["id"])
        async with db.session(write=True) as session:
            await session.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(
                    status="running",
                    worker_id="dead-worker",
                    lease_epoch=1,
                    started_at=utcnow() - timedelta(seconds=5),
                    lease_expires_at=utcnow() - timedelta(seconds=1),
                )
            )
            await session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id)
                .values(execution_status="running")
            )
            action = action_event("terminal", "call_lost", '{"command": "sleep 60"}')
            await events_service.append(session, conversation_id, [action])
        assert await sweep_once(db) == 1
        assert await sweep_once(db) == 0
        swept = (await client.get(f"/api/runs/{run_id}")).json()
        events = await events_of(client, cid)
        conversation = (await client.get(f"/api/conversations/{cid}")).json()
        again = await client.post(f"/api/conversations/{cid}/run")
    assert swept["status"] == "failed" and swept["stop_reason"] == "worker_lost"
    errors = [e for e in events if e["kind"] == "AgentErrorEvent"]
    assert [(e["tool_name"], e["tool_call_id"]) for e in errors] == [("terminal", "call_lost")]
    assert any(e["kind"] == "ConversationErrorEvent" for e in events)
    assert conversation["execution_status"] == "error"
    assert again.status_code == 202, "the conversation accepts a new run"
    async with db.session(write=False) as session:
        epoch = (await session.execute(select(Run.lease_epoch).where(Run.id == run_id))).scalar()
    assert epoch == 2, "failing the run fenced off the lost worker"


async def test_no_transaction_is_held_across_a_step(run_app: RunAppFactory) -> None:
    """While a step waits 3 s (as on an LLM or tool call), writes to the same conversation
    (which need its row lock on Postgres, the write lock on SQLite) go straight through.
    Checked once against a runner that holds a write transaction across the step: the PATCH
    waited for the step (and on SQLite for ever, the step's own writes queuing behind it)."""
    async with run_app() as client:
        cid = await _conversation(client, "AsyncTestAgent", steps=1, sleep=3)
        run = (await client.post(f"/api/conversations/{cid}/run")).json()
        await wait_run(client, run["id"], {"running"})
        await asyncio.sleep(0.3)
        loop = asyncio.get_running_loop()
        begun = loop.time()
        patched = await asyncio.wait_for(
            client.patch(f"/api/conversations/{cid}", json={"title": "mid-step"}), 10
        )
        sent = await asyncio.wait_for(
            client.post(
                f"/api/conversations/{cid}/events", json={"content": [{"text": "mid-step"}]}
            ),
            10,
        )
        took = loop.time() - begun
        status = (await client.get(f"/api/runs/{run['id']}")).json()["status"]
        await wait_run(client, run["id"], {"completed"})
    assert patched.status_code == 200 and sent.status_code == 201
    assert status == "running" and took < 1.0


async def test_leases_are_renewed_while_runs_go_on(run_app: RunAppFactory) -> None:
    """Three runs of 4 s under a 1.5 s lease: the worker's batched renewal (every 0.5 s)
    keeps them; its own sweeper (every 0.2 s) would fail any whose lease lapsed. (With a
    0.6 s lease the 0.4 s of slack was once too little on a loaded CI machine.)"""
    async with run_app(run_lease_seconds=1.5) as client:
        runs = []
        for _ in range(3):
            cid = await _conversation(client, "AsyncTestAgent", steps=4, sleep=1.0)
            runs.append((await client.post(f"/api/conversations/{cid}/run")).json()["id"])
        done = [await wait_run(client, run_id, {"completed", "failed"}) for run_id in runs]
    assert [d["status"] for d in done] == ["completed"] * 3, done


async def test_a_claim_takes_at_most_its_limit_oldest_first(
    run_app: RunAppFactory, db: Database
) -> None:
    """Checked once against `UPDATE ... WHERE id IN (SELECT ... LIMIT n FOR UPDATE SKIP
    LOCKED)`: on Postgres that claimed more than n runs."""
    from app.runs import repository

    async with run_app(run_worker_enabled=False) as client:
        queued = []
        for _ in range(5):
            cid = await _conversation(client, "AsyncTestAgent")
            queued.append((await client.post(f"/api/conversations/{cid}/run")).json()["id"])
    async with db.session(write=True) as session:
        first = await repository.claim(session, "w1", 30, utcnow(), 2)
    async with db.session(write=True) as session:
        rest = await repository.claim(session, "w2", 30, utcnow(), 10)
    assert [str(lease.run_id) for lease in first] == queued[:2]
    assert [str(lease.run_id) for lease in rest] == queued[2:]
    async with db.session(write=True) as session:
        assert await repository.claim(session, "w3", 30, utcnow(), 10) == []
