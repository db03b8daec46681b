"""`python -m tests.crash.die_after_commit serve ...`: the real server (app.cli), except that
with TEST_DIE_AFTER_COMMIT=1 it kills itself with SIGKILL at the first commit of a write
transaction that appended events, before the request that made it is answered.

Database.announce is what a write transaction calls once it has committed appended events,
so it is replaced here, in this process only; nothing in app/ knows.
"""

import os
import signal
import uuid
from collections.abc import Mapping

from app import cli
from app.db.session import Database


def _die(self: Database, appended: Mapping[uuid.UUID, int]) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    if os.environ.get("TEST_DIE_AFTER_COMMIT") == "1":
        Database.announce = _die  # type: ignore[method-assign]
    cli.main()
