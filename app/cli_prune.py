"""`agent-server prune`: delete the conversations idle for longer than an age, in batches
(app/retention does the work; this parses the command's options and reports)."""

import re
from datetime import timedelta
from typing import Annotated

import typer

from app.cli_errors import CliError
from app.config import get_settings

_DURATION = re.compile(r"([0-9]+)([smhd])")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _duration(value: str) -> timedelta:
    """`30d`, `12h`, `90m` or `45s`: a positive whole number and one unit."""
    match = _DURATION.fullmatch(value.strip())
    try:
        age = timedelta(**{_DURATION_UNITS[match[2]]: int(match[1])}) if match else None
    except OverflowError:
        age = None
    if not age:
        raise typer.BadParameter(
            f"{value!r} is not a duration: a positive whole number and a unit (s, m, h, d),"
            " like 30d or 12h"
        )
    return age


def _statuses(value: str | None) -> list[str] | None:
    """`finished,error` as a list of execution statuses, each one the service knows."""
    from app.errors import Unprocessable
    from app.retention.service import check_statuses

    try:
        return check_statuses(None if value is None else value.split(","))
    except Unprocessable as exc:
        raise typer.BadParameter(exc.message, param_hint="'--status'") from exc


def prune(
    older_than: Annotated[
        timedelta,
        typer.Option(
            "--older-than",
            parser=_duration,
            metavar="AGE",
            help="Delete conversations with no activity for this long: 30d, 12h, 90m, 45s.",
        ),
    ],
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            metavar="STATUS[,STATUS...]",
            help="Only conversations in these execution statuses (e.g. finished,error).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
    batch: Annotated[
        int,
        typer.Option(min=1, max=10_000, help="Conversations deleted per transaction."),
    ] = 100,
) -> None:
    """Delete the conversations idle for longer than --older-than, with all their events,
    runs and LLM calls. One with a queued or running run is never deleted."""
    import asyncio

    from app.db import migrations
    from app.db.session import Database
    from app.retention.service import prune as prune_conversations

    statuses = _statuses(status)
    settings = get_settings()
    mismatch = migrations.mismatch_at(settings.database_url)
    if mismatch is not None:
        raise CliError(mismatch)
    verb = "would prune" if dry_run else "pruned"

    async def run() -> int:
        db = Database.from_settings(settings)
        try:
            return await prune_conversations(
                db,
                older_than=older_than,
                statuses=statuses,
                dry_run=dry_run,
                batch=batch,
                on_batch=lambda total: typer.echo(f"{verb} {total} so far", err=True),
            )
        finally:
            await db.dispose()

    count = asyncio.run(run())
    noun = "conversation" if count == 1 else "conversations"
    typer.echo(f"{verb} {count} {noun}{' (dry run)' if dry_run else ''}")
