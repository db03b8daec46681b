"""A conversation's environment secrets: named values its terminal commands see as variables.

They are sealed with the conversation's LLM credentials, in the same value of
`conversations.secrets`, under their own key: `{"llm": {...}, "env": {NAME: value}}`.
`specs.reveal` reads only "llm", so they never enter the agent spec; the process running the
agent opens them with `env_of` and hands them to the tools.
"""

from collections.abc import Mapping
from typing import Any

ENV = "env"
# A portable environment variable name, bounded.
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
# The server's own settings: a conversation may neither set nor see them. Compared without
# case, as pydantic-settings reads AGENT_SERVER_* names.
RESERVED_PREFIX = "AGENT_SERVER_"
MAX_NAMES_PER_REQUEST = 100
MAX_NAMES = 200
MAX_VALUE_BYTES = 64 * 1024


def is_reserved(name: str) -> bool:
    return name.upper().startswith(RESERVED_PREFIX)


def env_of(secrets: Mapping[str, Any]) -> dict[str, str]:
    """The environment secrets in opened `secrets` ({} when there are none)."""
    env = secrets.get(ENV)
    if not isinstance(env, dict):
        return {}
    return {k: v for k, v in env.items() if isinstance(k, str) and isinstance(v, str)}


def merge_env(secrets: Mapping[str, Any], new: Mapping[str, str]) -> dict[str, Any]:
    """`secrets` with `new` set: a name already there takes its new value, every other name
    and the LLM credentials stay as they are."""
    if not new:
        return dict(secrets)
    return {**secrets, ENV: {**env_of(secrets), **new}}


def without_reserved(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` without the server's own settings (its secret key and LLM key among them)."""
    return {k: v for k, v in environ.items() if not is_reserved(k)}
