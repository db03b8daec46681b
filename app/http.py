"""HTTP helpers shared by the endpoint modules: pre-encoded JSON, If-Match parsing, and the
OpenHands `Success` body."""

import re
from typing import Annotated, Any

import orjson
from fastapi import Query, Request, Response
from pydantic import BaseModel

from app.errors import BadRequest

_ORJSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS

# Events leave out their seq (an OpenHands client refuses fields it does not know).
WithSeq = Annotated[
    bool, Query(description="Add each event's `seq` to it (not an OpenHands field)")
]


class Success(BaseModel):
    """What the OpenHands agent-server answers to a command that returns nothing."""

    success: bool = True


class JSONBytes(Response):
    """A JSON response whose body is encoded once, by orjson, without FastAPI's encoder."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=_ORJSON_OPTIONS)


_ETAG_ITEM = re.compile(r'\s*(?:W/)?"(\d{1,19})"\s*')
# versions are 32-bit integers: a larger ETag was never issued and cannot match.
_MAX_VERSION = 2**31 - 1


def parse_if_match(header: str | None) -> list[int] | None:
    """Versions an If-Match header accepts; None when absent or `*` (any version)."""
    if header is None or header.strip() == "*":
        return None
    versions: list[int] = []
    for item in header.split(","):
        match = _ETAG_ITEM.fullmatch(item)
        if match is None:
            raise BadRequest(f'malformed If-Match header: {header!r}; expected an ETag like "3"')
        version = int(match.group(1))
        if version <= _MAX_VERSION:
            versions.append(version)
    return versions


async def reject_nul_in_url(request: Request) -> None:
    """NUL characters cannot be stored in Postgres text: refuse them in paths and queries."""
    raw_query = request.scope.get("query_string", b"")
    if "\x00" in request.url.path or b"%00" in raw_query.lower() or b"\x00" in raw_query:
        raise BadRequest("NUL characters are not allowed in the URL")
