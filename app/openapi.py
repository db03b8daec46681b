"""The OpenAPI document as a client generator needs it.

- Operation ids are the endpoint functions' names (`get_conversation`): short, and what a
  generated client calls its methods. Two documented routes with one id stop the start.
- Every error response is documented as what the exception handlers answer: an
  ErrorResponse, as JSON, whatever the route's own media type. FastAPI's default 422 shape
  (HTTPValidationError), which this server never sends, leaves the document.
- Every response documents X-Request-ID, which app/system/requests.py adds to each.
- It is valid OpenAPI 3.1: a stream's item schema (an OpenAPI 3.2 field) is an extension.

The security schemes come from app/security.py's `require_api_key`, the per-route headers
and error entries from app/errors.py.
"""

import json
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from app.errors import RESPONSE_HEADERS, ErrorResponse

_SCHEMAS = "#/components/schemas/"
REQUEST_ID = "X-Request-ID"
_ERROR = ErrorResponse.__name__
# FastAPI's validation error schemas, in the order they refer to each other.
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")
_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def operation_id(route: APIRoute) -> str:
    """The app's `generate_unique_id_function`: the endpoint function's name."""
    return route.name


def check_operation_ids(app: FastAPI) -> None:
    """Raise when two documented operations share an operation id: a client generator would
    merge, rename or drop one of them. Call once every router is included."""
    seen: dict[str, str] = {}
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        for method in sorted(route.methods or ()):
            where = f"{method} {route.path}"
            first = seen.setdefault(route.unique_id, where)
            if first != where:
                raise RuntimeError(
                    f"operation id {route.unique_id!r} of {where} is also that of {first}:"
                    " rename one of the endpoint functions"
                )


def _is_error(status: str) -> bool:
    return status[:1] in ("4", "5")


def _refers_to(document: dict[str, Any], schema: str) -> bool:
    return f'"{_SCHEMAS}{schema}"' in json.dumps(document)


def _without_item_schema(media_type: dict[str, Any]) -> None:
    """FastAPI describes a stream's items (Server-Sent Events) by `itemSchema`, a field of
    OpenAPI 3.2 that makes a 3.1 document invalid: it becomes the `x-itemSchema` extension,
    and the body a string."""
    if "itemSchema" in media_type:
        media_type["x-itemSchema"] = media_type.pop("itemSchema")
        media_type.setdefault("schema", {"type": "string"})


def finish_document(document: dict[str, Any]) -> dict[str, Any]:
    """The generated document with one error shape and X-Request-ID on every response."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.setdefault(_ERROR, ErrorResponse.model_json_schema(ref_template=_SCHEMAS + "{model}"))
    components.setdefault("headers", {})[REQUEST_ID] = dict(RESPONSE_HEADERS[REQUEST_ID])
    for path_item in document.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in _METHODS:
                continue
            for status, response in operation.get("responses", {}).items():
                if _is_error(status):
                    response["content"] = {
                        "application/json": {"schema": {"$ref": _SCHEMAS + _ERROR}}
                    }
                for media_type in response.get("content", {}).values():
                    _without_item_schema(media_type)
                headers = response.setdefault("headers", {})
                headers[REQUEST_ID] = {"$ref": f"#/components/headers/{REQUEST_ID}"}
    for name in _FASTAPI_VALIDATION:
        if name in schemas and not _refers_to(document, name):
            del schemas[name]
    return document


class AgentServerAPI(FastAPI):
    """FastAPI whose OpenAPI document is finished by `finish_document`."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = finish_document(super().openapi())
        return self.openapi_schema
