import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from app.clock import utcnow
from app.db.base import Base
from app.db.types import JSONType, UTCDateTime


class ExecutionStatus(enum.StrEnum):
    """The OpenHands SDK's statuses (those this server uses). A conversation whose run waits
    in the queue is `running`; the run itself says `queued`."""

    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"
    WAITING_FOR_CONFIRMATION = "waiting_for_confirmation"
    FINISHED = "finished"
    ERROR = "error"


NEVER_CONFIRM: dict[str, Any] = {"kind": "NeverConfirm"}


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    title: Mapped[str | None] = mapped_column(String(512))
    tags: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    # The agent spec with every credential masked; the credentials are sealed in `secrets`.
    agent: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # `fernet:<token>` (or `plain:<json>` without AGENT_SERVER_SECRET_KEY): see app/vault.
    secrets: Mapped[str | None] = mapped_column(Text, deferred=True)
    execution_status: Mapped[str] = mapped_column(String(32), default=ExecutionStatus.IDLE.value)
    max_iterations: Mapped[int] = mapped_column(Integer)
    # OpenHands: which actions wait for the user's confirmation (`{"kind": "NeverConfirm"}`,
    # `AlwaysConfirm`, `ConfirmRisky`), the security analyzer as set, and the other creation
    # settings a client reads back (workspace, client tools, tool modules, hooks, ...).
    confirmation_policy: Mapped[dict[str, Any]] = mapped_column(
        JSONType,
        default=lambda: dict(NEVER_CONFIRM),
        server_default=text('\'{"kind": "NeverConfirm"}\''),
    )
    security_analyzer: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    options: Mapped[dict[str, Any]] = mapped_column(
        JSONType, default=dict, server_default=text("'{}'")
    )
    stats: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Highest event seq so far: appends reserve seqs by bumping it under the row lock.
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    # Timestamp of the last event: the next append's is never earlier (read in the same
    # UPDATE that reserves the seqs).
    last_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        # Keyset pagination for every sort order, with and without a status filter.
        Index("ix_conversations_created_at_id", "created_at", "id"),
        Index("ix_conversations_updated_at_id", "updated_at", "id"),
        Index("ix_conversations_status_created_at_id", "execution_status", "created_at", "id"),
        Index("ix_conversations_status_updated_at_id", "execution_status", "updated_at", "id"),
    )
