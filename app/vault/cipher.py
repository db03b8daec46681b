"""Credentials at rest: one sealed value per conversation, in `conversations.secrets`.

The stored text is `fernet:<token>` when AGENT_SERVER_SECRET_KEY is set (Fernet: AES-128-CBC
with HMAC-SHA256), or `plain:<json>` when it is not; the server warns at start in that case.
The setting lists keys newest first: the first one encrypts, every one decrypts, so a key is
rotated by putting a new key first, running `agent-server secrets rotate`, then dropping the
old one.
"""

from collections.abc import Sequence
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

ENCRYPTED = "fernet:"
PLAIN = "plain:"


class SecretKeyError(ValueError):
    """AGENT_SERVER_SECRET_KEY holds something that is not a Fernet key."""


class UnreadableSecrets(Exception):
    """Stored credentials that no configured key decrypts (or that are not ours at all)."""


def generate_key() -> str:
    return Fernet.generate_key().decode()


class Cipher:
    """Seals and opens the credentials of a conversation with the configured keys."""

    def __init__(self, keys: Sequence[str | SecretStr] = ()) -> None:
        plain = [k.get_secret_value() if isinstance(k, SecretStr) else k for k in keys]
        try:
            fernets = [Fernet(key.encode()) for key in plain]
        except ValueError as exc:
            raise SecretKeyError(
                "AGENT_SERVER_SECRET_KEY must list Fernet keys (32 url-safe base64-encoded "
                "bytes each; `agent-server secrets generate-key` makes one)"
            ) from exc
        self._primary = fernets[0] if fernets else None
        self._all = MultiFernet(fernets) if fernets else None

    @property
    def encrypts(self) -> bool:
        return self._primary is not None

    def seal(self, secrets: dict[str, Any]) -> str | None:
        """The stored text of `secrets` (None when there are none)."""
        if not secrets:
            return None
        data = orjson.dumps(secrets)
        if self._primary is None:
            return PLAIN + data.decode()
        return ENCRYPTED + self._primary.encrypt(data).decode()

    def open(self, stored: str | None) -> dict[str, Any]:
        """The credentials sealed in `stored` ({} for None)."""
        if stored is None:
            return {}
        if stored.startswith(PLAIN):
            data = stored[len(PLAIN) :].encode()
        elif stored.startswith(ENCRYPTED):
            if self._all is None:
                raise UnreadableSecrets(
                    "credentials are encrypted and AGENT_SERVER_SECRET_KEY is not set"
                )
            try:
                data = self._all.decrypt(stored[len(ENCRYPTED) :].encode())
            except InvalidToken:
                raise UnreadableSecrets(
                    "no key in AGENT_SERVER_SECRET_KEY decrypts these credentials"
                ) from None
        else:
            raise UnreadableSecrets("stored credentials in an unknown format")
        value = orjson.loads(data)
        if not isinstance(value, dict):
            raise UnreadableSecrets("stored credentials are not an object")
        return value

    def is_current(self, stored: str) -> bool:
        """Whether `stored` is sealed the way `seal` would seal it now (same key or plain)."""
        if self._primary is None:
            return stored.startswith(PLAIN)
        if not stored.startswith(ENCRYPTED):
            return False
        try:
            self._primary.decrypt(stored[len(ENCRYPTED) :].encode())
        except InvalidToken:
            return False
        return True

    def reseal(self, stored: str) -> str | None:
        """`stored` sealed with the current key, or None when it already is."""
        if self.is_current(stored):
            return None
        return self.seal(self.open(stored))
