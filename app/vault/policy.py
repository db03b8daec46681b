"""Where a conversation's LLM calls may go, and with whose key.

The server's AGENT_SERVER_LLM_BASE_URL and AGENT_SERVER_LLM_API_KEY are used only together:
a conversation that names no `base_url` (or the server's own) is called at the server's URL,
with its own `api_key` if it brings one and the server's key otherwise. A conversation that
names another URL must bring its own credentials, and is called with those alone. When
AGENT_SERVER_LLM_ALLOWED_BASE_URLS is set, only those URLs (and the server's own) may be
named at all.
"""

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from app.config import Settings
from app.vault.redact import MASK


def normalized(url: str) -> str:
    """A URL compared by scheme and host case-insensitively, without a trailing slash."""
    parts = urlsplit(url.strip())
    return urlunsplit(
        (parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query, "")
    )


class EndpointRefused(ValueError):
    """A conversation's LLM endpoint breaks the rule above; `field` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def has_own_credentials(llm: dict[str, Any]) -> bool:
    return any(
        llm.get(name) not in (None, "", MASK, {})
        for name in ("api_key", "extra_headers", "aws_access_key_id")
    )


@dataclass(frozen=True)
class EndpointPolicy:
    server_base_url: str | None
    allowed: frozenset[str]

    @classmethod
    def from_settings(cls, settings: Settings) -> "EndpointPolicy":
        return cls(
            server_base_url=normalized(settings.llm_base_url) if settings.llm_base_url else None,
            allowed=frozenset(normalized(url) for url in settings.llm_allowed_base_urls),
        )

    def is_server_endpoint(self, base_url: str | None) -> bool:
        return base_url is None or normalized(base_url) == self.server_base_url

    def check(self, llm: dict[str, Any]) -> None:
        """Raise EndpointRefused unless `llm` (credentials in plain or masked) may be used."""
        base_url = llm.get("base_url")
        if self.is_server_endpoint(base_url):
            return
        assert base_url is not None
        if self.allowed and normalized(base_url) not in self.allowed:
            raise EndpointRefused(
                "base_url",
                f"base_url {base_url!r} is not one of the endpoints this server allows"
                " (AGENT_SERVER_LLM_ALLOWED_BASE_URLS)",
            )
        if not has_own_credentials(llm):
            raise EndpointRefused(
                "api_key",
                "a conversation that sets its own base_url must also set its own api_key"
                " (or extra_headers / AWS keys): the server's key is only ever sent to the"
                " server's own endpoint",
            )
