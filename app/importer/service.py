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
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError

from app.clock import utcnow
from app.conversations import repository as conversations
from app.db.session import Database
from app.events import service as events_service
from app.events.schemas import EventBase
from app.events.service import storable
from app.importer import mapping
from app.importer.credentials import StoreKeys
from app.importer.store import Problem, StoredConversation, read_events
from app.importer.store import conversations as stored_in
from app.vault.cipher import UnreadableSecrets
from app.vault.repository import sealed_of
from app.vault.service import Vault

BATCH = 1000


@dataclass
class ConversationReport:
    id: uuid.UUID | None
    directory: str
    # imported | resumed | unchanged | conflict | would import | failed
    outcome: str = "imported"
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
    where = storable(str(await asyncio.to_thread(root.resolve)))
    found = stored_in(root)  # one conversation's file names in memory at a time
    while (item := await asyncio.to_thread(next, found, None)) is not None:
        if isinstance(item, Problem):
            report.problems.append(item)
            continue
        if progress is not None:
            progress("total", len(item.event_files))
        try:
            one = await _import_conversation(db, vault, keys, where, item, dry_run, progress)
        except Exception as exc:  # one conversation's failure is reported, the rest go on
            one = ConversationReport(item.id, storable(item.directory.name), outcome="failed")
            one.problems.append(
                Problem(one.directory, "", storable(f"{type(exc).__name__}: {exc}")[:300])
            )
        report.conversations.append(one)
        report.events_imported += one.events_imported
        if progress is not None:
            progress("conversation", 1)
    report.seconds = time.perf_counter() - started
    return report


async def _import_conversation(
    db: Database,
    vault: Vault,
    keys: StoreKeys,
    root: str,
    stored: StoredConversation,
    dry_run: bool,
    progress: Progress | None,
) -> ConversationReport:
    row, plain, lost = mapping.row(stored, vault, keys, root, utcnow())
    where = row["options"]["imported_from"]["directory"]
    report = ConversationReport(stored.id, where, events_in_store=len(stored.event_files))
    report.problems.extend(stored.problems + lost)
    origin = row["options"]["imported_from"]
    async with db.session(write=False) as session:
        existing = await conversations.get(session, stored.id)
    last: datetime | None = None
    if existing is not None:
        previous = (existing.options or {}).get("imported_from")
        if not isinstance(previous, dict) or any(
            previous.get(k) != origin[k] for k in ("source", "root", "directory")
        ):
            report.outcome = "conflict"
            return report
        if existing.last_seq != previous.get("seq", existing.last_seq):
            report.outcome = "conflict"  # it went on here after the import: never merged
            report.problems.append(
                Problem(where, "", "the conversation went on here after its import: left as is")
            )
            return report
        origin = {**origin, "next": int(previous.get("next", 0)), "seq": existing.last_seq}
        report.outcome = "resumed" if origin["next"] < len(stored.event_files) else "unchanged"
        last = existing.last_event_at
        if not dry_run:
            await _restore_credentials(db, vault, stored.id, plain)
    elif dry_run:
        report.outcome = "would import"
    else:
        async with db.session(write=True) as session:
            await conversations.insert_if_absent(session, row)
    start, moved = origin["next"], 0
    while start < len(stored.event_files):
        files = await asyncio.to_thread(read_events, stored, start, BATCH)
        batch: list[EventBase] = []
        for name, value, why in files:
            if value is None:
                report.problems.append(Problem(where, name, why or "unreadable"))
                continue
            event, was_moved = mapping.event(name, value, last, where, report.problems)
            if event is not None:
                batch.append(event)
                last = event.timestamp
                moved += was_moved
        start += len(files)
        if not dry_run:
            origin = {**origin, "next": start}
            batch = await _write(db, stored.id, batch, origin, row, report)
            origin["seq"] += len(batch)
        report.events_imported += len(batch)
        if progress is not None:
            progress("events", len(files))
    if moved:
        report.problems.append(
            Problem(where, "events", f"{moved} events older than the one before: given its time")
        )
    if not dry_run and report.events_imported:
        updated = mapping.aware(stored.meta.get("updated_at"))
        if updated is not None:  # the batches set it to their last event's time
            async with db.session(write=True) as session:
                await conversations.update_fields(session, stored.id, {}, None, updated)
    return report


async def _restore_credentials(
    db: Database, vault: Vault, conversation_id: uuid.UUID, fresh: dict[str, Any]
) -> None:
    """A re-run may open credentials an earlier one could not (given the store's key now):
    those missing here are added; none set here since is replaced."""
    async with db.session(write=True) as session:
        await conversations.lock_conversation(session, conversation_id)
        found = await sealed_of(session, conversation_id)
        if found is None:
            return
        try:
            current = vault.cipher.open(found[0])
        except UnreadableSecrets:
            return
        merged = {
            part: {**(fresh.get(part) or {}), **(current.get(part) or {})}
            for part in {*fresh, *current}
        }
        merged = {part: values for part, values in merged.items() if values}
        if merged != current:
            await conversations.update_fields(
                session, conversation_id, {"secrets": vault.cipher.seal(merged)}, None, utcnow()
            )


def _options(row: dict[str, Any], origin: dict[str, Any], inserted: int) -> dict[str, Any]:
    """The conversation's options after a batch of `inserted` events: its place in the store
    and the last_seq the batch leaves (a later difference means it went on here)."""
    return {**row["options"], "imported_from": {**origin, "seq": origin["seq"] + inserted}}


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
    if not batch:  # only damaged files: remember the place all the same
        async with db.session(write=True) as session:
            await conversations.update_fields(
                session, conversation_id, {"options": _options(row, origin, 0)}, None, utcnow()
            )
        return batch
    try:
        async with db.session(write=True) as session:
            values = {"options": _options(row, origin, len(batch))}
            await events_service.import_events(
                session, conversation_id, batch, conversation_values=values
            )
        return batch
    except IntegrityError:
        pass
    async with db.session(write=True) as session:
        ids = [e.id for e in batch]
        taken = await events_service.existing_ids(session, conversation_id, ids)
        seen: set[str] = set()
        kept = []
        for event in batch:
            if event.id in taken or event.id in seen:
                what = "an event id seen before: left out"
                report.problems.append(Problem(report.directory, storable(event.id), what))
            else:
                seen.add(event.id)
                kept.append(event)
        values = {"options": _options(row, origin, len(kept))}
        if kept:
            await events_service.import_events(
                session, conversation_id, kept, conversation_values=values
            )
        else:
            await conversations.update_fields(session, conversation_id, values, None, utcnow())
    return kept
