"""Liveness and readiness (no authentication), and the server's description."""

import asyncio
import logging
import platform
import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from app import __version__
from app.agent.loader import AGENTS
from app.agent.tools import ALL_TOOLS
from app.config import Settings
from app.db.migrations import current_revision, describe_mismatch
from app.db.session import DatabaseDep
from app.errors import ServiceUnavailable, database_responses, error_responses
from app.metrics import exposition
from app.runs import metrics as run_metrics
from app.security import require_api_key

router = APIRouter(tags=["system"])
# The OpenHands SDK release whose remote client this server is tested against.
OPENHANDS_SDK_VERSION = "1.58.2"
logger = logging.getLogger(__name__)


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    database_revision: str


@router.get("/health", response_model=Health)
async def health() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/ready", response_model=Ready, responses=error_responses(503))
async def ready(request: Request, db: DatabaseDep) -> Ready:
    """The database answers, its schema is at the code's head revision, and (when this
    process runs agents) the agents and litellm are loaded."""
    head: str = request.app.state.head_revision
    settings: Settings = request.app.state.settings
    if settings.run_worker_enabled and AGENTS.state != "loaded":
        # Loading takes seconds; a failed load is in the log and stays failed.
        raise ServiceUnavailable(
            f"agents: {AGENTS.state}",
            details={"agents": AGENTS.state},
            headers={"Retry-After": "1"} if AGENTS.state == "loading" else None,
        )
    try:
        current = await current_revision(db.engine)
    except (SQLAlchemyError, OSError) as exc:
        logger.warning("readiness: database unreachable: %s", exc)
        raise ServiceUnavailable("database unreachable") from exc
    # At head: nothing to read. Otherwise naming the mismatch reads the migration scripts
    # (file IO, off the loop).
    mismatch = (
        None if current == head else await asyncio.to_thread(describe_mismatch, current, head)
    )
    if mismatch is not None:
        raise ServiceUnavailable(mismatch, details={"current": current, "head": head})
    return Ready(status="ready", database_revision=head)


class ServerInfo(BaseModel):
    """What the OpenHands client's `RemoteWorkspace` asks of a server (any JSON object)."""

    title: str
    version: str
    openhands_sdk_version: str
    python_version: str
    database: str
    usable_tools: list[str]
    uptime: float
    docs: str = "/docs"


@router.get(
    "/server_info",
    response_model=ServerInfo,
    dependencies=[Depends(require_api_key)],
    responses=error_responses(401),
)
async def server_info(request: Request) -> ServerInfo:
    """The server, its version, the OpenHands SDK version it speaks, and its tools."""
    settings: Settings = request.app.state.settings
    tools = [name for name in ALL_TOOLS if name != "terminal" or settings.enable_terminal]
    return ServerInfo(
        title="agent-server",
        version=__version__,
        openhands_sdk_version=OPENHANDS_SDK_VERSION,
        python_version=platform.python_version(),
        database="sqlite" if settings.is_sqlite else "postgresql",
        usable_tools=tools,
        uptime=round(time.monotonic() - request.app.state.started_at, 3),
    )


class PrometheusText(PlainTextResponse):
    media_type = CONTENT_TYPE_LATEST


@router.get(
    "/metrics",
    response_class=PrometheusText,
    dependencies=[Depends(require_api_key)],
    responses={**error_responses(401), **database_responses()},
)
async def metrics(db: DatabaseDep) -> PrometheusText:
    """Metrics in the Prometheus text format (every process's, in multiprocess mode)."""
    runs = await run_metrics.families(db)
    db.publish_pool_gauges()  # once the query above has given its connection back
    return PrometheusText(await exposition(runs))
