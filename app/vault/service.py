"""The vault of a process: its endpoint policy and its cipher, built once from the settings."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.config import Settings
from app.errors import Conflict, Unprocessable
from app.vault import env, specs
from app.vault.cipher import Cipher, UnreadableSecrets
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
        spec, values, _ = self.unseal_for_run(agent, stored)
        return spec, values

    def unseal_for_run(
        self, agent: dict[str, Any], stored: str | None
    ) -> tuple[dict[str, Any], list[str], dict[str, str]]:
        """unseal(), and the environment secrets for the run's tools, from one opening of
        the sealed value. Raises cipher.UnreadableSecrets."""
        secrets = self.cipher.open(stored)
        return specs.reveal(agent, secrets), strings_in(secrets), env.env_of(secrets)

    def env_secrets(self, stored: str | None) -> dict[str, str]:
        """The environment secrets sealed in `stored`, for the tools of the process running
        the conversation. Raises cipher.UnreadableSecrets."""
        return env.env_of(self.cipher.open(stored))

    def update_env(
        self, stored: str | None, new: Mapping[str, str]
    ) -> tuple[str | None, list[str]]:
        """`stored` resealed with the environment secrets `new` set (see env.merge_env), and
        every value it holds (to redact while the request holds them). 422 past
        env.MAX_NAMES names; 409 when no configured key opens `stored`."""
        try:
            secrets = env.merge_env(self.cipher.open(stored), new)
        except UnreadableSecrets as exc:
            raise Conflict(
                f"this conversation's stored credentials cannot be opened ({exc}), so no"
                " secret can be added to them"
            ) from None
        names = len(env.env_of(secrets))
        if names > env.MAX_NAMES:
            raise Unprocessable(
                f"a conversation holds at most {env.MAX_NAMES} secrets; this request would"
                f" make {names}",
                details=[{"loc": ["body", "secrets"]}],
            )
        return self.cipher.seal(secrets), strings_in(secrets)
