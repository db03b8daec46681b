"""Benchmark `agent-server import openhands`: events per second and peak memory, on SQLite and
Postgres, for two store sizes (memory must not grow with the store).

It writes OpenHands agent-server stores with scripts/gen_openhands_store.py (the SDK's own
event shapes, from tests/openhands/store_templates.json), then runs the real command
(`python -m app.cli import openhands STORE`) into a fresh database per row: a scratch SQLite
file, and a scratch Postgres database it creates and drops. It prints, per row: the
database, the store's size, the command's own import time and rate (its summary line), and
the command's peak RSS (os.wait4).

Usage:

    .venv/bin/python scripts/bench_import.py                      # 10 x 2,000 and 20 x 5,000 events
    .venv/bin/python scripts/bench_import.py --sizes 10x2000 --no-postgres
    .venv/bin/python scripts/bench_import.py --postgres-url postgresql+asyncpg://postgres@127.0.0.1:5432/test

The Postgres URL names a server and an existing database to connect to (default the tests'
one); the benchmark makes and drops its own database there.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # so `app` and `tests` import when run as a script

from tests.dbutil import create_database, drop_database  # noqa: E402
from tests.procs import print_table  # noqa: E402

SUMMARY = re.compile(r"imported (\d+) events in ([\d.]+) s")


def _generate(out: Path, conversations: int, events: int) -> tuple[Path, str]:
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "gen_openhands_store.py"), str(out),
         "-n", str(conversations), "-m", str(events)],
        capture_output=True, check=True,
    )  # fmt: skip
    summary = json.loads(done.stdout)
    return Path(summary["conversations_dir"]), summary["oh_secret_key"]


def _migrate(url: str) -> None:
    env = {**os.environ, "AGENT_SERVER_DATABASE_URL": url}
    subprocess.run(
        [sys.executable, "-m", "app.cli", "db", "upgrade"],
        env=env, cwd=REPO_ROOT, check=True, capture_output=True,
    )  # fmt: skip


def _import(url: str, store: Path, key: str) -> tuple[int, float, int]:
    """(events imported, the command's import seconds, its peak RSS in MiB)."""
    env = {**os.environ, "AGENT_SERVER_DATABASE_URL": url, "OH_SECRET_KEY": key}
    env["AGENT_SERVER_LOG_LEVEL"] = "WARNING"
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "import", "openhands", str(store)],
            env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    match = SUMMARY.search(text)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(f"import failed (exit {proc.returncode}):\n{text[-2000:]}")
    return int(match[1]), float(match[2]), usage.ru_maxrss // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10x2000,20x5000", help="CONVERSATIONSxEVENTS,...")
    parser.add_argument(
        "--postgres-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    sizes = [tuple(int(n) for n in size.split("x")) for size in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for conversations, events in sizes:
            store, key = _generate(root / f"store-{conversations}x{events}", conversations, events)
            targets = [("sqlite", f"sqlite+aiosqlite:///{root}/{conversations}x{events}.db")]
            if not args.no_postgres:
                targets.append(("postgresql", ""))
            for name, url in targets:
                made = url or create_database(args.postgres_url, root, "bench_import")
                try:
                    _migrate(made)
                    imported, seconds, rss = _import(made, store, key)
                finally:
                    if not url:
                        drop_database(args.postgres_url, made)
                rows.append(
                    [
                        name,
                        f"{conversations} x {events}",
                        str(imported),
                        f"{seconds:.2f}",
                        f"{imported / seconds:,.0f}".replace(",", ""),
                        str(rss),
                    ]
                )
    headers = ["database", "store", "events", "seconds", "events/s", "peak RSS MiB"]
    print_table(headers, rows)


if __name__ == "__main__":
    main()
