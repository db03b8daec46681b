"""The one logging configuration of the process: text or JSON lines on stderr, each with the
id of the request it was written for (`-` outside any request)."""

import json
import logging
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# Set by app.system.requests.RequestContext for the time of one HTTP request or WebSocket.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

_TEXT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
# litellm's loggers, which come with a handler of their own: every line would print twice.
_LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")


_hooks: list[Callable[[logging.LogRecord], None]] = []


def on_every_record(hook: Callable[[logging.LogRecord], None]) -> None:
    """Run `hook` on every log record made from now on, in the order hooks were added (each
    hook once, however often it is added; the record factory is wrapped once per process)."""
    if hook in _hooks:
        return
    if not _hooks:
        make_record = logging.getLogRecordFactory()

        def with_hooks(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = make_record(*args, **kwargs)
            for each in _hooks:
                each(record)
            return record

        logging.setLogRecordFactory(with_hooks)
    _hooks.append(hook)


def _set_request_id(record: logging.LogRecord) -> None:
    record.request_id = REQUEST_ID.get() or "-"


def install_request_ids() -> None:
    """Give every log record the current request's id as `request_id` (`-` outside one)."""
    on_every_record(_set_request_id)


class JsonLines(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, request_id,
    and the traceback as `exception` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Root handler on stderr in `fmt` ("text" or "json"), at `level`. Called once, by the
    command line, before anything logs."""
    install_request_ids()  # before any record: every one then has `request_id`
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines() if fmt == "json" else logging.Formatter(_TEXT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # alembic announces each of its plugins at INFO when it is first imported (the commands
    # import it lazily, after this): a line per plugin that says nothing about the work.
    logging.getLogger("alembic.runtime.plugins").setLevel(max(logging.WARNING, logging.root.level))


def route_litellm_logs() -> None:
    """litellm's loggers write through the root handler only (once, in our format, redacted),
    not also through the handler litellm adds at import."""
    for name in _LITELLM_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
