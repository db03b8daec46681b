"""Settings: the only place that reads the environment."""

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./agent_server.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENT_SERVER_", env_file=".env", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    # Comma-separated; empty means no authentication.
    session_api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=20, ge=0, le=500)
    db_pool_timeout_seconds: float = Field(default=30.0, gt=0)
    # Postgres: write transactions holding a connection at once (the rest queue for a slot).
    db_max_concurrent_writes: int = Field(default=4, ge=1, le=500)
    # The longest a write waits for its turn (a write slot; SQLite: this process's write
    # lock) before answering 503 with Retry-After.
    db_write_wait_seconds: float = Field(default=30.0, gt=0, le=3600)
    sqlite_busy_timeout_ms: int = Field(default=10_000, ge=0)
    log_level: str = "INFO"
    # "text" (one line per record) or "json" (one JSON object per record).
    log_format: Literal["text", "json"] = "text"
    # One line per HTTP request and WebSocket (method, path without query, status, ms).
    access_log: bool = True
    # Request bodies larger than this are refused with 413 before they are read whole.
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=1024**3)
    # Fernet keys (comma-separated, newest first) that encrypt stored credentials; the first
    # encrypts, all decrypt. Unset: credentials are stored unencrypted (a warning at start).
    secret_key: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)

    # How long an Idempotency-Key's stored response is replayed (then the key is pruned).
    idempotency_ttl_seconds: int = Field(default=86_400, ge=60, le=30 * 86_400)
    # Conversations idle (no event, no change) for longer are deleted with all their rows,
    # unless a run is active; unset: kept forever (`agent-server prune` deletes on demand).
    retention_days: float | None = Field(default=None, gt=0, le=36_500)
    # How often each process prunes expired keys and, with retention_days, old conversations.
    housekeeping_interval_seconds: float = Field(default=60.0, gt=0, le=86_400)

    # Runs
    max_concurrent_runs: int = Field(default=10, ge=1, le=1000)
    # Runs waiting for a slot, counted in the database (all processes): a start beyond this
    # answers 429 with Retry-After.
    max_queued_runs: int = Field(default=1000, ge=1, le=1_000_000)
    run_lease_seconds: float = Field(default=30.0, gt=0)
    run_worker_enabled: bool = True
    worker_poll_seconds: float = Field(default=0.5, gt=0)
    control_poll_seconds: float = Field(default=0.25, gt=0)
    sweeper_interval_seconds: float = Field(default=5.0, gt=0)
    # On shutdown, how long runs may take to reach the end of their current step before
    # the steps still going are cut off; either way each run is given back (see README).
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    tool_pool_size: int = Field(default=8, ge=1, le=256)
    # Live streams: SQLite change-detection poll; Postgres backstop poll behind NOTIFY.
    stream_poll_seconds: float = Field(default=0.2, gt=0, le=60)
    stream_backstop_seconds: float = Field(default=2.0, gt=0, le=2)
    stream_keepalive_seconds: float = Field(default=15.0, gt=0)
    stream_client_buffer: int = Field(default=1000, ge=1, le=1_000_000)
    websocket_auth_timeout_seconds: float = Field(default=10.0, gt=0)
    workspace_root: Path = Path("./workspaces")
    enable_terminal: bool = False
    terminal_timeout_seconds: float = Field(default=30.0, gt=0)

    # LLM defaults for conversations that do not set their own
    llm_model: str | None = None
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    # Comma-separated base URLs a conversation may point its LLM at; empty: any URL (the
    # server's own key is never sent to a URL a conversation chose, either way).
    llm_allowed_base_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    llm_max_retries: int = Field(default=3, ge=0, le=20)
    llm_retry_base_seconds: float = Field(default=0.5, ge=0)
    llm_timeout_seconds: float = Field(default=120.0, gt=0)

    @field_validator("session_api_keys", "secret_key", "llm_allowed_base_urls", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
