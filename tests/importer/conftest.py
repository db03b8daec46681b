"""A file store written by the real OpenHands SDK (tests/openhands/write_store.py, in the SDK
venv's interpreter), once per session, with its manifest: what it wrote and what it broke."""

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.openhands.conftest import _sdk_validator, sdk_events
from tests.openhands.sdk import require_sdk_python

__all__ = ["_sdk_validator", "sdk_events", "sdk_store"]

WRITER = Path(__file__).parents[1] / "openhands" / "write_store.py"


@dataclass(frozen=True)
class SdkStore:
    conversations_dir: Path
    manifest: dict[str, Any]

    @property
    def secret_key(self) -> str:
        return str(self.manifest["oh_secret_key"])

    def conversations(self) -> dict[str, dict[str, Any]]:
        return dict(self.manifest["conversations"])


@pytest.fixture(scope="session")
def sdk_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SdkStore]:
    python = require_sdk_python("write an OpenHands file store with")
    out = tmp_path_factory.mktemp("openhands-store")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", ""),
        "OPENHANDS_SUPPRESS_BANNER": "1",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    done = subprocess.run(
        [python, "-I", str(WRITER), str(out)], capture_output=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    manifest = json.loads(done.stdout)
    yield SdkStore(Path(manifest["conversations_dir"]), manifest)
