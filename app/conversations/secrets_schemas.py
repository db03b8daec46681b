"""Schemas of a conversation's secrets, in the OpenHands SDK's wire format
(`RemoteConversation.update_secrets`).

A 422 here never echoes a secret's value: every check that sees one is made on the object
around it (the request, or the secret's object), and the error handler echoes no object.
"""

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    StringConstraints,
    Tag,
    model_validator,
)

from app.validators import reject_unstorable
from app.vault import env

STATIC = "StaticSecret"
LOOKUP = "LookupSecret"
MAX_DESCRIPTION = 1024
_STATIC_FIELDS = frozenset({"kind", "value", "description"})
LOOKUP_REFUSED = (
    "LookupSecret is not supported: the server would fetch a URL the client chose (a"
    " server-side request forgery risk); send the value itself, as a string or a StaticSecret"
)


def _not_reserved(name: str) -> str:
    if env.is_reserved(name):
        raise ValueError(f"names starting with {env.RESERVED_PREFIX} are reserved")
    return name


def _too_long(value: str) -> bool:
    return len(value.encode("utf-8")) > env.MAX_VALUE_BYTES


def _bounded(value: SecretStr) -> SecretStr:
    if _too_long(value.get_secret_value()):
        raise ValueError(f"a secret's value is at most {env.MAX_VALUE_BYTES} bytes")
    return value


EnvName = Annotated[str, StringConstraints(pattern=env.NAME_PATTERN), AfterValidator(_not_reserved)]
SecretValue = Annotated[SecretStr, AfterValidator(_bounded)]


def _quoted(name: object) -> str:
    return repr(name)[:140]


def _no_unknown_fields(data: dict[Any, Any], known: frozenset[str] | set[str]) -> None:
    """Unknown fields, refused by name: the `extra="forbid"` error would echo their values."""
    extra = sorted(str(key) for key in data if key not in known)
    if extra:
        raise ValueError(f"unknown fields {', '.join(map(_quoted, extra[:5]))}")


class StaticSecretIn(BaseModel):
    """A secret given by value (the SDK's `StaticSecret`)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["StaticSecret"] = "StaticSecret"
    value: SecretValue = Field(
        description=f"The value (at most {env.MAX_VALUE_BYTES} bytes); never shown again"
    )
    description: Annotated[str, StringConstraints(max_length=MAX_DESCRIPTION)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _checked(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        _no_unknown_fields(data, _STATIC_FIELDS)
        value = data.get("value")
        if not isinstance(value, str):
            raise ValueError(
                "`value` must be a string" + (" (it is null)" if value is None else "")
            )
        if _too_long(value):
            raise ValueError(f"`value` is at most {env.MAX_VALUE_BYTES} bytes")
        description = data.get("description")
        if description is not None and not isinstance(description, str):
            raise ValueError("`description` must be a string or null")
        return data


class LookupSecretIn(BaseModel):
    """The SDK's `LookupSecret` (a value fetched from `url`): always refused with 422."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["LookupSecret"]
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _refused(cls, _data: Any) -> Any:
        raise ValueError(LOOKUP_REFUSED)


def _kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "plain"
    if isinstance(value, dict):
        # The SDK's older form, {"value": ...} without a kind, is a StaticSecret.
        kind = value.get("kind", STATIC if "value" in value else None)
        return kind if isinstance(kind, str) else None
    return None


Secret = Annotated[
    Annotated[SecretValue, Tag("plain")]
    | Annotated[StaticSecretIn, Tag(STATIC)]
    | Annotated[LookupSecretIn, Tag(LOOKUP)],
    Discriminator(
        _kind,
        custom_error_type="secret_kind",
        custom_error_message="a secret is a string or an object whose kind is StaticSecret",
    ),
]


class ConversationSecretsUpdate(BaseModel):
    """Secrets to set: each name becomes an environment variable of the conversation's
    terminal commands. A name already set takes its new value; other names stay."""

    model_config = ConfigDict(extra="forbid")
    secrets: Annotated[dict[EnvName, Secret], Field(max_length=env.MAX_NAMES_PER_REQUEST)] = Field(
        description=f"NAME: value or StaticSecret; at most {env.MAX_NAMES_PER_REQUEST} per"
        f" request and {env.MAX_NAMES} per conversation; names matching"
        f" {env.NAME_PATTERN}, not starting with {env.RESERVED_PREFIX}. LookupSecret is"
        " refused (422)."
    )

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        """The checks whose failing input would be a bare value (echoed in a 422) are made
        here, on the whole request, which is never echoed."""
        reject_unstorable(data)
        if not isinstance(data, dict):
            return data
        _no_unknown_fields(data, {"secrets"})
        secrets = data.get("secrets")
        if secrets is None:
            return data
        if not isinstance(secrets, dict):
            raise ValueError("`secrets` must be an object of NAME: secret")
        for name, value in secrets.items():
            if not isinstance(value, str | dict):
                raise ValueError(f"secret {_quoted(name)}: give a string or an object with a kind")
        return data

    def plain_values(self) -> dict[str, str]:
        """NAME: value, in plain text."""
        return {
            name: (secret if isinstance(secret, SecretStr) else secret.value).get_secret_value()
            for name, secret in self.secrets.items()
            if not isinstance(secret, LookupSecretIn)
        }


class SecretsUpdated(BaseModel):
    """The OpenHands agent-server's answer (its `Success`)."""

    success: bool = True
