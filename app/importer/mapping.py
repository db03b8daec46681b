"""From an OpenHands store's JSON to this server's rows: a conversation's row and its events,
every value checked the way a request body is (a store is untrusted input): what cannot be
stored (NUL, lone surrogates, integers beyond 64 bits, nesting too deep, too many values) or
does not fit its field is reported and left out, never the end of the import."""

from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from app.conversations.sdk_schemas import (
    OPTION_FIELDS,
    ConfirmationPolicy,
    SdkCreateOptions,
    SecurityAnalyzer,
)
from app.events.schemas import EVENT_KINDS, AnyEvent, EventBase
from app.events.service import storable
from app.importer.credentials import StoreKeys, open_agent, open_secrets
from app.importer.store import Problem, StoredConversation
from app.models import ExecutionStatus
from app.models.conversation import NEVER_CONFIRM
from app.validators import reject_unstorable
from app.vault import env, specs
from app.vault.service import Vault

SOURCE = "openhands-file-store"
EVENT = TypeAdapter(AnyEvent)
# The SDK's statuses this server has no equal of, as an imported conversation shows them.
STATUSES = {
    "running": ExecutionStatus.PAUSED,  # its run stopped with the move: nothing runs it here
    "stuck": ExecutionStatus.ERROR,
}
MAX_ITERATIONS = 100_000


def aware(value: Any) -> datetime | None:
    """A stored time as an aware UTC datetime (naive ones are read as UTC); None if it is
    not a usable time."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _fits(value: Any) -> bool:
    try:
        reject_unstorable(value)
    except ValueError:
        return False
    return bool(storable(value) == value)


def _checked(value: Any, field: str, where: str, problems: list[Problem], default: Any) -> Any:
    if value is None or _fits(value):
        return default if value is None else value
    problems.append(Problem(where, "base_state.json", f"{field}: not storable, left out"))
    return default


def _tags(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    items = list(value.items())[:50]
    return {storable(str(k))[:64]: storable(str(v))[:256] for k, v in items if str(k)}


def _options(state: dict[str, Any], where: str, problems: list[Problem]) -> dict[str, Any]:
    """The creation settings the state holds, each checked as a create request's."""
    options: dict[str, Any] = {}
    for key in OPTION_FIELDS:
        if key not in state or state[key] is None:
            continue
        try:
            checked = SdkCreateOptions.model_validate({key: state[key]})
        except ValidationError:
            problems.append(Problem(where, "base_state.json", f"{key}: not valid, left out"))
            continue
        value = checked.model_dump(mode="json", include={key})[key]
        if _fits(value):
            options[key] = value
        else:
            problems.append(Problem(where, "base_state.json", f"{key}: not storable, left out"))
    return options


def _model(value: Any, model: Any, field: str, where: str, problems: list[Problem]) -> Any:
    if not isinstance(value, dict):
        return None
    try:
        checked = model.model_validate(value)
    except ValidationError:
        problems.append(Problem(where, "base_state.json", f"{field}: not valid, left out"))
        return None
    dumped = checked.model_dump(mode="json", exclude_none=True)
    return dumped if _fits(dumped) else None


def row(
    stored: StoredConversation, vault: Vault, keys: StoreKeys, root: str, now: datetime
) -> tuple[dict[str, Any], dict[str, Any], list[Problem]]:
    """The conversation's row before its events (last_seq 0), its credentials in plain
    text (as sealed in the row), and what could not be carried over."""
    state, meta = stored.state, stored.meta
    problems: list[Problem] = []
    where = storable(stored.directory.name)
    if str(state.get("id") or stored.id).replace("-", "") != stored.directory.name.replace("-", ""):
        problems.append(
            Problem(where, "base_state.json", f"its id {stored.id} is not the directory's name")
        )
    agent = state.get("agent")
    agent = _checked(agent if isinstance(agent, dict) else None, "agent", where, problems, {})
    agent = open_agent(agent or {"kind": "Agent", "llm": {}}, keys, where, problems)
    public, secrets = specs.conceal(agent)
    secrets = env.merge_env(secrets, open_secrets(state, keys, where, problems))
    status = str(state.get("execution_status") or "idle")
    known = {s.value for s in ExecutionStatus}
    shown = STATUSES.get(status, ExecutionStatus(status) if status in known else None)
    options = _options(state, where, problems)
    options["imported_from"] = {
        "source": SOURCE,
        "root": root,
        "directory": where,
        "next": 0,  # the next event file to read
        "seq": 0,  # the conversation's last_seq after the import's last batch
    }
    title = meta.get("title") if isinstance(meta.get("title"), str) else state.get("title")
    iterations = state.get("max_iterations")
    return (
        {
            "id": stored.id,
            "title": storable(title)[:512] if isinstance(title, str) else None,
            "tags": _tags(meta.get("tags", state.get("tags"))),
            "agent": public,
            "secrets": vault.cipher.seal(secrets),
            "execution_status": (shown or ExecutionStatus.IDLE).value,
            "max_iterations": (
                min(max(iterations, 1), MAX_ITERATIONS) if isinstance(iterations, int) else 500
            ),
            "stats": _checked(
                state.get("stats") if isinstance(state.get("stats"), dict) else None,
                "stats",
                where,
                problems,
                {},
            ),
            "confirmation_policy": _model(
                state.get("confirmation_policy"),
                ConfirmationPolicy,
                "confirmation_policy",
                where,
                problems,
            )
            or dict(NEVER_CONFIRM),
            "security_analyzer": _model(
                state.get("security_analyzer"),
                SecurityAnalyzer,
                "security_analyzer",
                where,
                problems,
            ),
            "options": options,
            "last_seq": 0,
            "version": 1,
            "created_at": aware(meta.get("created_at")) or now,
            "updated_at": aware(meta.get("updated_at")) or now,
        },
        secrets,
        problems,
    )


def event(
    name: str, value: dict[str, Any], last: datetime | None, where: str, problems: list[Problem]
) -> tuple[EventBase | None, bool]:
    """The event of one file (None, the problem recorded, when it cannot be imported), and
    whether its time had to be moved up to the event's before it (never earlier)."""
    kind = value.get("kind")
    if not isinstance(kind, str) or kind not in EVENT_KINDS:
        problems.append(Problem(where, name, f"unknown event kind {storable(str(kind))[:64]!r}"))
        return None, False
    try:
        reject_unstorable(value)
        parsed: EventBase = EVENT.validate_python(value)
    except ValueError as exc:  # a ValidationError is one
        errors = getattr(exc, "errors", None)
        if callable(errors):
            first = errors()[0]
            at = ".".join(str(p) for p in first["loc"])
            what = f"not a valid {kind}: {at}: {first['msg']}"
        else:
            what = f"not storable: {exc}"
        problems.append(Problem(where, name, storable(what)[:200]))
        return None, False
    if not name.endswith(f"-{parsed.id}.json"):
        problems.append(Problem(where, name, f"its id {parsed.id!r} is not the file name's"))
    moment = aware(value.get("timestamp"))
    if moment is None:
        problems.append(Problem(where, name, "no usable timestamp: given the one before it"))
        moment = last or datetime.now(UTC)
    moved = last is not None and moment < last
    parsed.timestamp = last if moved else moment
    return parsed, moved
