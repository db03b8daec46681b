"""Event JSON checked by the OpenHands SDK itself, in a subprocess of its own interpreter.

The SDK needs Python 3.12 and its own dependencies, so it never enters this project's venv:
scripts/openhands_venv.sh builds a venv for it and exports OPENHANDS_SDK_PYTHON. SdkEvents
starts tests/openhands/validate_events.py there once and keeps it: importing the SDK takes
seconds, validating an event well under a millisecond. The exchange with it runs in a
thread (asyncio.to_thread), so the tests' event loop never waits on its pipes.
"""

import asyncio
import contextlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

SCRIPT = Path(__file__).with_name("validate_events.py")


def require_sdk_python(purpose: str) -> str:
    """OPENHANDS_SDK_PYTHON, the interpreter of the SDK venv; without it the test skips, or
    fails when REQUIRE_OPENHANDS=1 (as in .ci/run). `purpose` says what the venv was for."""
    python = os.environ.get("OPENHANDS_SDK_PYTHON")
    if python:
        return python
    reason = (
        f"OPENHANDS_SDK_PYTHON is unset: no OpenHands SDK venv to {purpose}"
        " (scripts/test builds one with scripts/openhands_venv.sh; it needs Python 3.12)"
    )
    if os.environ.get("REQUIRE_OPENHANDS") == "1":
        pytest.fail(f"{reason}, and REQUIRE_OPENHANDS=1", pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class Verdict:
    """What the SDK made of one event: the kind it resolved (None if it refused the event),
    the kinds of its action / observation / tools as resolved, and why it refused it."""

    kind: str | None
    nested: list[str] = field(default_factory=list)
    error: str | None = None


class SdkError(RuntimeError):
    """The validator process itself failed (not an event)."""


class SdkEvents:
    """The SDK's verdict on event JSON objects: `await sdk_events.validate_events(events)`
    (or `await sdk_events(events)`) lists one error per event the SDK refuses or resolves to
    another kind (empty: all valid); `check` gives the verdicts themselves."""

    def __init__(self, python: str) -> None:
        self.python = python
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._lock = asyncio.Lock()

    def start(self) -> "SdkEvents":
        """Start the validator (a fork and exec); it imports the SDK while the caller goes on."""
        env = {
            **os.environ,
            "OPENHANDS_SUPPRESS_BANNER": "1",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no network fetch on import
        }
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115  (the process's; close() closes it)
        try:
            self._process = subprocess.Popen(
                # -I (isolated): neither this checkout nor PYTHON* variables on its path
                [self.python, "-I", str(SCRIPT)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=env,
            )
        except OSError as exc:
            raise SdkError(f"cannot start OPENHANDS_SDK_PYTHON={self.python}: {exc}") from exc
        return self

    def _exchange(self, events: list[Any]) -> list[Verdict]:
        """One line out, one line back, per event (never a full pipe either way)."""
        process = self._process
        if process is None or process.stdin is None or process.stdout is None:
            raise SdkError("the validator is not started")
        verdicts = []
        for event in events:
            try:
                process.stdin.write(json.dumps(event).encode() + b"\n")
                process.stdin.flush()
                line = process.stdout.readline()
            except BrokenPipeError:
                line = b""
            if not line:
                raise SdkError(f"the validator exited: {self._stderr_tail()}")
            verdicts.append(Verdict(**json.loads(line)))
        return verdicts

    def _stderr_tail(self) -> str:
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(5)
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-2000:]

    async def check(self, events: list[Any]) -> list[Verdict]:
        """The SDK's verdict on each event, in order."""
        async with self._lock:
            return await asyncio.to_thread(self._exchange, events)

    async def validate_events(self, events: list[dict[str, Any]]) -> list[str]:
        """One error per event the SDK refuses, or resolves to a kind other than its own."""
        errors = []
        verdicts = await self.check(events)
        for index, (event, verdict) in enumerate(zip(events, verdicts, strict=True)):
            claimed = event.get("kind") if isinstance(event, dict) else None
            name = f"#{index} {claimed} {event.get('id') if isinstance(event, dict) else ''}"
            if verdict.error is not None:
                errors.append(f"{name}: {verdict.error}")
            elif verdict.kind != claimed:
                errors.append(f"{name}: the SDK resolved it to {verdict.kind}")
        return errors

    __call__ = validate_events

    def close(self) -> None:
        """End the validator: it exits at the end of its input (killed after 10 s)."""
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
