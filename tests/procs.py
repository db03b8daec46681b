"""Process and report helpers shared by the tests and scripts/ (demo and benchmarks).

Every process is started on 127.0.0.1 from the repository root with this interpreter, and
stopped by its own PID (Popen.terminate, then Popen.kill): never by name.

- free_port(): a free TCP port of 127.0.0.1;
- start_server(): the real server, `python -m app.cli serve --host 127.0.0.1 --port N`;
- start_fake_llm(): the fake LLM of the tests, `python -m tests.fakellm --port 0`;
- wait_ready(): poll a path of a started process until it answers 200, or fail with its output;
- port_taken(): whether a server's output says its port was taken before it could bind it;
- stop(): terminate a started process, kill it after a timeout;
- percentile() and print_table(): for the benchmarks' reports.
"""

import contextlib
import math
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"

# Where a child's stdout/stderr go: None (inherit), subprocess.PIPE / DEVNULL / STDOUT, a file.
Target = int | IO[Any] | None


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start_server(
    port: int,
    env: Mapping[str, str | None] | None = None,
    args: Sequence[str] = (),
    stdout: Target = None,
    stderr: Target = None,
    module: str = "app.cli",
) -> subprocess.Popen[bytes]:
    """Start `python -m app.cli serve [args] --host 127.0.0.1 --port PORT` (`module`: another
    module that runs the same command line, e.g. a test's launcher that patches the server).

    `env` overrides this process's environment: a value of None removes the variable. The
    child's stdin is /dev/null. Wait for it with wait_ready(), end it with stop().
    """
    child_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            child_env.pop(key, None)
        else:
            child_env[key] = value
    command = [sys.executable, "-m", module, "serve", *args, "--host", HOST]
    command += ["--port", str(port)]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
    )


# A server's start imports the whole app (litellm alone takes seconds of CPU), and a cold start
# on a busy machine takes many times longer: the deadline only bounds a hang. A process that
# exits is reported at once.
READY_TIMEOUT = 150.0


def wait_ready(
    base_url: str,
    proc: subprocess.Popen[Any],
    timeout: float = READY_TIMEOUT,
    path: str = "/ready",
    what: str = "server",
    log: Path | None = None,
) -> None:
    """Poll GET base_url + path (every 0.05 s) until it answers 200.

    Raises RuntimeError if `proc` exits first (at once) or no 200 comes within `timeout`
    seconds; the message ends with the end of the process's output: `log` (where its output
    goes), else its stderr if that is a pipe and the process has exited.
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{what} exited with code {proc.returncode} before ready" + _output_tail(proc, log)
            )
        try:
            response = httpx.get(f"{base_url}{path}", timeout=5)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.TransportError as exc:
            last = repr(exc)
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{what} not ready after {timeout:.0f} s (last: {last})" + _output_tail(proc, log)
            )
        time.sleep(0.05)


def _output_tail(proc: subprocess.Popen[Any], log: Path | None, limit: int = 4000) -> str:
    """The end of a process's output for an error message ("" if there is none to read)."""
    text = ""
    if log is not None:
        with contextlib.suppress(OSError):
            text = log.read_bytes()[-limit:].decode(errors="replace")
    elif proc.returncode is not None and proc.stderr is not None:
        with contextlib.suppress(OSError, ValueError):
            data = proc.stderr.read()
            text = (data.decode(errors="replace") if isinstance(data, bytes) else data)[-limit:]
    return f"\n--- its output ---\n{text}" if text else ""


def port_taken(output: str) -> bool:
    """Whether a server's output says it could not bind its port: free_port() gives a port
    that was free when asked, and another process may take it before the server binds it."""
    return "address already in use" in output.lower()


def stop(proc: subprocess.Popen[Any] | None, timeout: float = 10) -> None:
    """Terminate a process we started (by its PID); kill it if it is still there after
    `timeout` seconds. Nothing happens for None or a process that has already exited."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def start_fake_llm(
    latency: float = 0.0, stderr: Target = None, timeout: float = READY_TIMEOUT
) -> tuple[subprocess.Popen[str], str]:
    """Start tests.fakellm on a free port (answering after `latency` s) and wait until it
    answers; returns the process and its base URL. On failure it stops the process and
    raises RuntimeError."""
    command = [sys.executable, "-m", "tests.fakellm", "--port", "0"]
    command += ["--latency", str(latency)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"fake LLM did not print its port (got {line!r})")
        base_url = f"http://{HOST}:{int(line.split()[1])}"
        wait_ready(base_url, proc, timeout, path="/_requests", what="fake LLM")
    except BaseException:
        with contextlib.suppress(Exception):
            stop(proc)
        raise
    return proc, base_url


def percentile(values: Iterable[float], fraction: float) -> float:
    """Nearest-rank percentile (fraction 0.5 for p50) of `values`, sorted or not; nan if none."""
    ordered = sorted(values) or [math.nan]
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """Print a blank line, then an aligned text table: numbers (and "n/a") right-aligned."""
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        numeric = [cell.replace(".", "", 1).isdigit() or cell == "n/a" for cell in cells]
        pairs = zip(cells, widths, numeric, strict=True)
        return "  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in pairs).rstrip()

    print("\n" + line(headers))
    print("  ".join("-" * width for width in widths))
    for row in rows:
        print(line(row))
