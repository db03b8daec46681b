"""The README's tour runs as written, in order, against a real server on a fresh database.

The tour is every fenced ```sh block of README.md that calls curl, in README order (today the
blocks of "A tour", "Running agents", "Live streams", "Retries and idempotency" and "Skills"; a
curl block added to any section joins it). Those five sections must each give one, so a block
that stops being picked up fails the test instead of going untested. The blocks run
concatenated in ONE `bash -euo pipefail` process (with xtrace, so a failure names its command),
the repository root as its working directory (the tour uses `.venv/bin/python`) and `S` set to
the server (the tour's first line keeps a set `S`, else means 127.0.0.1:8000).

The tour checks its own statuses, so a call that answers other than its comment promises
ends the script non-zero: a call promised a 2xx has `-f` (curl exits 22 on a status of 400 or
more), a call promised an error writes its status alone (`-w '%{http_code}'`, the README's
`status` helper), which `test "$(status ...)" = 404` compares. This test checks that every
curl call is written one of those two ways, and that the script exits 0.

The server is `python -m app.cli serve` without API keys on a scratch database next to
TEST_DATABASE_URL (a SQLite file or a Postgres database), its default LLM endpoint pointed at
the fake LLM (tests/fakellm.py), as "Running agents" tells a reader without a provider.

Checked once against broken copies of the README: a `curl -f` of an unknown run id, a
promised 404 changed to 200 and the conversation's DELETE moved back before the events (the
break a new user found) each failed the tour, its trace ending at the command; the Skills
block fenced ```bash instead of ```sh failed the check that every section gives a block.
"""

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BASE_URL
from tests.dbutil import create_database, drop_database, is_postgres
from tests.procs import ROOT, free_port, start_fake_llm, start_server, stop, wait_ready

README = ROOT / "README.md"
SECTIONS = ("A tour", "Running agents", "Live streams", "Retries and idempotency", "Skills")
SH_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.MULTILINE | re.DOTALL)
# A curl call (not in a comment) and what makes its status checked: -f in its first option
# cluster (or --fail...), or a write-out of the status alone.
CURL_CALL = re.compile(r"(?:^|[\s(|])curl\s+(\S+)")
CHECKED = re.compile(r"^(?:-[A-Za-z]*f[A-Za-z]*|--fail\S*)$")
SCRIPT_TIMEOUT = 180.0


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[None]:
    """This test drives processes from plain sync code; the loop gate does not apply."""
    yield


def tour_blocks(readme: str) -> list[tuple[str, str]]:
    """(section title, code) of every ```sh block that calls curl, in README order."""
    blocks = []
    for match in SH_BLOCK.finditer(readme):
        code = match.group(1)
        if any(CURL_CALL.search(line) for line in code_lines(code)):
            headings = re.findall(r"^## (.+)$", readme[: match.start()], re.MULTILINE)
            blocks.append((headings[-1] if headings else "", code))
    return blocks


def code_lines(code: str) -> list[str]:
    """The lines of a block without its comment lines."""
    return [line for line in code.splitlines() if not line.lstrip().startswith("#")]


def unchecked_calls(code: str) -> list[str]:
    """The lines holding a curl call whose status nothing checks."""
    found = []
    for line in code_lines(code):
        for match in CURL_CALL.finditer(line):
            if not CHECKED.match(match.group(1)) and "%{http_code}" not in line:
                found.append(line.strip())
    return found


def test_the_tour_is_found_and_checks_every_call() -> None:
    blocks = tour_blocks(README.read_text())
    assert {section for section, _ in blocks} >= set(SECTIONS), [s for s, _ in blocks]
    assert blocks[0][1].startswith("S=${S:-"), "the tour's first line must name the server"
    unchecked = [line for _, code in blocks for line in unchecked_calls(code)]
    assert not unchecked, "curl calls without -f or a checked status:\n" + "\n".join(unchecked)


def test_a_call_without_a_checked_status_is_found() -> None:
    code = """curl -s $S/health
C=$(curl -fsS -X POST $S/x | field id)
# curl -s in a comment
test "$(curl -s -o /dev/null -w '%{http_code}' $S/y)" = 404
"""
    assert unchecked_calls(code) == ["curl -s $S/health"]


@pytest.fixture
def scratch_url(tmp_path: Path) -> Iterator[str]:
    url = create_database(BASE_URL, tmp_path, "tour")
    yield url
    drop_database(BASE_URL, url)


@pytest.mark.slow  # a server and a fake LLM, as processes
@pytest.mark.timeout(480)  # a cold server start on a busy machine, then the tour itself
@pytest.mark.skipif(
    is_postgres(BASE_URL),
    reason="the tour is run as the README runs it, against ./scripts/serve's SQLite; every call"
    " it makes is tested on Postgres by the API's own tests (this keeps .ci/run in its budget)",
)
def test_the_readme_tour_runs_as_written(scratch_url: str, tmp_path: Path) -> None:
    assert (ROOT / ".venv" / "bin" / "python").exists(), "the tour needs .venv (./scripts/serve)"
    script = "\n".join(code for _, code in tour_blocks(README.read_text()))
    llm, llm_url = start_fake_llm()
    server = None
    log = tmp_path / "server.log"
    try:
        env = {
            "AGENT_SERVER_DATABASE_URL": scratch_url,
            "AGENT_SERVER_WORKSPACE_ROOT": str(tmp_path / "workspaces"),
            "AGENT_SERVER_SESSION_API_KEYS": "",  # "" beats a developer's .env too
            "AGENT_SERVER_LLM_BASE_URL": f"{llm_url}/v1",
            "AGENT_SERVER_LLM_API_KEY": None,
            "AGENT_SERVER_LLM_ALLOWED_BASE_URLS": "",
        }
        port = free_port()
        with log.open("wb") as out:
            server = start_server(port, env, stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, server, log=log)
        result = subprocess.run(
            ["bash", "-xeuo", "pipefail", "-c", script],
            cwd=ROOT,
            env={**os.environ, "S": base},
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT,
            check=False,
        )
    finally:
        stop(server)
        stop(llm)
    trace = result.stderr[-6000:]
    server_log = log.read_text(errors="replace")[-3000:]
    assert result.returncode == 0, (
        f"the tour failed (exit {result.returncode}); the end of its trace (`+` lines are the "
        f"commands):\n{trace}\n--- the server's log ---\n{server_log}"
    )
