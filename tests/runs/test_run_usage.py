"""A run's LLM usage on the run resource, and the paginated listing of LLM calls per
conversation and per run (the fake LLM answers 11 prompt and 7 completion tokens a call)."""

from typing import Any

import httpx

from tests.conftest import collect_pages
from tests.runs.conftest import FakeLLM, RunAppFactory
from tests.runs.test_llm_agent import _agent, _call, _run


async def test_a_run_carries_its_usage_and_lists_its_calls(
    run_app: RunAppFactory, llm: FakeLLM
) -> None:
    """Two transient errors, then three answers: 5 calls, 2 errors, 3 x (11 + 7) tokens."""
    await llm.script(
        {"error": 429, "message": "slow down"},
        {"error": 503},
        {"tool_calls": [_call("think", thought="a")]},
        {"tool_calls": [_call("think", thought="b")]},
    )
    async with run_app() as client:
        cid, run = await _run(client, _agent(llm), "hi")
        listed = (await client.get(f"/api/conversations/{cid}/runs")).json()["items"]
        one = (await client.get(f"/api/runs/{run['id']}")).json()
        calls = await collect_pages(client, f"/api/runs/{run['id']}/llm_calls", "id", limit=2)
        by_conversation = (await client.get(f"/api/conversations/{cid}/llm_calls")).json()
    assert run["status"] == "completed", run
    usage = one["usage"]
    assert usage["llm_calls"] == 5 and usage["llm_errors"] == 2
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (33, 21)
    assert usage["total_tokens"] == 54
    assert usage["latency_ms_total"] > 0
    assert usage["latency_ms_mean"] == usage["latency_ms_total"] / 5
    assert listed[0]["usage"] == usage and run["usage"] == usage
    assert len(calls) == len(set(calls)) == 5  # 3 pages of 2, 2 and 1, nothing twice
    items = by_conversation["items"]
    assert [c["id"] for c in items] == calls  # the same calls, newest first
    assert by_conversation["next_page_id"] is None
    assert sum(c["error"] is not None for c in items) == 2
    assert all(c["run_id"] == run["id"] and c["model"] == "openai/fake-model" for c in items)
    # Calls written together share their time: newest first is (created_at, id) descending.
    keys = [(c["created_at"], c["id"]) for c in items]
    assert keys == sorted(keys, reverse=True)


async def test_a_run_without_calls_has_zero_usage(run_app: RunAppFactory, llm: FakeLLM) -> None:
    async with run_app(run_worker_enabled=False) as client:
        conversation = (await client.post("/api/conversations", json={"agent": _agent(llm)})).json()
        queued = (await client.post(f"/api/conversations/{conversation['id']}/run")).json()
        page = (await client.get(f"/api/runs/{queued['id']}/llm_calls")).json()
    assert queued["usage"] == {
        "llm_calls": 0,
        "llm_errors": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "cost_usd": None,
        "latency_ms_total": 0.0,
        "latency_ms_mean": None,
    }
    assert page == {"items": [], "next_page_id": None}


async def test_llm_call_listings_refuse_what_does_not_fit(
    run_app: RunAppFactory, llm: FakeLLM
) -> None:
    unknown = "00000000-0000-0000-0000-000000000000"
    async with run_app(run_worker_enabled=False) as client:
        cid = (await client.post("/api/conversations", json={"agent": _agent(llm)})).json()["id"]
        other = (await client.post("/api/conversations", json={"agent": _agent(llm)})).json()
        run_id = (await client.post(f"/api/conversations/{cid}/run")).json()["id"]
        answers: dict[str, httpx.Response] = {
            "unknown conversation": await client.get(f"/api/conversations/{unknown}/llm_calls"),
            "unknown run": await client.get(f"/api/runs/{unknown}/llm_calls"),
            "run of another conversation": await client.get(
                f"/api/conversations/{other['id']}/llm_calls", params={"run_id": run_id}
            ),
            "bad cursor": await client.get(f"/api/runs/{run_id}/llm_calls?page_id=nope"),
            "limit too large": await client.get(f"/api/runs/{run_id}/llm_calls?limit=101"),
        }
        cursor_of_runs = await _runs_cursor(client, cid)
        answers["another listing's cursor"] = await client.get(
            f"/api/runs/{run_id}/llm_calls", params={"page_id": cursor_of_runs}
        )
    statuses = {what: response.status_code for what, response in answers.items()}
    assert statuses == {
        "unknown conversation": 404,
        "unknown run": 404,
        "run of another conversation": 404,
        "bad cursor": 400,
        "limit too large": 422,
        "another listing's cursor": 400,
    }


async def _runs_cursor(client: httpx.AsyncClient, cid: str) -> Any:
    """A valid cursor of another listing (the conversation's runs, two of them)."""
    await client.post(f"/api/conversations/{cid}/interrupt")
    await client.post(f"/api/conversations/{cid}/run")
    page = (await client.get(f"/api/conversations/{cid}/runs", params={"limit": 1})).json()
    assert page["next_page_id"] is not None, page
    return page["next_page_id"]
