"""The unchanged OpenHands SDK client drives a real server process, step by step.

tests/openhands/drive_sdk.py runs in the SDK's own interpreter against a server started
from this checkout (on the suite's database, SQLite or Postgres) and the fake LLM; it prints
one line per step. Every step must pass: create, attach by id, send and run (under 5 s),
valid events, pause and interrupt, secrets, confirmation accept and reject, fork,
server_info, execute_command, file upload and download, delete on close.
"""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.crash.conftest import ServerFactory, servers
from tests.openhands.sdk import SCRIPT, require_sdk_python

pytestmark = pytest.mark.slow  # a server process and the SDK's interpreter

__all__ = ["servers"]

DRIVER = SCRIPT.with_name("drive_sdk.py")
STEPS = [
    "create",
    "attach by id",
    "send and run to completion",
    "state.events all valid, in order, same through REST",
    "the attached client saw the run",
    "pause and interrupt without a run",
    "secrets reach the terminal, masked",
    "confirmation: AlwaysConfirm waits, run() accepts",
    "confirmation: reject records a rejection",
    "fork",
    "server_info",
    "execute_command",
    "file upload and download",
    "the agent's files are in the workspace",
    "delete on close",
]


@pytest.mark.timeout(240)
async def test_sdk_client_end_to_end(
    servers: ServerFactory, fake_llm_server: str, tmp_path: Path
) -> None:
    python = require_sdk_python("drive the server with")
    server = await servers(
        AGENT_SERVER_ENABLE_TERMINAL="true",
        AGENT_SERVER_LLM_MODEL="openai/fake",
        AGENT_SERVER_LOG_LEVEL="WARNING",
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", ""),
        "OPENHANDS_SUPPRESS_BANNER": "1",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "NO_PROXY": "127.0.0.1",
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [python, "-I", str(DRIVER), server.base, fake_llm_server, str(tmp_path)],
        capture_output=True,
        env=env,
        timeout=200,
        check=False,
    )
    lines: list[dict[str, Any]] = []
    for raw in done.stdout.decode(errors="replace").splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    report = "\n".join(
        f"{'ok ' if line['ok'] else 'FAIL'} {line['step']} ({line['seconds']} s): "
        f"{str(line['detail'])[:1500]}"
        for line in lines
    )
    print(report, file=sys.stderr)
    failed = [line["step"] for line in lines if not line["ok"]]
    server_log = await asyncio.to_thread(server.log_text)
    assert not failed, (
        f"{report}\n--- driver stderr ---\n{done.stderr.decode(errors='replace')[-4000:]}"
        f"\n--- server log ---\n{server_log[-4000:]}"
    )
    assert [line["step"] for line in lines] == STEPS, report
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-4000:]
