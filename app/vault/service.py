"""The vault of a process: its endpoint policy and its cipher, built once from the settings."""

from dataclasses import dataclass
from typing import Any

from app.config import Settings
from app.errors import Unprocessable
from app.vault import specs
from app.vault.cipher import Cipher
from app.vault.policy import EndpointPolicy, EndpointRefused
from app.vault.redact import strings_in


@dataclass(frozen=True)
class Vault:
    cipher: Cipher
    policy: EndpointPolicy

    @classmethod
    def from_settings(cls, settings: Settings) -> "Vault":
        """Raises cipher.SecretKeyError when AGENT_SERVER_SECRET_KEY is malformed."""
        return cls(Cipher(settings.secret_key), EndpointPolicy.from_settings(settings))

    def store(self, agent: dict[str, Any]) -> tuple[dict[str, Any], str | None, list[str]]:
        """A spec with plain credentials as stored: the masked spec, the sealed secrets, and
        the credentials' values (to redact while the request holds them). 422 when its LLM
        endpoint breaks the endpoint policy."""
        llm = agent.get("llm")
        if isinstance(llm, dict):
            try:
                self.policy.check(llm)
            except EndpointRefused as exc:
                raise Unprocessable(
                    str(exc), details=[{"loc": ["body", "agent", "llm", exc.field]}]
                ) from None
        public, secrets = specs.conceal(agent)
        return public, self.cipher.seal(secrets), strings_in(secrets)

    def unseal(self, agent: dict[str, Any], stored: str | None) -> tuple[dict[str, Any], list[str]]:
        """The stored spec with its credentials back, and the credentials' values (to redact
        while they are in use). Raises cipher.UnreadableSecrets."""
        secrets = self.cipher.open(stored)
        return specs.reveal(agent, secrets), strings_in(secrets)
