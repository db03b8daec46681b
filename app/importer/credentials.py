"""Credentials in an OpenHands file store, opened for sealing here.

The agent-server stores the LLM key, the AWS keys and the conversation's secrets as Fernet
tokens under a key derived from its OH_SECRET_KEY (the SHA-256 of it, URL-safe base64), or,
with no key at all, as the mask `**********`, the value lost. With the same key given to
the importer, the values are opened and sealed again by this server's vault; without it (or
with the wrong one) they are left out and the conversation's report says so: it runs only
where its LLM needs no key of its own, until one is set again.
"""

import base64
import hashlib
import re
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from app.events.service import storable
from app.importer.store import Problem
from app.vault import env
from app.vault.specs import LLM_CREDENTIALS

MASKED = "**********"
TOKEN_PREFIX = "gAAAA"  # every Fernet token starts so (version byte 0x80, then a timestamp)


class StoreKeys:
    """Opens the store's tokens with the OpenHands secret key, if one was given."""

    def __init__(self, secret_key: str | None) -> None:
        self._fernet = None
        if secret_key:
            digest = hashlib.sha256(secret_key.encode()).digest()
            self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def open(self, value: str) -> str | None:
        """The plain value: a token opened, a plain value as it is; None when it is masked,
        cannot be opened, or could not be stored (NUL, a lone surrogate)."""
        if value == MASKED:
            return None
        plain: str | None = value
        if value.startswith(TOKEN_PREFIX):
            if self._fernet is None:
                return None
            try:
                plain = self._fernet.decrypt(value.encode()).decode()
            except (InvalidToken, UnicodeError, ValueError):
                return None
        return plain if plain is not None and storable(plain) == plain else None


def open_agent(
    agent: dict[str, Any], keys: StoreKeys, where: str, problems: list[Problem]
) -> dict[str, Any]:
    """The agent with its LLM credentials in plain text (for vault.specs.conceal); one that
    cannot be opened is left out, with a problem."""
    llm = agent.get("llm")
    if not isinstance(llm, dict):
        return agent
    opened = dict(llm)
    for name in LLM_CREDENTIALS:
        value = llm.get(name)
        if isinstance(value, str):
            plain = keys.open(value)
            if plain is None:
                opened.pop(name)
                problems.append(
                    Problem(where, "base_state.json", _lost(f"agent.llm.{name}", value))
                )
            else:
                opened[name] = plain
        elif isinstance(value, dict):  # extra_headers
            headers = {k: keys.open(v) if isinstance(v, str) else None for k, v in value.items()}
            if any(v is None for v in headers.values()):
                problems.append(Problem(where, "base_state.json", _lost(f"agent.llm.{name}", "")))
            opened[name] = {k: v for k, v in headers.items() if v is not None} or None
    return {**agent, "llm": opened}


def open_secrets(
    state: dict[str, Any], keys: StoreKeys, where: str, problems: list[Problem]
) -> dict[str, str]:
    """The conversation's secrets (secret_registry) as environment variables."""
    registry = state.get("secret_registry")
    sources = registry.get("secret_sources") if isinstance(registry, dict) else None
    found: dict[str, str] = {}
    for name, source in (sources or {}).items() if isinstance(sources, dict) else ():
        value = source.get("value") if isinstance(source, dict) else None
        plain = keys.open(value) if isinstance(value, str) else None
        usable = re.match(env.NAME_PATTERN, str(name)) and not env.is_reserved(str(name))
        if not usable:
            problems.append(Problem(where, "base_state.json", f"secret name {name!r} refused"))
        elif plain is None or len(plain.encode()) > env.MAX_VALUE_BYTES or "\x00" in plain:
            problems.append(Problem(where, "base_state.json", _lost(f"secret {name}", value)))
        else:
            found[str(name)] = plain
    return found


def _lost(what: str, value: Any) -> str:
    if value == MASKED:
        return f"{what} was stored masked by OpenHands (the value is lost): set it again"
    return (
        f"{what} cannot be opened: give the store's OpenHands secret key"
        " (--openhands-secret-key / OH_SECRET_KEY), or set it again"
    )
