"""The OpenHands workspace routes: `/bash/...` (only with AGENT_SERVER_ENABLE_TERMINAL) and
`/file/upload`, `/file/download`. Every path a client names is inside the workspace root."""

import asyncio
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse

from app.config import Settings
from app.errors import error_responses
from app.http import Success
from app.workspace import files
from app.workspace.bash import BashSearch, CommandRunner, TerminalDisabled
from app.workspace.paths import MAX_PATH_CHARS
from app.workspace.schemas import (
    BashCommandCreate,
    BashCommandRead,
    BashEventKind,
    BashEventPage,
    BashEventSortOrder,
    FileUploadRead,
)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _runner(request: Request) -> CommandRunner:
    runner: CommandRunner = request.app.state.commands
    return runner


SettingsDep = Annotated[Settings, Depends(_settings)]
RunnerDep = Annotated[CommandRunner, Depends(_runner)]
ClientPath = Annotated[
    str, Query(max_length=MAX_PATH_CHARS, description="`/` is the workspace root")
]


async def require_terminal(settings: SettingsDep) -> None:
    if not settings.enable_terminal:
        raise TerminalDisabled(
            "bash commands are disabled on this server (AGENT_SERVER_ENABLE_TERMINAL)"
        )


bash_router = APIRouter(
    prefix="/bash",
    tags=["workspace"],
    dependencies=[Depends(require_terminal)],
    responses=error_responses(403),
)
file_router = APIRouter(prefix="/file", tags=["workspace"])


@bash_router.post(
    "/start_bash_command",
    response_model=BashCommandRead,
    responses=error_responses(400, 422, 429, 503),
)
async def start_bash_command(
    body: BashCommandCreate, settings: SettingsDep, runner: RunnerDep
) -> BashCommandRead:
    """Start a bash command in the background; its output arrives as BashOutput events."""
    return await runner.start(settings.workspace_root, body)


@bash_router.get(
    "/bash_events/search", response_model=BashEventPage, responses=error_responses(400, 422)
)
async def search_bash_events(
    runner: RunnerDep,
    kind__eq: BashEventKind | None = None,
    command_id__eq: uuid.UUID | None = None,
    order__gt: Annotated[int | None, Query(description="BashOutput events only")] = None,
    timestamp__gte: datetime | None = None,
    timestamp__lt: datetime | None = None,
    sort_order: BashEventSortOrder = BashEventSortOrder.TIMESTAMP,
    page_id: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
) -> Response:
    """Search the bash events kept in this process, a keyset-paginated page at a time."""
    page = runner.search(
        BashSearch(
            kind=kind__eq,
            command_id=command_id__eq,
            order_gt=order__gt,
            timestamp_gte=timestamp__gte,
            timestamp_lt=timestamp__lt,
            descending=sort_order == BashEventSortOrder.TIMESTAMP_DESC,
            page_id=page_id,
            limit=limit,
        )
    )
    return Response(page.model_dump_json(), media_type="application/json")


@bash_router.post(
    "/bash_commands/{command_id}/stop",
    response_model=Success,
    responses=error_responses(404, 422),
)
async def stop_bash_command(command_id: uuid.UUID, runner: RunnerDep) -> Success:
    """Stop a running command (its process group); a finished one is left as it is."""
    await runner.stop(command_id)
    return Success()


@file_router.post(
    "/upload", response_model=FileUploadRead, responses=error_responses(400, 403, 413, 422)
)
async def upload_file(
    path: ClientPath, file: Annotated[UploadFile, File()], settings: SettingsDep
) -> FileUploadRead:
    """Write a file into the workspace (made whole, then renamed into place)."""
    size = await asyncio.to_thread(files.save_upload, settings.workspace_root, path, file.file)
    return FileUploadRead(path=path, file_size=size)


@file_router.get(
    "/download",
    response_class=FileResponse,
    responses={
        200: {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
            "description": "The file's bytes",
        },
        **error_responses(400, 403, 404, 422),
    },
)
async def download_file(path: ClientPath, settings: SettingsDep) -> FileResponse:
    """Read a file of the workspace."""
    target, status = await asyncio.to_thread(files.locate_download, settings.workspace_root, path)
    return FileResponse(
        target, stat_result=status, media_type="application/octet-stream", filename=target.name
    )


router = APIRouter()
router.include_router(bash_router)
router.include_router(file_router)
