"""How the `agent-server` command ends: its exit status, and one line on stderr on failure.

Exit statuses:
  0    done
  1    a usage mistake, another expected failure (an unknown revision, models and migrations
       that disagree, a database not at the code's revision, ...) or an unexpected error
       (one line naming its type; `--verbose` prints the traceback as well)
  2    `import openhands`: done, but damage or conflicts were found (listed)
  3    the database cannot be reached: connection refused, unknown host, timeout, failed
       authentication, no such database, an SQLite file that cannot be opened
  4    refused for safety: `db downgrade` would drop tables holding rows (`--yes` allows it)
  130  interrupted (Ctrl-C)

No secret reaches the output: the database URL is shown with its password hidden, and the
password and every other secret setting are masked in any message or traceback printed.
"""

import socket
import sqlite3
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, quote_plus

import typer
from pydantic import SecretStr, ValidationError

from app.config import get_settings

OK = 0
ERROR = 1
PROBLEMS_FOUND = 2
UNREACHABLE = 3
REFUSED = 4
INTERRUPTED = 130

# SQLSTATE classes and codes that mean "cannot get a working connection": 08 connection
# exception, 28 invalid authorization, 3D000 no such database, 53300 too many connections,
# 57P03 cannot connect now (starting up or shutting down).
_PG_UNREACHABLE = ("08", "28", "3D000", "53300", "57P03")


class CliError(Exception):
    """An expected failure: its message is the line printed, `exit_code` the status."""

    exit_code = ERROR


class Refused(CliError):
    """The command would destroy data the user has not agreed to lose."""

    exit_code = REFUSED


@dataclass
class Options:
    """Set by the top-level command's options before a subcommand runs."""

    verbose: bool = False


options = Options()


class _Command(Protocol):
    """What typer.main.get_command returns (a command of typer's own copy of click)."""

    def main(self, *, args: Sequence[str] | None, prog_name: str, standalone_mode: bool) -> Any: ...


def run(command: _Command, args: Sequence[str] | None = None) -> int:
    """Run the command (typer.main.get_command(app)) and return its exit status, having
    printed one line for any failure."""
    threading.excepthook = _drop_late_aiosqlite_handback
    try:
        result = command.main(args=args, prog_name="agent-server", standalone_mode=False)
    except typer.TyperException as exc:
        # click's usage errors (typer's copy of click names no other public base class)
        if type(exc).__name__ == "NoArgsIsHelpError":
            # The help is the message, or typer's rich formatter has printed it already.
            if exc.format_message().strip():
                typer.echo(exc.format_message(), err=True)
            return ERROR
        message = exc.format_message()
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            message = f"{message} (see `{ctx.command_path} --help`)"
        _print_line(message)
        return ERROR
    except typer.Abort:
        _print_line("aborted")
        return ERROR
    except KeyboardInterrupt:
        return INTERRUPTED
    except Exception as exc:
        code, message = describe(exc)
        if options.verbose:
            trace = "".join(traceback.format_exception(exc))
            sys.stderr.write(_masked(trace))
        _print_line(message)
        return code
    # standalone_mode=False returns the status of a typer.Exit, else the command's result.
    return result if isinstance(result, int) else OK


def describe(exc: Exception) -> tuple[int, str]:
    """The exit status and the one line for an exception a command raised."""
    if isinstance(exc, CliError):
        return exc.exit_code, str(exc)
    cause = next((e for e in _causes(exc) if _is_unreachable(e)), None)
    if cause is not None:
        detail = _first_line(cause) or type(cause).__name__
        if isinstance(cause, OSError):
            detail = f"{type(cause).__name__}: {detail}"
        return UNREACHABLE, f"cannot reach the database{_shown_url()}: {detail}"
    # alembic is imported here, not at start: `serve` would pay for it before listening.
    from alembic.script.revision import RevisionError
    from alembic.util.exc import CommandError

    if isinstance(exc, (CommandError, RevisionError)):
        return ERROR, _first_line(exc)
    if isinstance(exc, ValidationError) and exc.title == "Settings":
        return ERROR, _settings_message(exc)
    return ERROR, f"{type(exc).__name__}: {_first_line(exc)} (--verbose shows the traceback)"


def _print_line(message: str) -> None:
    one_line = " ".join(_masked(message).split())
    sys.stderr.write(f"agent-server: {one_line}\n")
    sys.stderr.flush()


def _first_line(exc: BaseException) -> str:
    """The first non-blank line of the message (SQLAlchemy's carry the SQL and a link after)."""
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), "")


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """exc, then what it wraps: a DBAPI error's `orig`, and each `raise ... from` cause."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__


def _is_unreachable(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | socket.gaierror | TimeoutError):
        return True
    sqlstate = getattr(exc, "sqlstate", None)  # asyncpg's errors
    if isinstance(sqlstate, str) and sqlstate.startswith(_PG_UNREACHABLE):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return (
        isinstance(exc, sqlite3.Error)
        and isinstance(code, int)
        and code & 0xFF == sqlite3.SQLITE_CANTOPEN
    )


def _settings_message(exc: ValidationError) -> str:
    """The first invalid setting by its environment variable (never its value: it may be a
    secret)."""
    errors = exc.errors()
    first = errors[0]
    name = "_".join(str(part) for part in first["loc"]).upper()
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"invalid setting AGENT_SERVER_{name}: {first['msg']}{more}"


def _shown_url() -> str:
    from sqlalchemy.engine import make_url

    try:
        url = make_url(get_settings().database_url)
    except Exception:
        return ""
    return f" {url.render_as_string(hide_password=True)}"


def _secrets() -> list[str]:
    """What no output may show: the database password (as given and URL-encoded) and every
    secret setting."""
    try:
        settings = get_settings()
    except Exception:
        return []
    from sqlalchemy.engine import make_url

    found: list[str] = []
    try:
        password = make_url(settings.database_url).password
    except Exception:
        password = None
    if password:
        found += [password, quote(password, safe=""), quote_plus(password)]
    for value in settings.model_dump().values():
        items: list[Any] = value if isinstance(value, list) else [value]
        found += [v.get_secret_value() for v in items if isinstance(v, SecretStr)]
    # Longest first, so that a secret containing another is masked whole.
    return sorted({s for s in found if s}, key=len, reverse=True)


def _masked(text: str) -> str:
    for secret in _secrets():
        text = text.replace(secret, "***")
    return text


_default_excepthook = threading.excepthook


def _drop_late_aiosqlite_handback(args: threading.ExceptHookArgs) -> None:
    """aiosqlite stops a connection that failed to open with a call whose result it never
    awaits; once asyncio.run has closed its loop (the error on its way to the user), its worker
    thread fails to hand that result back ("Event loop is closed") and Python prints the
    thread's traceback after our one line. Only that case is dropped."""
    thread_name = args.thread.name if args.thread is not None else ""
    if (
        isinstance(args.exc_value, RuntimeError)
        and str(args.exc_value) == "Event loop is closed"
        and "_connection_worker_thread" in thread_name
    ):
        return
    _default_excepthook(args)
