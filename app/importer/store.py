"""Reading an OpenHands agent-server file store: one directory per conversation holding
`base_state.json` (the SDK's ConversationState), maybe `meta.json` (the agent-server's
title, tags and times), and `events/event-NNNNN-<event id>.json`, one SDK event each.

Everything here streams: a conversation's events are read a batch of files at a time, in
file order, and only the file names of one conversation are ever held whole. Damage is
returned as `Problem`s (a missing file in the numbering, an unreadable or truncated file,
JSON that is not an event), never raised: the readable rest still comes through.
"""

import contextlib
import json
import os
import re
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASE_STATE = "base_state.json"
META = "meta.json"
EVENTS_DIR = "events"
EVENT_NAME = re.compile(r"^event-(?P<index>[0-9]{5,12})-(?P<event_id>[0-9A-Za-z\-_]{1,64})\.json$")
MAX_FILE_BYTES = 16 * 1024 * 1024  # a file larger than this is reported, not read
MAX_GAPS = 100  # gaps listed one by one in a conversation; the rest are counted


@dataclass(frozen=True)
class Problem:
    """Damage found in the store: where (a file name, relative to the conversation's
    directory) and what."""

    conversation: str
    file: str
    what: str


@dataclass
class StoredConversation:
    """One conversation directory: its id, its state and meta as read (empty when missing or
    unreadable: reported), and the event files in index order."""

    directory: Path
    id: uuid.UUID
    state: dict[str, Any]
    meta: dict[str, Any]
    event_files: list[tuple[int, str]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _read_bytes(path: Path) -> bytes:
    """A regular file's bytes, at most MAX_FILE_BYTES: never through a symlink (a store is
    untrusted: a link could name any file of this machine), never a FIFO or a device."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise TooLarge("not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read(MAX_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise TooLarge(f"larger than {MAX_FILE_BYTES} bytes")
    return data


class TooLarge(Exception):
    """A file the importer will not read."""


def _read_json(path: Path) -> tuple[Any, str | None]:
    """The JSON in `path`, or why not (missing, a link or not a file, too large, truncated,
    not JSON)."""
    try:
        data = _read_bytes(path)
    except FileNotFoundError:
        return None, "missing"
    except TooLarge as exc:
        return None, str(exc)
    except OSError as exc:  # ELOOP: a symlink; EACCES; ...
        return None, f"unreadable: {exc.strerror or exc}"
    if not data.strip():
        return None, "empty (truncated)"
    try:
        return json.loads(data), None
    except (ValueError, RecursionError) as exc:  # bad UTF-8 is a ValueError too
        return None, f"not valid JSON (truncated or corrupt): {str(exc)[:120]}"


def _conversation_id(directory: Path, state: dict[str, Any]) -> uuid.UUID | None:
    for candidate in (state.get("id"), directory.name):
        try:
            return uuid.UUID(str(candidate))
        except ValueError:
            continue
    return None


def conversations(root: Path) -> Iterator[StoredConversation | Problem]:
    """Every conversation directory under `root` (in name order), or the Problem that makes
    a directory no conversation at all."""
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if not entry.is_dir(follow_symlinks=False):
            continue
        directory = Path(entry.path)
        try:
            if not (directory / BASE_STATE).exists() and not (directory / EVENTS_DIR).is_dir():
                continue  # not a conversation (the store may hold other directories)
        except OSError as exc:
            yield Problem(entry.name, "", f"unreadable: {exc.strerror or exc}")
            continue
        problems: list[Problem] = []
        state, why = _read_json(directory / BASE_STATE)
        if why is not None or not isinstance(state, dict):
            problems.append(Problem(entry.name, BASE_STATE, why or "not a JSON object"))
            state = {}
        meta, why = _read_json(directory / META)
        if why not in (None, "missing") or (meta is not None and not isinstance(meta, dict)):
            problems.append(Problem(entry.name, META, why or "not a JSON object"))
        conversation_id = _conversation_id(directory, state)
        if conversation_id is None:
            yield Problem(entry.name, BASE_STATE, "no conversation id (state id or directory)")
            continue
        stored = StoredConversation(
            directory, conversation_id, state, meta if isinstance(meta, dict) else {}
        )
        stored.problems = problems
        _index_events(stored)
        yield stored


def _index_events(stored: StoredConversation) -> None:
    """The event files in index order; a gap in the numbering and a stray name are
    problems."""
    events = stored.directory / EVENTS_DIR
    name = stored.directory.name
    if events.is_symlink() or not events.is_dir():
        if events.is_symlink():
            stored.problems.append(Problem(name, EVENTS_DIR, "a symlink: not followed"))
        return
    found: list[tuple[int, str]] = []
    try:
        entries = list(os.scandir(events))
    except OSError as exc:
        stored.problems.append(Problem(name, EVENTS_DIR, f"unreadable: {exc.strerror or exc}"))
        return
    for entry in entries:
        match = EVENT_NAME.match(entry.name)
        if match is None:
            if entry.name.endswith(".json"):
                stored.problems.append(
                    Problem(name, f"{EVENTS_DIR}/{entry.name}", "not an event file name")
                )
            continue
        found.append((int(match["index"]), entry.name))
    found.sort()
    expected, gaps = 0, 0
    for index, _ in found:
        if index > expected:
            gaps += 1
            if gaps <= MAX_GAPS:
                files = f"event-{expected:05d}" + (
                    f"..{index - 1:05d}-*.json" if index - 1 > expected else "-*.json"
                )
                what = f"missing (a gap of {index - expected})"
                stored.problems.append(Problem(name, f"{EVENTS_DIR}/{files}", what))
        expected = max(expected, index + 1)
    if gaps > MAX_GAPS:
        stored.problems.append(Problem(name, EVENTS_DIR, f"{gaps - MAX_GAPS} more gaps"))
    stored.event_files = found


def read_events(
    stored: StoredConversation, start: int, count: int, max_bytes: int = 32 * 1024 * 1024
) -> list[tuple[str, dict[str, Any] | None, str | None]]:
    """Up to `count` event files from the start-th on (in index order), fewer when they hold
    more than `max_bytes` together (at least one): per file, its name and its JSON object,
    or None and why it cannot be read. Blocking: off the loop."""
    out: list[tuple[str, dict[str, Any] | None, str | None]] = []
    read = 0
    for _, file_name in stored.event_files[start : start + count]:
        if out and read > max_bytes:
            break
        path = stored.directory / EVENTS_DIR / file_name
        with contextlib.suppress(OSError):
            read += path.lstat().st_size
        value, why = _read_json(path)
        if why is None and not isinstance(value, dict):
            why = "not a JSON object"
        out.append((f"{EVENTS_DIR}/{file_name}", value if why is None else None, why))
    return out
