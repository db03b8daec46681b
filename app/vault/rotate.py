"""Re-sealing every conversation's credentials with the current key (`secrets rotate`)."""

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from app.db.session import Database
from app.vault import repository
from app.vault.cipher import Cipher, UnreadableSecrets

BATCH = 200


@dataclass
class RotateReport:
    checked: int = 0
    resealed: int = 0
    unreadable: list[uuid.UUID] = field(default_factory=list)


async def rotate(
    db: Database,
    cipher: Cipher,
    *,
    dry_run: bool = False,
    progress: Callable[[RotateReport], None] | None = None,
) -> RotateReport:
    """Seal with the first key every row sealed with another key or in plain text, a short
    transaction per batch. Rows no key opens are reported, never changed."""
    report = RotateReport()
    last: uuid.UUID | None = None
    while True:
        async with db.session(write=not dry_run) as session:
            rows = await repository.sealed_after(session, last, BATCH)
            for conversation_id, stored in rows:
                report.checked += 1
                try:
                    new = cipher.reseal(stored)
                except UnreadableSecrets:
                    report.unreadable.append(conversation_id)
                    continue
                if new is None:
                    continue
                if dry_run or await repository.replace_secrets(
                    session, conversation_id, stored, new
                ):
                    report.resealed += 1
        if progress is not None:
            progress(report)
        if len(rows) < BATCH:
            return report
        last = rows[-1][0]
