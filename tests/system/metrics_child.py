"""One server process of a host, for the multiprocess metrics test:

    PROMETHEUS_MULTIPROC_DIR=<dir> python -m tests.system.metrics_child URL CONVERSATION N

It runs the app in process (its lifespan, no run worker) inside `metrics.process_gauges`, as
app/main.py would in multiprocess mode; subscribes N streams to the conversation, holds one
pooled connection, records one LLM call (model `mp-model`: 11 + 7 tokens, 0.5 USD), waits for
the sampler to publish the pool gauges and prints READY. Then per line on stdin: `scrape`
prints GET /metrics and a line END; `exit` ends it (the lifespan's shutdown, as on SIGTERM).
"""

import asyncio
import sys
import uuid

import httpx

from app.agent.base import LLMCallRecord
from app.config import Settings
from app.db.session import Database
from app.main import create_app
from app.metrics import MULTIPROCESS, process_gauges
from app.runs import usage
from app.streams.hub import EventHub

SAMPLE_SECONDS = 0.05


async def main(url: str, conversation_id: uuid.UUID, subscribers: int) -> None:
    assert MULTIPROCESS, "PROMETHEUS_MULTIPROC_DIR is not set"
    settings = Settings(_env_file=None, database_url=url, run_worker_enabled=False)  # type: ignore[call-arg]
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        db: Database = app.state.db
        hub: EventHub = app.state.hub
        async with process_gauges(db.publish_pool_gauges, every=SAMPLE_SECONDS):
            for _ in range(subscribers):
                await hub.subscribe(conversation_id, 0)
            usage.observe(LLMCallRecord("mp-model", 11, 7, 0.5, 250.0))
            transport = httpx.ASGITransport(app=app)
            async with (
                db.engine.connect() as held,
                httpx.AsyncClient(transport=transport, base_url="http://child") as client,
            ):
                await held.exec_driver_sql("SELECT 1")
                await asyncio.sleep(SAMPLE_SECONDS * 6)  # the sampler publishes meanwhile
                print("READY", flush=True)
                while True:
                    command = (await asyncio.to_thread(sys.stdin.readline)).strip()
                    if command != "scrape":  # `exit`, or the end of stdin
                        break
                    response = await client.get("/metrics")
                    print(response.text, "END", sep="\n", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], uuid.UUID(sys.argv[2]), int(sys.argv[3])))
