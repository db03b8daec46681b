"""Apps for the workspace routes: a workspace root of the test's own, the terminal on; and a
poller that reads a command's output the way the OpenHands SDK does (order__gt)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from app.db.session import Database
from tests.conftest import make_app, serve_app, wait_for

T = TypeVar("T")
SEARCH = "/api/bash/bash_events/search"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the root, holding a file no client may reach."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret.txt").write_text("outside the workspace")
    return path


@contextlib.asynccontextmanager
async def workspace_client(
    db: Database, root: Path, **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(db, workspace_root=root, **settings)
    async with serve_app(app) as client:
        yield client


@pytest.fixture
async def bash_client(db: Database, root: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The terminal on, the workspace root `root`."""
    async with workspace_client(db, root, enable_terminal=True) as client:
        yield client


async def fs(function: Callable[[], T]) -> T:
    """File system work of a test, off the event loop (blockbuster forbids it there)."""
    return await asyncio.to_thread(function)


async def start(client: httpx.AsyncClient, command: str, **fields: Any) -> str:
    response = await client.post(
        "/api/bash/start_bash_command", json={"command": command, **fields}
    )
    assert response.status_code == 200, response.text
    command_id: str = response.json()["id"]
    return command_id


async def outputs(
    client: httpx.AsyncClient, command_id: str, wait: float = 20, limit: int = 100
) -> list[dict[str, Any]]:
    """Every BashOutput of a command up to the one with its exit code, polled as the SDK's
    RemoteWorkspace polls (order__gt the last order seen), each event seen once."""
    seen: list[dict[str, Any]] = []

    async def exited() -> bool:
        response = await client.get(
            SEARCH,
            params={
                "kind__eq": "BashOutput",
                "command_id__eq": command_id,
                "order__gt": seen[-1]["order"] if seen else -1,
                "sort_order": "TIMESTAMP",
                "limit": limit,
            },
        )
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        seen.extend(items)
        return any(item["exit_code"] is not None for item in items)

    await wait_for(exited, f"the exit code of command {command_id}", limit=wait, every=0.05)
    return seen


async def run(
    client: httpx.AsyncClient, command: str, **fields: Any
) -> tuple[str, str, int, list[dict[str, Any]]]:
    """Start a command and wait for it: stdout, stderr, exit code and its output events."""
    command_id = await start(client, command, **fields)
    events = await outputs(client, command_id)
    stdout = "".join(e["stdout"] or "" for e in events)
    stderr = "".join(e["stderr"] or "" for e in events)
    return stdout, stderr, events[-1]["exit_code"], events


def process_gone(pid: int) -> bool:
    """The process has ended (absent, or a zombie nobody reaped yet). Blocking."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


async def wait_gone(pid: int) -> bool:
    gone: bool = await wait_for(
        lambda: fs(lambda: process_gone(pid)), f"process {pid} to end", limit=10, every=0.05
    )
    return gone


async def first_outputs(client: httpx.AsyncClient, command_id: str) -> list[dict[str, Any]]:
    """The command's output events, once there is one."""

    async def items() -> list[dict[str, Any]]:
        response = await client.get(SEARCH, params={"command_id__eq": command_id})
        found: list[dict[str, Any]] = response.json()["items"]
        return found

    found: list[dict[str, Any]] = await wait_for(
        items, f"output of {command_id}", limit=10, every=0.05
    )
    return found
