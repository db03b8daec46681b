"""Bash commands run in the background for the OpenHands SDK's RemoteWorkspace.

A command is started with `bash -c` in its own session (so its process group can be
signalled as one), in a directory inside the workspace root, with the server's environment
minus every AGENT_SERVER_* variable. Its output is read as it arrives and kept as numbered
BashOutput events (`order` 0, 1, 2...); the last one carries the exit code, -1 when the
command outlived its timeout (its process group gets SIGTERM, then SIGKILL). When the shell
exits, whatever it left running in its process group is killed: a command's background jobs
do not outlive it, and a stopped server leaves no child behind (`close`).

Everything lives in memory, per process, and is gone on restart: at most MAX_LIVE_COMMANDS
run at once (more is 429), at most MAX_KEPT_COMMANDS are kept (the oldest finished one is
dropped for a new one), and of each command's output only the newest MAX_OUTPUT_CHARS
characters in at most MAX_OUTPUT_EVENTS events (older events are dropped whole).

Every event also gets a process-wide sequence number, its position in time: search pages are
keyset pages on it (`page_id` is the first sequence number of the next page).

Stripping AGENT_SERVER_* is defense in depth: a command runs as the server's user and could
read the server's /proc/<pid>/environ or its .env file.
"""

import asyncio
import codecs
import contextlib
import heapq
import itertools
import logging
import os
import shutil
import signal
import stat
import uuid
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, NamedTuple

from app.clock import utcnow
from app.errors import AppError, BadRequest, NotFound, ServiceUnavailable
from app.vault.env import without_reserved
from app.workspace.paths import WorkspacePathError, resolve
from app.workspace.schemas import (
    BashCommandCreate,
    BashCommandRead,
    BashEventKind,
    BashEventPage,
    BashOutputRead,
)

logger = logging.getLogger(__name__)

MAX_LIVE_COMMANDS = 16
MAX_KEPT_COMMANDS = 64
MAX_OUTPUT_CHARS = 1024 * 1024
MAX_OUTPUT_EVENTS = 1000
READ_BYTES = 64 * 1024
KILL_GRACE_SECONDS = 2.0  # between SIGTERM and SIGKILL, and for the kill to take
PIPE_GRACE_SECONDS = 1.0  # for the pipes to drain once the process group is gone
SHUTDOWN_SECONDS = 5.0
# Found once, at import: `which` reads directories.
SHELL = shutil.which("bash") or "/bin/sh"

Channel = Literal["stdout", "stderr"]


class TerminalDisabled(AppError):
    status_code = 403
    code = "forbidden"


class TooManyCommands(AppError):
    status_code = 429
    code = "too_many_requests"


def child_environment() -> dict[str, str]:
    """The environment of a command: the server's, without its own settings (the secret key,
    the LLM API key, the session API keys are all AGENT_SERVER_* variables)."""
    return without_reserved(os.environ)


def working_directory(root: Path, client_cwd: str | None) -> Path:
    """The directory a command runs in: the client's `cwd` inside the workspace root (the
    root itself by default, made if missing). Blocking: run it off the loop."""
    root.mkdir(parents=True, exist_ok=True)
    path = resolve(root, client_cwd or "/")
    try:
        is_directory = stat.S_ISDIR(path.stat().st_mode)
    except OSError:  # missing, or a name too long to look up
        is_directory = False
    if not is_directory:
        raise WorkspacePathError(f"cwd {client_cwd!r} is not a directory in the workspace")
    return path


class _Stored(NamedTuple):
    seq: int
    order: int  # -1 for the command itself
    event: BashCommandRead | BashOutputRead


@dataclass(eq=False)
class _Command:
    record: BashCommandRead
    seq: int
    timeout_seconds: float
    outputs: list[_Stored] = field(default_factory=list)  # ascending seq and order
    kept_chars: int = 0
    next_order: int = 0
    finished: bool = False
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    task: "asyncio.Task[None] | None" = None

    def add_output(
        self, seq: int, channel: Channel | None, text: str | None, exit_code: int | None = None
    ) -> None:
        event = BashOutputRead(
            id=uuid.uuid4(),
            timestamp=utcnow(),
            command_id=self.record.id,
            order=self.next_order,
            exit_code=exit_code,
            stdout=text if channel == "stdout" else None,
            stderr=text if channel == "stderr" else None,
        )
        self.outputs.append(_Stored(seq, self.next_order, event))
        self.next_order += 1
        self.kept_chars += len(text or "")
        # The newest event (the final one, with the exit code, at the end) is always kept.
        while len(self.outputs) > 1 and (
            self.kept_chars > MAX_OUTPUT_CHARS or len(self.outputs) > MAX_OUTPUT_EVENTS
        ):
            dropped = self.outputs.pop(0).event
            assert isinstance(dropped, BashOutputRead)
            self.kept_chars -= len(dropped.stdout or "") + len(dropped.stderr or "")


@dataclass(frozen=True)
class BashSearch:
    kind: BashEventKind | None = None
    command_id: uuid.UUID | None = None
    order_gt: int | None = None  # BashOutput events only, as in OpenHands
    timestamp_gte: datetime | None = None
    timestamp_lt: datetime | None = None
    descending: bool = False
    page_id: str | None = None
    limit: int = 100


def _page_seq(page_id: str | None) -> int | None:
    if page_id is None:
        return None
    if not (page_id.isascii() and page_id.isdigit() and len(page_id) <= 19):
        raise BadRequest(f"page_id {page_id[:40]!r} is not a page id this server gave")
    return int(page_id)


def _matching(entry: _Command, query: BashSearch, start: int | None) -> list[_Stored]:
    """An entry's events that pass the kind, command and order filters and are on or after
    the page start (`start`, a sequence number), ascending."""
    found: list[_Stored] = []
    # As in OpenHands, command_id__eq selects outputs only.
    if query.kind != BashEventKind.BASH_OUTPUT and query.command_id is None:
        found.append(_Stored(entry.seq, -1, entry.record))
    if query.kind != BashEventKind.BASH_COMMAND:
        first = 0
        if query.order_gt is not None:
            first = bisect_right(entry.outputs, query.order_gt, key=lambda s: s.order)
        found += entry.outputs[first:]
    if start is not None:
        found = [s for s in found if (s.seq <= start if query.descending else s.seq >= start)]
    return found


def _utc(moment: datetime | None) -> datetime | None:
    """A bound that can be compared with event times: one without a time zone is UTC. (Aware
    times compare across zones as they are; converting could overflow at year 1 or 9999.)"""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _in_window(query: BashSearch, events: Iterator[_Stored]) -> Iterator[_Stored]:
    gte, lt = _utc(query.timestamp_gte), _utc(query.timestamp_lt)
    for stored in events:
        timestamp = stored.event.timestamp
        if gte is not None and timestamp < gte:
            continue
        if lt is not None and timestamp >= lt:
            continue
        yield stored


def _signal_group(process: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    # start_new_session: the shell leads its own process group, whose id is its pid. Once the
    # shell is reaped the group lives on while any member does, so the id is not reused.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


async def _terminate(process: asyncio.subprocess.Process) -> None:
    """SIGTERM to the process group (traps may clean up), SIGKILL if the shell outlives it."""
    _signal_group(process, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), KILL_GRACE_SECONDS)
        return
    except TimeoutError:
        pass
    _signal_group(process, signal.SIGKILL)
    try:
        await asyncio.wait_for(process.wait(), KILL_GRACE_SECONDS)
    except TimeoutError:
        logger.error("bash command process %s did not die on SIGKILL", process.pid)


class CommandRunner:
    """The bash commands of this process: start, search their events, stop, close."""

    def __init__(self) -> None:
        self._commands: OrderedDict[uuid.UUID, _Command] = OrderedDict()
        self._seq = itertools.count(1)
        self._live = 0
        self._closed = False

    async def start(self, root: Path, body: BashCommandCreate) -> BashCommandRead:
        """Start a command in the background; its BashCommand event."""
        cwd = await asyncio.to_thread(working_directory, root, body.cwd)
        # From here to create_task nothing awaits: the checks and the count are one step.
        if self._closed:
            raise ServiceUnavailable("the server is shutting down")
        if self._live >= MAX_LIVE_COMMANDS:
            raise TooManyCommands(
                f"{MAX_LIVE_COMMANDS} bash commands are running; retry when one has ended",
                headers={"Retry-After": "1"},
            )
        record = BashCommandRead(
            id=uuid.uuid4(),
            timestamp=utcnow(),
            command=body.command,
            cwd=body.cwd,
            timeout=body.timeout,
        )
        entry = _Command(record, next(self._seq), float(body.timeout))
        self._evict()
        self._commands[record.id] = entry
        self._live += 1
        entry.task = asyncio.create_task(self._run(entry, cwd), name=f"bash-{record.id}")
        return record

    def _evict(self) -> None:
        """Make room for one more command by dropping the oldest finished ones."""
        while len(self._commands) >= MAX_KEPT_COMMANDS:
            oldest = next((cid for cid, c in self._commands.items() if c.finished), None)
            if oldest is None:  # cannot happen while MAX_LIVE_COMMANDS < MAX_KEPT_COMMANDS
                return
            del self._commands[oldest]

    def search(self, query: BashSearch) -> BashEventPage:
        """One page of events, in time order (or reversed), after the filters."""
        start = _page_seq(query.page_id)
        if query.command_id is None:
            entries: Iterable[_Command] = self._commands.values()
        else:
            entry = self._commands.get(query.command_id)
            entries = [] if entry is None else [entry]
        lists = [_matching(entry, query, start) for entry in entries]
        if query.descending:
            merged = heapq.merge(*(reversed(x) for x in lists), key=_seq, reverse=True)
        else:
            merged = heapq.merge(*lists, key=_seq)
        page = list(itertools.islice(_in_window(query, merged), query.limit + 1))
        next_page_id = str(page[query.limit].seq) if len(page) > query.limit else None
        return BashEventPage(
            items=[s.event for s in page[: query.limit]], next_page_id=next_page_id
        )

    async def stop(self, command_id: uuid.UUID) -> None:
        """Terminate a running command and wait (a few seconds at most) for it to end; a
        finished one is left as it is."""
        entry = self._commands.get(command_id)
        if entry is None:
            raise NotFound(f"no bash command {command_id}")
        entry.stop_requested.set()
        if entry.task is not None and not entry.task.done():
            await asyncio.wait({entry.task}, timeout=2 * KILL_GRACE_SECONDS + PIPE_GRACE_SECONDS)

    async def close(self) -> None:
        """Kill every running command (server shutdown); no new one starts."""
        self._closed = True
        tasks = [c.task for c in self._commands.values() if c.task and not c.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_SECONDS)

    async def _run(self, entry: _Command, cwd: Path) -> None:
        exit_code, note = -1, None
        try:
            exit_code, note = await self._execute(entry, cwd)
        except Exception:
            logger.exception("bash command %s failed", entry.record.id)
            note = "the command failed in the server"
        finally:  # cancelled too (server shutdown): the command still ends, with -1
            entry.add_output(next(self._seq), "stderr" if note else None, note, exit_code)
            entry.finished = True
            self._live -= 1

    async def _execute(self, entry: _Command, cwd: Path) -> tuple[int, str | None]:
        """Run the command to its end; its exit code and a note for stderr."""
        try:
            process = await asyncio.create_subprocess_exec(
                SHELL,
                "-c",
                entry.record.command,
                cwd=cwd,
                env=child_environment(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            return -1, f"the command could not start: {exc}"
        assert process.stdout is not None and process.stderr is not None
        pumps = [
            asyncio.create_task(self._pump(entry, process.stdout, "stdout")),
            asyncio.create_task(self._pump(entry, process.stderr, "stderr")),
        ]
        try:
            return await self._wait(entry, process)
        finally:
            # What the shell left running goes with it (also when this task is cancelled).
            _signal_group(process, signal.SIGKILL)
            _, pending = await asyncio.wait(pumps, timeout=PIPE_GRACE_SECONDS)
            for pump in pending:  # a pipe held open by a process that left the group
                pump.cancel()

    async def _wait(
        self, entry: _Command, process: asyncio.subprocess.Process
    ) -> tuple[int, str | None]:
        exited = asyncio.ensure_future(process.wait())
        stopped = asyncio.ensure_future(entry.stop_requested.wait())
        try:
            await asyncio.wait(
                {exited, stopped},
                timeout=entry.timeout_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            stopped.cancel()
            exited.cancel()
        if process.returncode is not None:
            return process.returncode, None
        await _terminate(process)
        if entry.stop_requested.is_set():  # as in OpenHands: the signal's exit code (-15)
            return (-1 if process.returncode is None else process.returncode), None
        return -1, f"Command timed out after {entry.timeout_seconds:g} seconds"

    async def _pump(self, entry: _Command, stream: asyncio.StreamReader, channel: Channel) -> None:
        """Keep what a pipe gives as output events, as it arrives."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while True:
            chunk = await stream.read(READ_BYTES)
            text = decoder.decode(chunk, final=not chunk)
            if text:
                entry.add_output(next(self._seq), channel, text)
            if not chunk:
                return


def _seq(stored: _Stored) -> int:
    return stored.seq
