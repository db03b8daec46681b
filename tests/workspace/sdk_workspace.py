"""Drive this server with the OpenHands SDK's own RemoteWorkspace; print what it got as JSON.

Run by test_sdk_client.py with the SDK's interpreter (OPENHANDS_SDK_PYTHON), not this
project's: `python -I sdk_workspace.py BASE_URL API_KEY LOCAL_DIR`.
"""

import json
import sys
from pathlib import Path
from typing import Any

from openhands.sdk.workspace import RemoteWorkspace


def _result(result: Any) -> dict[str, Any]:
    return dict(result.model_dump(mode="json"))


def main() -> None:
    base_url, api_key, local = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    workspace = RemoteWorkspace(host=base_url, api_key=api_key, working_dir="/")
    report: dict[str, Any] = {}
    report["echo"] = _result(
        workspace.execute_command("echo out; echo err >&2; exit 3", timeout=20)
    )
    report["cwd"] = _result(workspace.execute_command("mkdir -p sub && cd sub && pwd"))
    report["in_sub"] = _result(workspace.execute_command("pwd", cwd="/sub"))
    report["big"] = _result(
        workspace.execute_command("head -c 300000 /dev/zero | tr '\\0' a", timeout=20)
    )
    report["timeout"] = _result(workspace.execute_command("sleep 30", timeout=1))
    report["escape_cwd"] = _result(workspace.execute_command("pwd", cwd="/../.."))
    payload = bytes(range(256)) * 100
    report["upload"] = _result(workspace.file_upload(payload, "/files/data.bin"))
    report["download"] = _result(
        workspace.file_download("/files/data.bin", str(local / "data.bin"))
    )
    report["downloaded_same"] = (local / "data.bin").read_bytes() == payload
    report["download_missing"] = _result(
        workspace.file_download("/files/none.bin", str(local / "none.bin"))
    )
    report["upload_escape"] = _result(workspace.file_upload(b"x", "/../escape.bin"))
    command_id = workspace.start_command("sleep 30", timeout=30)
    workspace.stop_command(command_id)
    report["stopped"] = workspace.get_command_output(command_id)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
