import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base
from app.db.types import JSONType, UTCDateTime


class Event(Base):
    """One event of a conversation.

    `seq` is gapless per conversation and starts at 1; `timestamp` is assigned by the server
    at append and never decreases along `seq`, so a time window is a contiguous seq range.
    `search_text` is the event's text, case-folded, for the body filter. `payload` holds the
    kind-specific fields exactly as the API returns them.
    """

    __tablename__ = "events"

    conversation_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    id: Mapped[str] = mapped_column(String(64))
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))
    search_text: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)

    __table_args__ = (
        UniqueConstraint("conversation_id", "id"),
        Index("ix_events_conversation_id_kind_seq", "conversation_id", "kind", "seq"),
        Index("ix_events_conversation_id_source_seq", "conversation_id", "source", "seq"),
        Index("ix_events_conversation_id_timestamp_seq", "conversation_id", "timestamp", "seq"),
    )


class EventCount(Base):
    """How many events of one kind from one source a conversation has.

    Kept in the append transaction (under the conversation row lock), so counts filtered by
    kind and/or source are a lookup of a few rows instead of a count over the events.
    """

    __tablename__ = "event_counts"

    conversation_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
