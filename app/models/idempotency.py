from datetime import datetime

from sqlalchemy import Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base
from app.db.types import JSONType, UTCDateTime


class IdempotencyKey(Base):
    """The stored outcome of one request made with an Idempotency-Key.

    Written in the same transaction as the request's effect, so a committed effect always has
    its row: a retry of the same key (within `scope`, the client's session key) is answered
    with the stored response instead of doing the work again. `fingerprint` is a keyed hash
    of the method, path, query and body (never the body itself); a retry whose fingerprint
    differs is refused. Rows past `expires_at` count as absent and are pruned.
    """

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(Text)
    status_code: Mapped[int] = mapped_column(Integer)
    response_headers: Mapped[dict[str, str]] = mapped_column(JSONType)
    response_body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Indexed: the sweeper deletes the expired rows oldest first.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
