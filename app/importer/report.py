"""What the import command shows: a progress bar over conversations and events while it
runs (on stderr), then a summary table, and every problem found with its file."""

from types import TracebackType

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.importer.service import ImportReport

MAX_LISTED = 200  # problems listed one by one; the rest are counted


class ImportProgress:
    """Two bars: conversations done, and event files read (the total grows as conversations
    are opened)."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._conversations = self._progress.add_task("conversations", total=None)
        self._events = self._progress.add_task("event files", total=None)

    def __enter__(self) -> "ImportProgress":
        self._progress.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.__exit__(kind, exc, tb)

    def advance(self, what: str, n: int) -> None:
        """`conversation`, `events` (files read) or `total` (files of a conversation opened)."""
        if what == "total":
            total = self._progress.tasks[self._events].total or 0
            self._progress.update(self._events, total=total + n)
            return
        task = self._conversations if what == "conversation" else self._events
        self._progress.advance(task, n)


def _printable(text: str) -> str:
    """`text` safe for a terminal: markup escaped, control characters shown as `?`."""
    return escape("".join(c if c.isprintable() else "?" for c in text))


def print_report(report: ImportReport, *, dry_run: bool) -> None:
    console = Console()
    table = Table(title="would import (dry run)" if dry_run else "import")
    for column in ("conversation", "directory", "outcome", "event files", "events", "problems"):
        table.add_column(column, justify="right" if column in ("event files", "events") else "left")
    for c in report.conversations:
        table.add_row(
            str(c.id),
            _printable(c.directory),
            c.outcome,
            str(c.events_in_store),
            str(c.events_imported),
            str(len(c.problems)),
        )
    console.print(table)
    rate = report.events_imported / report.seconds if report.seconds else 0.0
    verb = "would import" if dry_run else "imported"
    console.print(
        f"{len(report.conversations)} conversations, {verb} {report.events_imported} events"
        f" in {report.seconds:.1f} s ({rate:,.0f} events/s)"
    )
    problems = report.all_problems
    for problem in problems[:MAX_LISTED]:
        where = _printable(f"{problem.conversation}/{problem.file}: {problem.what}")
        console.print(f"[yellow]problem[/] {where}", soft_wrap=True)
    if len(problems) > MAX_LISTED:
        console.print(f"... and {len(problems) - MAX_LISTED} more problems", soft_wrap=True)
    for conflict in report.conflicts:
        console.print(
            f"[red]conflict[/] {conflict.id}: this conversation exists here with other content"
            " (not imported from this directory): left as it is",
            soft_wrap=True,
        )
