"""The `agent-server` command: thin wrappers around the same code the API uses.

A failure prints one line, `agent-server: <message>`, on stderr and exits with a status of
its kind (the table is in app/cli_errors.py); progress goes to stderr too, so that stdout
holds only what a script may read (`db current`, `secrets generate-key`, reports)."""

import contextlib
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from app import cli_errors
from app.cli_errors import CliError, Refused
from app.cli_prune import prune
from app.config import Settings, get_settings
from app.logging_config import configure_logging

cli = typer.Typer(no_args_is_help=True, add_completion=False, help="SQL-backed agent server.")
db_cli = typer.Typer(no_args_is_help=True, help="Database schema (alembic) commands.")
cli.add_typer(db_cli, name="db")
secrets_cli = typer.Typer(no_args_is_help=True, help="Stored credentials (encryption keys).")
cli.add_typer(secrets_cli, name="secrets")
import_cli = typer.Typer(no_args_is_help=True, help="Bring conversations in from elsewhere.")
cli.add_typer(import_cli, name="import")

# Shutdown bounds besides AGENT_SERVER_SHUTDOWN_GRACE_SECONDS: requests still open when the
# server stops get this long (then they are cancelled); threads still busy at exit this long.
HTTP_DRAIN_SECONDS = 5
THREADS_EXIT_SECONDS = 2.0


@cli.callback()
def _options(
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="On an error, print its traceback too."),
    ] = False,
) -> None:
    """SQL-backed agent server."""
    cli_errors.options.verbose = verbose
    _configure_logging(get_settings())


def _configure_logging(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)


def _fail(message: str) -> NoReturn:
    raise CliError(message)


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    no_migrate: Annotated[
        bool,
        typer.Option(
            "--no-migrate",
            help="Do not upgrade the schema; refuse to start unless it is at the code's head.",
        ),
    ] = False,
) -> None:
    """Apply migrations (upgrade head), then serve the API. The server listens, and answers
    /health, from the start: the migrations and the application's start follow in the
    background (/ready and the API answer 503 until they are done; see
    app/system/starting.py), and a failure there stops the server with its error. With
    --no-migrate the schema is checked first, and a mismatch is refused before listening."""
    import uvicorn

    from app.system.starting import Starting

    settings = get_settings()
    _configure_logging(settings)
    if no_migrate:
        from app.db import migrations

        mismatch = migrations.mismatch_at(settings.database_url)
        if mismatch is not None:
            _fail(mismatch)

    def load() -> Any:  # in a thread, while the server already answers /health
        from app.main import create_app

        if not no_migrate:
            from app.db import migrations

            migrations.upgrade(settings.database_url, "head", _keys(settings))
        return create_app(settings)

    starting = Starting(load)
    server = uvicorn.Server(
        uvicorn.Config(
            starting,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=HTTP_DRAIN_SECONDS,
            # A WebSocket message is bounded like a request body (a larger one closes, 1009).
            ws_max_size=settings.max_body_bytes,
        )
    )
    starting.on_failure = lambda: setattr(server, "should_exit", True)
    # After a graceful shutdown uvicorn raises the signal that asked for it again: SIGINT as
    # KeyboardInterrupt here (SIGTERM's default handler ends the process).
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if starting.failure is not None:
        raise starting.failure
    # Here after SIGINT; SIGTERM ends the process as soon as the graceful shutdown is done.
    _exit_if_threads_hang(0)


def _exit_if_threads_hang(code: int) -> None:
    """A tool call or a sync LLM call runs in a thread that cannot be stopped, and Python
    waits for every such thread at exit. The runs were given back already: give the threads
    a moment, then exit without them, so that the process ends in bounded time."""
    deadline = time.monotonic() + THREADS_EXIT_SECONDS
    others = [t for t in threading.enumerate() if t is not threading.current_thread()]
    for thread in others:
        if not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    busy = [t.name for t in others if not t.daemon and t.is_alive()]
    if busy:
        logging.getLogger(__name__).warning(
            "exiting without waiting for %d busy threads: %s", len(busy), ", ".join(busy)
        )
        logging.shutdown()
        os._exit(code)


@db_cli.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Upgrade the schema to REVISION (default: head), one line per step on stderr."""
    from app.cli_progress import MigrationProgress
    from app.db import migrations

    settings = get_settings()
    with MigrationProgress("upgrade", revision):
        migrations.upgrade(settings.database_url, revision, _keys(settings))


# Unknown options are taken as the revision, so that alembic's relative `-1` needs no `--`.
@db_cli.command("downgrade", context_settings={"ignore_unknown_options": True})
def db_downgrade(
    revision: Annotated[str, typer.Argument()],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Drop tables even when they hold rows.")
    ] = False,
) -> None:
    """Downgrade the schema to REVISION (`base` removes every table). Refuses, changing
    nothing (exit status 4), when a table it would drop holds rows, unless --yes."""
    from app.cli_progress import MigrationProgress
    from app.db import migrations

    settings = get_settings()
    if not yes:
        counts = migrations.tables_dropped_by_downgrade(settings.database_url, revision)
        holding = [f"{name} ({n} row{'' if n == 1 else 's'})" for name, n in counts.items() if n]
        if holding:
            raise Refused(
                f"downgrade to {revision} would drop tables holding rows: {', '.join(holding)};"
                " nothing was changed (--yes drops them)"
            )
    with MigrationProgress("downgrade", revision):
        migrations.downgrade(settings.database_url, revision, _keys(settings))


@db_cli.command("current")
def db_current() -> None:
    """Print the database's revision and the code's head."""
    from app.db import migrations

    current = migrations.current_revision_sync(get_settings().database_url)
    head = migrations.head_revision()
    state = "at head" if current == head else "NOT at head"
    typer.echo(f"database: {current or 'none'}  code head: {head}  ({state})")


@db_cli.command("check")
def db_check() -> None:
    """Fail if the models and the migrations disagree (alembic check), or if not at head."""
    from alembic.util.exc import AutogenerateDiffsDetected, CommandError

    from app.db import migrations

    url = get_settings().database_url
    try:
        migrations.check(url)
    except (AutogenerateDiffsDetected, CommandError) as exc:
        _fail(str(exc).splitlines()[0])
    typer.echo("models and migrations agree; database is at head")


def _keys(settings: Settings) -> list[str]:
    return [key.get_secret_value() for key in settings.secret_key]


@secrets_cli.command("generate-key")
def secrets_generate_key() -> None:
    """Print a new key for AGENT_SERVER_SECRET_KEY."""
    from app.vault.cipher import generate_key

    typer.echo(generate_key())


@secrets_cli.command("rotate")
def secrets_rotate(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would change; change nothing.")
    ] = False,
) -> None:
    """Re-encrypt every conversation's credentials with the first AGENT_SERVER_SECRET_KEY
    (rows sealed with an older key listed after it, or stored unencrypted)."""
    import asyncio

    from app.db.session import Database
    from app.vault.cipher import Cipher, SecretKeyError
    from app.vault.rotate import RotateReport, rotate

    settings = get_settings()
    try:
        cipher = Cipher(settings.secret_key)
    except SecretKeyError as exc:
        _fail(str(exc))
    if not cipher.encrypts:
        _fail("AGENT_SERVER_SECRET_KEY is not set: there is no key to encrypt with")

    def progress(report: RotateReport) -> None:
        typer.echo(f"checked {report.checked}, re-encrypted {report.resealed}", err=True)

    async def run() -> RotateReport:
        db = Database.from_settings(settings)
        try:
            return await rotate(db, cipher, dry_run=dry_run, progress=progress)
        finally:
            await db.dispose()

    report = asyncio.run(run())
    verb = "would re-encrypt" if dry_run else "re-encrypted"
    typer.echo(f"{report.checked} conversations with credentials; {verb} {report.resealed}")
    if report.unreadable:
        ids = ", ".join(str(i) for i in report.unreadable[:20])
        _fail(f"{len(report.unreadable)} could not be decrypted with any key: {ids}")


@import_cli.command("openhands")
def import_openhands(
    path: Annotated[
        Path,
        typer.Argument(
            help="The conversations directory of an OpenHands agent-server (its file store).",
            exists=True,
            file_okay=False,
            dir_okay=True,
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read and check everything; write nothing.")
    ] = False,
    openhands_secret_key: Annotated[
        str | None,
        typer.Option(
            "--openhands-secret-key",
            envvar="OH_SECRET_KEY",
            help="The OpenHands server's secret key (OH_SECRET_KEY, else its session API key):"
            " opens the LLM keys and secrets the store holds encrypted.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Import an OpenHands file store: each conversation with its events becomes rows.
    Safe to run again (it adds nothing twice) and to resume after a kill. Exit status 0: all
    imported; 2: done, but damage or conflicts were found (listed); 1: it could not run (3:
    the database could not be reached)."""
    import asyncio

    from app.db import migrations
    from app.db.session import Database
    from app.importer.report import ImportProgress, print_report
    from app.importer.service import import_store
    from app.vault.cipher import SecretKeyError
    from app.vault.service import Vault

    settings = get_settings()
    try:
        vault = Vault.from_settings(settings)
    except SecretKeyError as exc:
        _fail(str(exc))
    mismatch = migrations.mismatch_at(settings.database_url)
    if mismatch is not None:
        _fail(f"{mismatch} (run `agent-server db upgrade` first)")
    if not vault.cipher.encrypts:
        typer.echo(
            "agent-server: warning: AGENT_SERVER_SECRET_KEY is not set: the credentials"
            " imported are stored unencrypted (`agent-server secrets rotate` encrypts them"
            " once a key is set)",
            err=True,
        )

    async def run() -> Any:
        db = Database.from_settings(settings)
        try:
            with ImportProgress() as progress:
                return await import_store(
                    db,
                    vault,
                    path,
                    dry_run=dry_run,
                    openhands_secret_key=openhands_secret_key,
                    progress=progress.advance,
                )
        finally:
            await db.dispose()

    report = asyncio.run(run())
    print_report(report, dry_run=dry_run)
    if report.all_problems or report.conflicts:
        raise typer.Exit(code=cli_errors.PROBLEMS_FOUND)


cli.command()(prune)


def main() -> None:
    sys.exit(cli_errors.run(typer.main.get_command(cli)))


if __name__ == "__main__":
    main()
