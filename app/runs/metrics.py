"""Run metrics read from the database at scrape time: runs by status and the queue depth.

They describe the database, not this process: every process would report the same numbers,
so they are read for each scrape and added to it, never kept in a process's metrics (in
multiprocess mode they would be summed over the processes).
"""

import asyncio
import logging

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from sqlalchemy.exc import SQLAlchemyError

from app.db.session import Database
from app.models import RunStatus
from app.runs import repository

logger = logging.getLogger(__name__)

# A scrape still answers (without these numbers) when the database is slow or every pooled
# connection is taken: that is when the other numbers matter most.
QUERY_TIMEOUT_SECONDS = 3.0


async def families(db: Database) -> list[Metric]:
    """Runs by status (every status, 0 when none) and queued runs, from one grouped query;
    none when the database does not answer in time."""
    try:
        async with asyncio.timeout(QUERY_TIMEOUT_SECONDS):
            async with db.session(write=False) as session:
                counts = await repository.count_by_status(session)
    except (TimeoutError, SQLAlchemyError, OSError) as exc:
        logger.warning("metrics: runs by status not read: %s", exc or type(exc).__name__)
        return []
    by_status = GaugeMetricFamily(
        "agent_server_runs", "Runs in the database by status, now.", labels=["status"]
    )
    for status in [*RunStatus, *sorted(set(counts) - set(RunStatus))]:
        by_status.add_metric([str(status)], counts.get(status, 0))
    queued = GaugeMetricFamily(
        "agent_server_run_queue_depth", "Runs waiting to be claimed by a worker (queued), now."
    )
    queued.add_metric([], counts.get(RunStatus.QUEUED, 0))
    return [by_status, queued]
