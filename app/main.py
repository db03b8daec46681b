"""create_app(): lifespan, routers, exception handlers."""

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import __version__
from app.agent.loader import AGENTS
from app.config import Settings, get_settings
from app.conversations.endpoints import router as conversations_router
from app.conversations.fork_endpoints import router as fork_router
from app.conversations.openhands_endpoints import router as openhands_router
from app.conversations.secrets_endpoints import router as conversation_secrets_router
from app.db.availability import RETRY_AFTER_SECONDS, unavailable_reason
from app.db.migrations import head_revision
from app.db.notify import Listener
from app.db.session import Database
from app.errors import AppError, ErrorResponse, error_responses
from app.events.endpoints import router as events_router
from app.http import reject_nul_in_url
from app.limits import BodyLimits
from app.logging_config import install_request_ids
from app.metrics import process_gauges
from app.openapi import AgentServerAPI, check_operation_ids, operation_id
from app.runs.endpoints import router as runs_router
from app.runs.worker import Worker
from app.security import ApiKeyGate, require_api_key
from app.skills.endpoints import router as skills_router
from app.streams.endpoints import router as streams_router
from app.streams.endpoints import sockets_router
from app.streams.hub import EventHub
from app.system.docs import install_docs
from app.system.endpoints import router as system_router
from app.system.housekeeping import Housekeeping
from app.system.requests import RequestContext
from app.vault.redact import REDACTOR, install_log_redaction
from app.vault.service import Vault
from app.vault.specs import LLM_CREDENTIALS
from app.workspace.bash import CommandRunner
from app.workspace.endpoints import router as workspace_router

logger = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
}


class _ErrorJSON(JSONResponse):
    def render(self, content: object) -> bytes:
        # ASCII escapes: a validation error may echo input that is not valid Unicode (a lone
        # surrogate), which must still come back as an error, not crash the handler.
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode()


def _error(status: int, code: str, message: str, details: object = None) -> JSONResponse:
    body = ErrorResponse(status=status, code=code, message=message, details=details)
    return _ErrorJSON(body.model_dump(mode="json"), status_code=status)


def _without_input(error: dict[str, Any]) -> dict[str, Any]:
    """A validation error as shown: the offending input is echoed only when it is a plain
    value outside any credential field (never a whole object, which may hold a key, and
    never a hostile multi-megabyte body)."""
    value = error.get("input")
    secret = any(str(part) in LLM_CREDENTIALS for part in error.get("loc", ()))
    if secret or isinstance(value, dict | list) or (isinstance(value, str) and len(value) > 256):
        return {k: v for k, v in error.items() if k != "input"}
    return error


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError) -> JSONResponse:
        response = _error(exc.status_code, exc.code, exc.message, exc.details)
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [_without_input(error) for error in exc.errors()]
        details = jsonable_encoder(errors, custom_encoder={Exception: str})
        return _error(422, "validation_error", "request validation failed", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        response = _error(exc.status_code, code, str(exc.detail))
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    async def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        reason = unavailable_reason(exc)
        if reason is None:
            raise exc  # a real error: the 500 handler below
        # A passing condition of the database, not a bug: the client may retry.
        logger.warning("database unavailable: %s (%s: %s)", reason, type(exc).__name__, exc)
        response = _error(503, "service_unavailable", reason)
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    app.add_exception_handler(SQLAlchemyError, _database_unavailable)
    app.add_exception_handler(ConnectionError, _database_unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        return _error(500, "internal_error", "internal server error")


def _server_secrets(settings: Settings) -> list[str]:
    keys = [*settings.session_api_keys, *settings.secret_key]
    if settings.llm_api_key is not None:
        keys.append(settings.llm_api_key)
    return [key.get_secret_value() for key in keys]


class _Phases:
    """Logs each start-up phase with the time it took."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()

    def done(self, phase: str) -> None:
        now = time.perf_counter()
        logger.info("start-up: %s in %.0f ms", phase, (now - self.last) * 1000)
        self.last = now

    @property
    def total(self) -> float:
        return time.perf_counter() - self.started


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        phases = _Phases()
        # Reading the migration scripts is file IO: keep it off the event loop.
        app.state.head_revision = await asyncio.to_thread(head_revision)
        phases.done("migration scripts read")
        if not app.state.vault.cipher.encrypts:
            logger.warning(
                "AGENT_SERVER_SECRET_KEY is not set: conversation credentials (LLM API keys)"
                " are stored unencrypted; `agent-server secrets generate-key` makes a key"
            )
        owns_db = database is None
        if owns_db:
            # Engine creation resolves file paths for SQLite: also off the loop.
            app.state.db = await asyncio.to_thread(Database.from_settings, settings)
            phases.done("database engine made")
        db: Database = app.state.db
        hub = EventHub(
            db,
            poll_seconds=settings.stream_poll_seconds
            if db.is_sqlite
            else settings.stream_backstop_seconds,
            max_buffer=settings.stream_client_buffer,
            tail_backstop_seconds=settings.stream_backstop_seconds,
        )
        app.state.hub = hub
        # Postgres: other processes' commits and run changes arrive by LISTEN/NOTIFY.
        listener = None if db.is_sqlite else Listener(db.engine)
        await hub.start(listener)
        phases.done("event hub started")
        worker = None
        if settings.run_worker_enabled:
            worker = Worker(app.state.db, settings)
            app.state.worker = worker
            await worker.start(listener)  # it claims runs once the agents are loaded
            phases.done("run worker started")
        if listener is not None:
            await listener.start()
            phases.done("listening for notifications")
        housekeeping = Housekeeping(db, settings)
        housekeeping.start()
        logger.info("start-up: done in %.2f s; the server listens next", phases.total)
        if settings.run_worker_enabled:
            # litellm takes seconds to import: it loads in the background from now on (not
            # sooner: it would hold the GIL against the phases above), /health answers
            # meanwhile, and /ready and the run worker wait for it.
            AGENTS.start()
        try:
            # Multiprocess metrics: this process's pool gauges stay fresh for the others.
            async with process_gauges(db.publish_pool_gauges):
                yield
        finally:
            await housekeeping.stop()
            if worker is not None:
                await worker.stop()
            await app.state.commands.close()  # kills the commands still running
            if listener is not None:
                await listener.stop()
            await hub.stop()
            if owns_db:
                await app.state.db.dispose()

    app = AgentServerAPI(
        title="agent-server",
        version=__version__,
        summary="A SQL-backed agent server: conversations and events as rows.",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        docs_url=None,  # served by install_docs, without a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.started_at = time.monotonic()
    app.state.vault = Vault.from_settings(settings)  # a malformed SECRET_KEY stops the start
    app.state.commands = CommandRunner()  # bash commands of the workspace routes
    install_log_redaction()
    install_request_ids()
    # aiosqlite's DEBUG lines repeat every statement with its parameters (user data).
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.root.level))
    REDACTOR.add(_server_secrets(settings))
    if database is not None:
        app.state.db = database

    api = APIRouter(
        prefix="/api",
        dependencies=[Depends(require_api_key), Depends(reject_nul_in_url)],
        responses=error_responses(400, 401),
    )
    api.include_router(conversations_router)
    api.include_router(conversation_secrets_router)
    api.include_router(fork_router)
    api.include_router(openhands_router)
    api.include_router(streams_router)  # before events: /events/stream is not an event id
    api.include_router(events_router)
    api.include_router(runs_router)
    api.include_router(skills_router)
    api.include_router(workspace_router)
    app.include_router(api)
    app.include_router(sockets_router)
    app.include_router(system_router)
    install_docs(app)
    check_operation_ids(app)
    app.add_middleware(BodyLimits, max_bytes=settings.max_body_bytes)
    app.add_middleware(ApiKeyGate, settings=settings)  # before any body is read
    # Outermost: the request id is on every log line of the request, a refusal's included.
    app.add_middleware(
        RequestContext, api_prefix=api.prefix, access_log_enabled=settings.access_log
    )
    _install_error_handlers(app)
    return app
