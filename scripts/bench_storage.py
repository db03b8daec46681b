"""Where the disk goes: bytes per event, for each table and each index, after one
conversation of N events of bench_events' mix (its EventFactory and seeding).

The database is migrated to head, seeded through the store (app.events.service.append), then
settled (SQLite: a WAL checkpoint; Postgres: VACUUM (ANALYZE), as autovacuum would), and each
object's size is read from the database itself:

- SQLite: the `dbstat` virtual table (every table, index and FTS shadow table, in pages),
  and the file's page count and free pages;
- Postgres: pg_relation_size of each table's heap, of its TOAST table and of each index.

Usage:

    .venv/bin/python scripts/bench_storage.py --database-url sqlite+aiosqlite:////tmp/storage.db
    .venv/bin/python scripts/bench_storage.py \\
        --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/storage --events 100000

Use an empty database (a new SQLite file, a new Postgres database): every object is counted,
whatever conversation its rows belong to.
"""

import argparse
import asyncio
import sys
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # so `app` imports when run as `python scripts/...`
sys.path.insert(0, str(REPO_ROOT / "scripts"))

from bench_events import analyze, seed  # noqa: E402

from app.db import migrations  # noqa: E402
from app.db.session import Database  # noqa: E402
from tests.procs import print_table  # noqa: E402

# The target for the benchmark's mix on SQLite.
TARGET_BYTES_PER_EVENT = 2500
# Objects smaller than this share of the whole are summed in one row.
SHOWN_SHARE = 0.005

_SQLITE_OBJECTS = text(
    "SELECT s.name, coalesce(m.type, 'table'), coalesce(m.tbl_name, s.name), sum(s.pgsize)"
    " FROM dbstat AS s LEFT JOIN sqlite_master AS m ON m.name = s.name"
    " GROUP BY s.name ORDER BY sum(s.pgsize) DESC"
)
_POSTGRES_OBJECTS = text(
    """
    SELECT c.relname, 'table', c.relname, pg_relation_size(c.oid)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND c.relkind = 'r'
    UNION ALL
    SELECT c.relname || ' (TOAST)', 'toast', c.relname, pg_total_relation_size(c.reltoastrelid)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.reltoastrelid <> 0
    UNION ALL
    SELECT i.relname, 'index', t.relname, pg_relation_size(i.oid)
      FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
      JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
     WHERE n.nspname = 'public'
    ORDER BY 4 DESC
    """
)


async def object_sizes(url: str) -> tuple[list[tuple[str, str, str, int]], int]:
    """(name, kind, table, bytes) of every object, largest first, and the database's size."""
    db = Database.from_url(url)
    try:
        async with db.engine.connect() as conn:
            if db.is_sqlite:
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                rows = (await conn.execute(_SQLITE_OBJECTS)).all()
                pages = (await conn.exec_driver_sql("PRAGMA page_count")).scalar_one()
                size = (await conn.exec_driver_sql("PRAGMA page_size")).scalar_one()
                total = int(pages) * int(size)
            else:
                rows = (await conn.execute(_POSTGRES_OBJECTS)).all()
                total = int(
                    (
                        await conn.execute(text("SELECT pg_database_size(current_database())"))
                    ).scalar_one()
                )
    finally:
        await db.dispose()
    return [(str(r[0]), str(r[1]), str(r[2]), int(r[3] or 0)) for r in rows], total


def report(objects: list[tuple[str, str, str, int]], total: int, events: int) -> None:
    """One row per object of at least 0.5% of the whole, then the rest together."""
    counted = sum(size for *_, size in objects)
    shown = [o for o in objects if o[3] >= counted * SHOWN_SHARE]
    rest = counted - sum(size for *_, size in shown)
    rows = [
        [name, kind, table, f"{size / 2**20:.1f}", f"{size / events:.0f}"]
        for name, kind, table, size in shown
    ]
    others = len(objects) - len(shown)
    rows.append([f"({others} others)", "", "", f"{rest / 2**20:.1f}", f"{rest / events:.0f}"])
    rows.append(["(all objects)", "", "", f"{counted / 2**20:.1f}", f"{counted / events:.0f}"])
    rows.append(["(database)", "", "", f"{total / 2**20:.1f}", f"{total / events:.0f}"])
    print_table(["object", "kind", "of table", "MiB", "bytes/event"], rows)
    verdict = "meets" if total / events <= TARGET_BYTES_PER_EVENT else "misses"
    print(f"\n{events:,} events: {total / events:,.0f} bytes per event ({verdict} the"
          f" {TARGET_BYTES_PER_EVENT:,} B target)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    url: str = args.database_url
    print(f"database: {make_url(url).render_as_string()}")
    migrations.upgrade(url)  # before asyncio.run: alembic's env.py runs its own loop
    seeded = asyncio.run(seed(url, args.events))
    print(f"seeded {args.events:,} events in {seeded.seconds:.1f} s")
    print(f"settled with {asyncio.run(analyze(url))}")
    objects, total = asyncio.run(object_sizes(url))
    report(objects, total, args.events)


if __name__ == "__main__":
    main()
