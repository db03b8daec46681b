"""Checks shared by request schemas."""

from typing import Any


def reject_nul(value: Any) -> Any:
    """A pydantic `mode="before"` check: NUL in any string or key of a body is refused (422)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError("NUL characters (\\u0000) are not allowed")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return value
