"""Redaction of known secret values from log lines and stored error texts.

The process registers the values it holds (the server's own keys at start; a run's
credentials while it runs). Every log record is redacted as it is made, whatever its level,
logger or handler: a record factory replaces each known value in the message and the
formatted exception by the mask. Values shorter than MIN_LENGTH are not registered (they would
mask ordinary words)."""

import logging
import threading
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from app.logging_config import on_every_record

MASK = "**********"
MIN_LENGTH = 6


class Redactor:
    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        # Longest first, so a value containing another is masked whole.
        self._values: tuple[str, ...] = ()

    def add(self, values: Iterable[str]) -> list[str]:
        """Register values (counted: each add needs a discard); returns those registered."""
        added = [v for v in values if len(v) >= MIN_LENGTH]
        with self._lock:
            for value in added:
                self._counts[value] = self._counts.get(value, 0) + 1
            self._refresh()
        return added

    def discard(self, values: Iterable[str]) -> None:
        with self._lock:
            for value in values:
                left = self._counts.get(value, 0) - 1
                if left > 0:
                    self._counts[value] = left
                else:
                    self._counts.pop(value, None)
            self._refresh()

    @contextmanager
    def hiding(self, values: Iterable[str]) -> Iterator[None]:
        added = self.add(values)
        try:
            yield
        finally:
            self.discard(added)

    def _refresh(self) -> None:
        self._values = tuple(sorted(self._counts, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return text

    @property
    def active(self) -> bool:
        return bool(self._values)


REDACTOR = Redactor()


def strings_in(value: Any) -> list[str]:
    """Every string in a JSON-like value (the credentials to register)."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return found


def install_log_redaction() -> None:
    """Make every log record of the process pass through REDACTOR (once per process)."""
    on_every_record(_redact_record)


def _redact_record(record: logging.LogRecord) -> None:
    if not REDACTOR.active:
        return
    try:
        message = record.getMessage()
    except Exception:  # a malformed call: logging reports it when the record is emitted
        return
    clean = REDACTOR.redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[1] is not None:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        clean = REDACTOR.redact(text)
        if clean != text:
            record.exc_text = clean
