"""Opaque keyset cursors: base64url JSON naming the scope, the order and the last key seen."""

import base64
import binascii
from typing import Any

import orjson

from app.errors import BadRequest


def encode_cursor(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


def decode_cursor(page_id: str, *, scope: str, order: str) -> dict[str, Any]:
    """Decode a cursor issued for this scope and order, or raise 400."""
    try:
        raw = base64.urlsafe_b64decode(page_id + "=" * (-len(page_id) % 4))
        data = orjson.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("page_id is not a valid cursor") from exc
    if not isinstance(data, dict) or data.get("scope") != scope:
        raise BadRequest("page_id was issued for another listing")
    if data.get("order") != order:
        raise BadRequest("page_id was issued for another sort_order")
    return data
