"""Importing an OpenHands agent-server file store (store.py reads it) into the database.

Each conversation becomes a row with its id, title, tags, agent (credentials sealed by the
vault, as for a created conversation), status, stats and settings; each readable event a row
with its id, timestamp, kind, source and payload, in file order, a batch of BATCH events per
short transaction (the counts and the search index follow in the same transaction).

Idempotent and resumable: an imported conversation remembers, in its `options`, where it
came from and the next file to read, updated in the transaction of each batch. A second run
reads nothing more; a run killed mid-way goes on from the last committed batch. A
conversation that exists and was not imported from that directory is reported as a
conflict and left alone.
"""

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.exc import IntegrityError

from app.clock import utcnow
from app.conversations import repository as conversations
from app.conversations.sdk_schemas import OPTION_FIELDS
from app.db.session import Database
from app.events import service as events_service
from app.events.schemas import EVENT_KINDS, AnyEvent, EventBase
from app.importer.credentials import StoreKeys, open_agent, open_secrets
from app.importer.store import Problem, StoredConversation, read_events
from app.importer.store import conversations as stored_in
from app.models import ExecutionStatus
from app.models.conversation import NEVER_CONFIRM
from app.vault import env, specs
from app.vault.service import Vault

BATCH = 1000
SOURCE = "openhands-file-store"
EVENT = TypeAdapter(AnyEvent)
# The SDK's statuses this server has no equal of, as an imported conversation shows them.
STATUSES = {
    "running": ExecutionStatus.PAUSED,  # its run stopped with the move: nothing runs it here
    "stuck": ExecutionStatus.ERROR,
}


@dataclass
class ConversationReport:
    id: uuid.UUID | None
    directory: str
    outcome: str = "imported"  # imported | resumed | unchanged | conflict | would import
    events_in_store: int = 0
    events_imported: int = 0
    problems: list[Problem] = field(default_factory=list)


@dataclass
class ImportReport:
    conversations: list[ConversationReport] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    events_imported: int = 0
    seconds: float = 0.0

    @property
    def all_problems(self) -> list[Problem]:
        return self.problems + [p for c in self.conversations for p in c.problems]

    @property
    def conflicts(self) -> list[ConversationReport]:
        return [c for c in self.conversations if c.outcome == "conflict"]


Progress = Callable[[str, int], None]  # (what: "conversation" | "events", how many)


async def import_store(
    db: Database,
    vault: Vault,
    root: Path,
    *,
    dry_run: bool = False,
    openhands_secret_key: str | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Import every conversation of the store at `root`; see the module's docstring.
    `openhands_secret_key` opens the credentials the store holds encrypted."""
    keys = StoreKeys(openhands_secret_key)
    started = time.perf_counter()
    report = ImportReport()
    found = stored_in(root)  # one conversation's file names in memory at a time
    while (item := await asyncio.to_thread(next, found, None)) is not None:
        if isinstance(item, Problem):
            report.problems.append(item)
            continue
        one = await _import_conversation(db, vault, keys, item, dry_run, progress)
        report.conversations.append(one)
        report.events_imported += one.events_imported
        if progress is not None:
            progress("conversation", 1)
    report.seconds = time.perf_counter() - started
    return report


def _aware(value: Any) -> datetime | None:
    """A stored time as an aware UTC datetime (naive ones are read as UTC); None if it is
    not a time."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _tags(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k)[:64]: str(v)[:256] for k, v in list(value.items())[:50] if str(k)}


def _row(
    stored: StoredConversation, vault: Vault, keys: StoreKeys, now: datetime
) -> tuple[dict[str, Any], list[Problem]]:
    """The conversation's row before its events (last_seq 0), and what could not be
    carried over (credentials that cannot be opened)."""
    state, meta = stored.state, stored.meta
    problems: list[Problem] = []
    where = stored.directory.name
    agent = state.get("agent") if isinstance(state.get("agent"), dict) else None
    agent = open_agent(agent or {"kind": "Agent", "llm": {}}, keys, where, problems)
    public, secrets = specs.conceal(agent)
    secrets = env.merge_env(secrets, open_secrets(state, keys, where, problems))
    status = str(state.get("execution_status") or "idle")
    known = {s.value for s in ExecutionStatus}
    shown = STATUSES.get(status, ExecutionStatus(status) if status in known else None)
    options = {key: state[key] for key in OPTION_FIELDS if key in state}
    options["imported_from"] = {"source": SOURCE, "directory": stored.directory.name, "next": 0}
    title = meta.get("title") if isinstance(meta.get("title"), str) else state.get("title")
    stats = state.get("stats")
    policy = state.get("confirmation_policy")
    analyzer = state.get("security_analyzer")
    max_iterations = state.get("max_iterations")
    return {
        "id": stored.id,
        "title": title[:512] if isinstance(title, str) else None,
        "tags": _tags(meta.get("tags", state.get("tags"))),
        "agent": public,
        "secrets": vault.cipher.seal(secrets),
        "execution_status": (shown or ExecutionStatus.IDLE).value,
        "max_iterations": max_iterations if isinstance(max_iterations, int) else 500,
        "stats": stats if isinstance(stats, dict) else {},
        "confirmation_policy": policy if isinstance(policy, dict) else dict(NEVER_CONFIRM),
        "security_analyzer": analyzer if isinstance(analyzer, dict) else None,
        "options": options,
        "last_seq": 0,
        "version": 1,
        "created_at": _aware(meta.get("created_at")) or now,
        "updated_at": _aware(meta.get("updated_at")) or now,
    }, problems


def _event(
    name: str, value: dict[str, Any], last: datetime | None, problems: list[Problem], where: str
) -> EventBase | None:
    """The event of one file, or None (the problem recorded) when it cannot be imported."""
    kind = value.get("kind")
    if kind not in EVENT_KINDS:
        problems.append(Problem(where, name, f"unknown event kind {str(kind)[:64]!r}"))
        return None
    try:
        event: EventBase = EVENT.validate_python(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        at = ".".join(str(p) for p in first["loc"])
        problems.append(Problem(where, name, f"not a valid {kind}: {at}: {first['msg']}"[:200]))
        return None
    moment = _aware(event.timestamp) or last or utcnow()
    event.timestamp = max(moment, last) if last is not None else moment
    return event


async def _import_conversation(
    db: Database,
    vault: Vault,
    keys: StoreKeys,
    stored: StoredConversation,
    dry_run: bool,
    progress: Progress | None,
) -> ConversationReport:
    report = ConversationReport(
        stored.id, stored.directory.name, events_in_store=len(stored.event_files)
    )
    report.problems.extend(stored.problems)
    row, lost = _row(stored, vault, keys, utcnow())
    report.problems.extend(lost)
    origin = row["options"]["imported_from"]
    async with db.session(write=False) as session:
        existing = await conversations.get(session, stored.id)
    if existing is not None:
        previous = (existing.options or {}).get("imported_from")
        same = isinstance(previous, dict) and all(
            previous.get(k) == origin[k] for k in ("source", "directory")
        )
        if not isinstance(previous, dict) or not same:
            report.outcome = "conflict"
            return report
        origin = {**origin, "next": int(previous.get("next", 0))}
        report.outcome = "resumed" if origin["next"] < len(stored.event_files) else "unchanged"
        last = existing.last_event_at
    else:
        if dry_run:
            report.outcome = "would import"
        else:
            async with db.session(write=True) as session:
                await conversations.insert_if_absent(session, row)
        last = None
    start = origin["next"]
    where = stored.directory.name
    while start < len(stored.event_files):
        files = await asyncio.to_thread(read_events, stored, start, BATCH)
        batch: list[EventBase] = []
        for name, value, why in files:
            if value is None:
                report.problems.append(Problem(where, name, why or "unreadable"))
                continue
            event = _event(name, value, last, report.problems, where)
            if event is not None:
                batch.append(event)
                last = event.timestamp
        start += len(files)
        if not dry_run:
            batch = await _write(db, stored.id, batch, {**origin, "next": start}, row, report)
        report.events_imported += len(batch)
        if progress is not None:
            progress("events", len(files))
    return report


async def _write(
    db: Database,
    conversation_id: uuid.UUID,
    batch: list[EventBase],
    origin: dict[str, Any],
    row: dict[str, Any],
    report: ConversationReport,
) -> list[EventBase]:
    """One batch in one transaction, with the conversation's place in the store; an event
    id already stored in the conversation is reported and left out (the batch retried)."""
    options = {**row["options"], "imported_from": origin}
    if not batch:  # only damaged files: remember the place all the same
        async with db.session(write=True) as session:
            await conversations.update_fields(
                session, conversation_id, {"options": options}, None, utcnow()
            )
        return batch
    try:
        async with db.session(write=True) as session:
            await events_service.import_events(
                session, conversation_id, batch, conversation_values={"options": options}
            )
        return batch
    except IntegrityError:
        pass
    async with db.session(write=True) as session:
        taken = await events_service.existing_ids(session, conversation_id, [e.id for e in batch])
        seen: set[str] = set()
        kept = []
        for event in batch:
            if event.id in taken or event.id in seen:
                report.problems.append(
                    Problem(report.directory, event.id, "an event id seen before: left out")
                )
            else:
                seen.add(event.id)
                kept.append(event)
        await events_service.import_events(
            session, conversation_id, kept, conversation_values={"options": options}
        )
    return kept
