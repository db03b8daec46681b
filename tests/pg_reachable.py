"""Exit 0 when the Postgres server behind a SQLAlchemy URL accepts a connection, else 1."""

import asyncio
import sys

import asyncpg

from tests.dbutil import pg_connect


async def _probe(url: str) -> None:
    conn = await pg_connect(url, connect_timeout=5)
    await conn.close()


def main() -> int:
    try:
        asyncio.run(_probe(sys.argv[1]))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        print(f"postgres unreachable: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
