"""Exit 0 when the Postgres server behind a SQLAlchemy URL accepts a connection, else 1."""

import asyncio
import sys

import asyncpg
from sqlalchemy.engine import make_url


async def _probe(url: str) -> None:
    u = make_url(url)
    conn = await asyncpg.connect(
        host=u.host or "127.0.0.1",
        port=u.port or 5432,
        user=u.username or "postgres",
        password=u.password,
        database=u.database or "postgres",
        timeout=5,
    )
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
