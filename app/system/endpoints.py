"""Liveness and readiness. No authentication."""

import logging

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from app.db.migrations import current_revision, describe_mismatch
from app.db.session import DatabaseDep
from app.errors import ServiceUnavailable, error_responses

router = APIRouter(tags=["system"])
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
    """The database answers and its schema is at the code's head revision."""
    head: str = request.app.state.head_revision
    try:
        current = await current_revision(db.engine)
    except (SQLAlchemyError, OSError) as exc:
        logger.warning("readiness: database unreachable: %s", exc)
        raise ServiceUnavailable("database unreachable") from exc
    mismatch = describe_mismatch(current, head)
    if mismatch is not None:
        raise ServiceUnavailable(mismatch, details={"current": current, "head": head})
    return Ready(status="ready", database_revision=head)
