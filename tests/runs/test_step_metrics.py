"""Per-step database time is a metric (GET /metrics), not a column of the runs table."""

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import create_conversation
from tests.runs.agents import agent_spec
from tests.runs.conftest import RunAppFactory, wait_run

METRIC = "agent_server_run_step_db_seconds"


def _steps(text: str) -> dict[str, float]:
    """part -> steps observed, from the histogram's _count samples."""
    return {
        sample.labels["part"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == f"{METRIC}_count"
    }


async def test_each_step_is_observed_once_per_part(run_app: RunAppFactory) -> None:
    """A three-step run adds three observations to both parts (the histogram is per process
    and other tests' runs add to it, so the test compares before and after)."""
    async with run_app() as client:
        before = _steps((await client.get("/metrics")).text)
        created = await create_conversation(client, agent=agent_spec("AsyncTestAgent", steps=3))
        started = await client.post(f"/api/conversations/{created['id']}/run")
        assert started.status_code == 202, started.text
        run = await wait_run(client, started.json()["id"], {"completed"})
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = _steps(response.text)
    assert run["iterations"] == 3
    for part in ("wait", "work"):
        assert after[part] - before.get(part, 0.0) == 3, (part, before, after)
    assert "step_db_ms" not in run


async def test_metrics_need_the_api_key(run_app: RunAppFactory) -> None:
    async with run_app(session_api_keys=["k"]) as client:
        refused = await client.get("/metrics")
        allowed = await client.get("/metrics", headers={"X-Session-API-Key": "k"})
    assert refused.status_code == 401
    assert allowed.status_code == 200 and METRIC in allowed.text
