"""The OpenHands SDK's RemoteWorkspace (the pinned release, unchanged) against a live server:
execute_command, file_upload, file_download, start/stop/get_command_output.

Runs sdk_workspace.py in the SDK's own interpreter (OPENHANDS_SDK_PYTHON, see
tests/openhands/sdk.py); skips without it, fails instead when REQUIRE_OPENHANDS=1.
"""

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from app.db.session import Database
from tests.openhands.sdk import require_sdk_python
from tests.streams.conftest import live_server
from tests.workspace.conftest import fs

pytestmark = pytest.mark.slow  # the SDK's interpreter, a client process

SCRIPT = Path(__file__).with_name("sdk_workspace.py")
API_KEY = "sdk-workspace-key"


async def _drive(python: str, base_url: str, local: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "OPENHANDS_SUPPRESS_BANNER": "1",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no network fetch on import
    }
    process = await asyncio.create_subprocess_exec(
        python,
        "-I",
        str(SCRIPT),
        base_url,
        API_KEY,
        str(local),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 150)
    except TimeoutError:
        process.kill()
        raise
    assert process.returncode == 0, stderr.decode(errors="replace")[-4000:]
    report: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return report


async def test_the_sdk_remote_workspace_works_against_this_server(
    db: Database, tmp_path: Path
) -> None:
    python = require_sdk_python("drive the workspace with")
    root, local = tmp_path / "root", tmp_path / "local"
    await fs(lambda: (root.mkdir(), local.mkdir()))
    settings = {"enable_terminal": True, "workspace_root": root, "session_api_keys": API_KEY}
    async with live_server(db, **settings) as base_url:
        report = await _drive(python, base_url, local)
    real = await fs(root.resolve)

    echo = report["echo"]
    assert (echo["exit_code"], echo["stdout"], echo["stderr"]) == (3, "out\n", "err\n")
    assert report["cwd"]["stdout"] == f"{real}/sub\n"
    assert report["in_sub"]["stdout"] == f"{real}/sub\n"
    assert report["big"]["exit_code"] == 0 and report["big"]["stdout"] == "a" * 300_000
    timeout = report["timeout"]
    assert timeout["exit_code"] == -1 and timeout["timeout_occurred"], timeout
    escape = report["escape_cwd"]
    assert escape["exit_code"] == -1 and "403" in escape["stderr"], escape

    assert report["upload"]["success"] and report["upload"]["file_size"] == 25_600
    assert report["download"]["success"] and report["downloaded_same"]
    assert await fs(lambda: (root / "files" / "data.bin").stat().st_size) == 25_600
    missing = report["download_missing"]
    assert not missing["success"] and "404" in missing["error"], missing
    escaped = report["upload_escape"]
    assert not escaped["success"] and "403" in escaped["error"], escaped
    assert not await fs((tmp_path / "escape.bin").exists)

    stopped = report["stopped"]
    assert stopped["kind"] == "BashOutput" and stopped["exit_code"] == -15, stopped
