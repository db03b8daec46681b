"""Waking this process's run worker after an HTTP response (so after the commit), from the
routes that queue runs or set their flags. HTTP glue: the services know nothing of it."""

import uuid
from typing import TYPE_CHECKING

from fastapi import BackgroundTasks, Request

if TYPE_CHECKING:
    from app.runs.worker import Worker


def wake_worker(request: Request, background: BackgroundTasks, run_id: uuid.UUID) -> None:
    """After the response (so after the commit), tell this process's worker to look now.
    Workers in other processes hear the NOTIFY of the writing statement (Postgres) or find
    the change at their next poll (SQLite)."""
    worker = getattr(request.app.state, "worker", None)
    if worker is not None:
        background.add_task(_wake, worker, run_id)


async def _wake(worker: "Worker", run_id: uuid.UUID) -> None:
    # async: Starlette runs a plain-function background task on a worker thread, and the
    # worker's asyncio events must be set on the event loop's thread.
    worker.run_changed(run_id)
