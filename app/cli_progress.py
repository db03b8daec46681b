"""Migration progress on stderr: one line per step as alembic starts it, then a summary.

Alembic announces each step on its `alembic.runtime.migration` logger ("Running upgrade
0001 -> 0002, ..."); a filter on that logger turns those records into our lines and keeps its
other INFO chatter ("Context impl ...") out of the output. Warnings pass on to the log."""

import logging
import time
from types import TracebackType

from alembic.runtime.migration import MigrationStep
from rich.console import Console
from rich.text import Text

ALEMBIC_LOGGER = "alembic.runtime.migration"


class MigrationProgress(logging.Filter):
    """`with MigrationProgress("upgrade", "head"): migrations.upgrade(...)`."""

    def __init__(self, verb: str, target: str, console: Console | None = None) -> None:
        super().__init__()
        self._verb = verb
        self._target = target
        # soft_wrap: a long step message stays one line, whatever the terminal's width.
        self._console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self._steps = 0
        self._reached: str | None = None
        self._started = 0.0

    def __enter__(self) -> "MigrationProgress":
        self._started = time.monotonic()
        logging.getLogger(ALEMBIC_LOGGER).addFilter(self)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        logging.getLogger(ALEMBIC_LOGGER).removeFilter(self)
        if kind is not None:
            return
        if not self._steps:
            self._console.print(f"{self._verb} {self._target}: nothing to do")
            return
        seconds = time.monotonic() - self._started
        plural = "" if self._steps == 1 else "s"
        self._console.print(
            f"database at revision {self._reached}: {self._steps} step{plural} in {seconds:.1f} s"
        )

    def filter(self, record: logging.LogRecord) -> bool:
        step = record.args[0] if isinstance(record.args, tuple) and record.args else None
        if record.msg == "Running %s" and isinstance(step, MigrationStep):
            self._show(step)
            return False
        return record.levelno >= logging.WARNING

    def _show(self, step: MigrationStep) -> None:
        self._steps += 1
        start = ", ".join(step.from_revisions_no_deps) or "base"
        self._reached = ", ".join(step.to_revisions_no_deps) or "base"
        line = Text.assemble(
            (f"{step.name} ", "bold"),
            (f"{start} -> {self._reached}", "cyan"),
            f"  {step.doc}" if step.doc else "",
        )
        self._console.print(line)
