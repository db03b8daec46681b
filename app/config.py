"""Settings: the only place that reads the environment."""

from functools import lru_cache
from typing import Annotated, Any

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
    sqlite_busy_timeout_ms: int = Field(default=10_000, ge=0)
    log_level: str = "INFO"

    @field_validator("session_api_keys", mode="before")
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
