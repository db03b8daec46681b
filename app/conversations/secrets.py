"""Setting a conversation's environment secrets. Flushes, never commits: the request
boundary commits."""

import uuid
from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from app.clock import utcnow
from app.conversations import repository
from app.conversations.repository import lock_conversation
from app.errors import NotFound
from app.vault import repository as vault_repository
from app.vault.redact import REDACTOR
from app.vault.service import Vault


def _not_found(conversation_id: uuid.UUID) -> NotFound:
    return NotFound(f"conversation {conversation_id} not found")


async def set_env(
    session: AsyncSession, conversation_id: uuid.UUID, new: Mapping[str, str], vault: Vault
) -> None:
    """Merge `new` into the conversation's sealed secrets: one read and one UPDATE (which
    bumps the version) under the conversation's row lock.

    The sealed value is read, opened, merged and written back, so two writers must not
    interleave: on Postgres the row lock (held until commit) makes the second writer read
    after the first one's commit; on SQLite write transactions are serialized whole (BEGIN
    IMMEDIATE). Either way both writers' names survive.
    """
    # A driver's DEBUG line may repeat statement values; the sealed text holds plain values
    # when AGENT_SERVER_SECRET_KEY is not set.
    with REDACTOR.hiding(new.values()):
        await lock_conversation(session, conversation_id)
        found = await vault_repository.sealed_of(session, conversation_id)
        if found is None:
            raise _not_found(conversation_id)
        if not new:
            return
        sealed, values = vault.update_env(found[0], new)
        with REDACTOR.hiding(values):
            updated = await repository.update_fields(
                session, conversation_id, {"secrets": sealed}, None, utcnow()
            )
        if updated is None:  # gone since the read: cannot happen under the lock, 404 anyway
            raise _not_found(conversation_id)
