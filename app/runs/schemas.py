"""Run API schemas."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

from app.models import RunStatus
from app.validators import reject_unstorable


class RunRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    conversation_id: uuid.UUID
    status: RunStatus
    stop_reason: str | None
    error: str | None
    iterations: int
    worker_id: str | None
    lease_epoch: int
    lease_expires_at: datetime | None
    pause_requested: bool
    interrupt_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RunPage(BaseModel):
    items: list[RunRead]
    next_page_id: str | None = None


class ConfirmationAnswer(BaseModel):
    """The user's answer to the actions a conversation waits on (confirmation mode)."""

    model_config = ConfigDict(extra="forbid")
    _storable = model_validator(mode="before")(reject_unstorable)
    accept: bool
    reason: Annotated[str, StringConstraints(max_length=4096)] = "User rejected the action"
