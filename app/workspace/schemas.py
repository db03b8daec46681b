"""Wire shapes of the workspace routes, as the OpenHands SDK's RemoteWorkspace reads them."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from app.validators import reject_unstorable
from app.workspace.paths import MAX_PATH_CHARS

MAX_COMMAND_CHARS = 64 * 1024
MAX_TIMEOUT_SECONDS = 3600
DEFAULT_TIMEOUT_SECONDS = 300  # OpenHands' default


class BashCommandCreate(BaseModel):
    """A command to start (OpenHands' `ExecuteBashRequest`)."""

    command: str = Field(max_length=MAX_COMMAND_CHARS, description="Run by bash -c")
    cwd: str | None = Field(
        default=None,
        max_length=MAX_PATH_CHARS,
        description="Inside the workspace root (`/` is the root); default the root",
    )
    timeout: int | float = Field(
        default=DEFAULT_TIMEOUT_SECONDS,
        gt=0,
        le=MAX_TIMEOUT_SECONDS,
        description="Seconds; then the command's process group is killed (exit_code -1)",
    )

    # NUL characters and lone surrogates cannot be passed to a process.
    _storable = model_validator(mode="before")(reject_unstorable)


class BashCommandRead(BaseModel):
    """A started command (OpenHands' `BashCommand` event)."""

    kind: Literal["BashCommand"] = "BashCommand"
    id: uuid.UUID
    timestamp: datetime
    command: str
    cwd: str | None
    timeout: int | float


class BashOutputRead(BaseModel):
    """A piece of a command's output; the last one of a command carries its exit code."""

    kind: Literal["BashOutput"] = "BashOutput"
    id: uuid.UUID
    timestamp: datetime
    command_id: uuid.UUID
    order: int = Field(description="0, 1, 2... within the command")
    exit_code: int | None = Field(default=None, description="None: still running")
    stdout: str | None = None
    stderr: str | None = None


BashEventRead = Annotated[BashCommandRead | BashOutputRead, Field(discriminator="kind")]


class BashEventPage(BaseModel):
    items: list[BashEventRead]
    next_page_id: str | None = None


class BashEventKind(StrEnum):
    BASH_COMMAND = "BashCommand"
    BASH_OUTPUT = "BashOutput"


class BashEventSortOrder(StrEnum):
    TIMESTAMP = "TIMESTAMP"
    TIMESTAMP_DESC = "TIMESTAMP_DESC"


class FileUploadRead(BaseModel):
    """What the OpenHands client reads after an upload (`success`, `file_size`)."""

    success: bool = True
    path: str = Field(description="The path as the client gave it")
    file_size: int
