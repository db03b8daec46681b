"""Skill rules. Services flush, never commit: the request boundary commits.

Every change of a skill is one conditional UPDATE (`version = version + 1`, RETURNING the new
row) and one revision INSERT from the returned values, in the caller's transaction. Nothing
is read and then written back, so two concurrent changes can never overwrite each other:
- SQLite: write transactions are serialized (BEGIN IMMEDIATE and the process write lock);
- Postgres (READ COMMITTED): the UPDATE waits for the row lock of a concurrent writer and
  then re-checks its WHERE clause (version, "something differs") against the committed row.
"""

import re
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.agent.base import AgentBase
from app.clock import utcnow
from app.db.session import Database
from app.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    Unprocessable,
)
from app.events.schemas import EventBase, SystemPromptEvent
from app.models import Skill, SkillRevision
from app.pagination import decode_cursor, encode_cursor
from app.skills import frontmatter, prompt, repository
from app.skills.schemas import (
    MAX_CONTENT_BYTES,
    MAX_DESCRIPTION_CHARS,
    NAME_PATTERN,
    RevisionSortOrder,
    SkillCreate,
    SkillUpdate,
)

# A change without If-Match is retried only when the row changed between its UPDATE (which
# found nothing to change) and the re-read (Postgres); each retry means another writer won.
MAX_ATTEMPTS = 5
_MAX_VERSION = 2**31 - 1


def etag(version: int) -> str:
    return f'"{version}"'


def _not_found(name: str) -> NotFound:
    return NotFound(f"skill {name!r} not found")


def _invalid(field: str, message: str) -> Unprocessable:
    return Unprocessable(message, details={"field": field})


def _stale(skill: Skill) -> PreconditionFailed:
    return PreconditionFailed(
        f"skill {skill.name!r} is at version {skill.version}",
        details={"current_version": skill.version},
        headers={"ETag": etag(skill.version)},
    )


def _resolve(content: str, *, name: str | None, description: str | None) -> tuple[str, str]:
    """The name and description a SKILL.md content gives, checked against the explicit ones.

    413 over 256 KiB; 422 when the front matter is missing, malformed, has no valid name,
    names another skill than `name`, or there is no description from either side.
    """
    size = len(content.encode("utf-8", errors="surrogatepass"))
    if size > MAX_CONTENT_BYTES:
        raise PayloadTooLarge(
            f"content is {size} bytes; the limit is {MAX_CONTENT_BYTES} (256 KiB)",
            details={"field": "content", "limit_bytes": MAX_CONTENT_BYTES, "bytes": size},
        )
    try:
        front = frontmatter.parse(content)
    except frontmatter.FrontMatterError as exc:
        raise _invalid("content", str(exc)) from exc
    if front.name is None:
        raise _invalid("content", "the front matter has no `name`")
    if not re.fullmatch(NAME_PATTERN, front.name):
        raise _invalid("content", f"front matter name {front.name!r} must match {NAME_PATTERN}")
    if name is not None and front.name != name:
        raise _invalid(
            "content", f"front matter name {front.name!r} is not the skill's name {name!r}"
        )
    resolved = description or (front.description or "").strip()
    if not resolved:
        raise _invalid(
            "content", "no description: put one in the front matter or give `description`"
        )
    if len(resolved) > MAX_DESCRIPTION_CHARS:
        raise _invalid(
            "content", f"the description is over {MAX_DESCRIPTION_CHARS} characters long"
        )
    return front.name, resolved


async def create(session: AsyncSession, data: SkillCreate) -> Skill:
    """Insert the skill at version 1 and its first revision; a taken name is 409."""
    name, description = _resolve(data.content, name=data.name, description=data.description)
    now = utcnow()
    values = {
        "id": uuid.uuid4(),
        "name": name,
        "description": description,
        "content": data.content,
        "enabled": data.enabled,
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    if not await repository.insert_if_absent(session, values):
        raise Conflict(f"skill {name!r} exists", details={"name": name})
    skill = await get(session, name)
    await repository.insert_revision(session, skill)
    return skill


async def get(session: AsyncSession, name: str) -> Skill:
    skill = await repository.get(session, name)
    if skill is None:
        raise _not_found(name)
    return skill


async def update(
    session: AsyncSession, name: str, data: SkillUpdate, expected_versions: Sequence[int] | None
) -> Skill:
    """Apply the given fields as one new version (one revision); see `_apply`.

    `content` must keep the skill's name; the description then comes from its front matter
    unless `description` is given too.
    """
    fields = data.model_dump(exclude_unset=True)
    values: dict[str, Any] = {}
    if "content" in fields:
        _, description = _resolve(
            fields["content"], name=name, description=fields.get("description")
        )
        values.update(content=fields["content"], description=description)
    elif "description" in fields:
        values["description"] = fields["description"]
    if "enabled" in fields:
        values["enabled"] = fields["enabled"]
    return await _apply(session, name, values, expected_versions)


async def rollback(
    session: AsyncSession, name: str, version: int, expected_versions: Sequence[int] | None
) -> Skill:
    """A new version with the content and description of revision `version`.

    `enabled` stays as it is: rolling back restores instructions, not the on/off switch.
    """
    skill = await get(session, name)
    revision = await repository.get_revision(session, skill.id, version)
    if revision is None:
        raise NotFound(
            f"skill {name!r} has no version {version}",
            details={"current_version": skill.version},
        )
    values = {"content": revision.content, "description": revision.description}
    return await _apply(session, name, values, expected_versions, skill_id=skill.id)


async def _apply(
    session: AsyncSession,
    name: str,
    values: dict[str, Any],
    expected_versions: Sequence[int] | None,
    skill_id: uuid.UUID | None = None,
) -> Skill:
    """Set `values` as a new version and record it, or change nothing when they are already
    the stored ones (200, same version, no revision).

    With `expected_versions` (If-Match) a version outside it is 412 with the current ETag, even
    when nothing would change.
    """
    attempts = MAX_ATTEMPTS if values else 1
    for attempt in range(1, attempts + 1):
        if values:
            updated = await repository.update_if_changed(
                session, name, values, expected_versions, utcnow(), skill_id
            )
            if updated is not None:
                await repository.insert_revision(session, updated)
                return updated
        current = await repository.get(session, name)
        if current is None or (skill_id is not None and current.id != skill_id):
            raise _not_found(name)
        if expected_versions is not None and current.version not in expected_versions:
            raise _stale(current)
        if all(getattr(current, key) == value for key, value in values.items()):
            return current
        if attempt == attempts:
            raise Conflict(
                f"skill {name!r} kept changing while this change was applied; try again",
                headers={"ETag": etag(current.version)},
            )
    raise AssertionError("unreachable")


async def delete(session: AsyncSession, name: str) -> None:
    if not await repository.delete_one(session, name):
        raise _not_found(name)


async def search(
    session: AsyncSession, *, enabled: bool | None, limit: int, page_id: str | None
) -> tuple[list[Skill], str | None]:
    """Skills by name, a keyset page at a time."""
    after: str | None = None
    if page_id:
        cursor = decode_cursor(page_id, scope="skills", order="NAME")
        after = cursor.get("name")
        if not isinstance(after, str) or not re.fullmatch(NAME_PATTERN, after):
            raise BadRequest("page_id is not a valid cursor")
    rows = await repository.search(session, enabled=enabled, after=after, limit=limit + 1)
    items = list(rows[:limit])
    next_page_id = None
    if len(rows) > limit:
        next_page_id = encode_cursor({"scope": "skills", "order": "NAME", "name": items[-1].name})
    return items, next_page_id


async def revisions(
    session: AsyncSession,
    name: str,
    *,
    sort_order: RevisionSortOrder,
    limit: int,
    page_id: str | None,
) -> tuple[list[SkillRevision], str | None]:
    """A skill's revisions by version, a keyset page at a time."""
    skill = await get(session, name)
    after: int | None = None
    if page_id:
        cursor = decode_cursor(page_id, scope="skill_revisions", order=sort_order.value)
        after = cursor.get("version")
        if type(after) is not int or not 0 <= after <= _MAX_VERSION + 1:
            raise BadRequest("page_id is not a valid cursor")
    descending = sort_order is RevisionSortOrder.VERSION_DESC
    rows = await repository.revisions(
        session, skill.id, after=after, descending=descending, limit=limit + 1
    )
    items = list(rows[:limit])
    next_page_id = None
    if len(rows) > limit:
        next_page_id = encode_cursor(
            {"scope": "skill_revisions", "order": sort_order.value, "version": items[-1].version}
        )
    return items, next_page_id


async def check_known(session: AsyncSession, names: Sequence[str], field: str) -> None:
    """422 naming the skills that do not exist (for a conversation's `agent.skills`)."""
    unknown = sorted(set(names) - await repository.existing_names(session, names))
    if unknown:
        raise Unprocessable(
            f"unknown skills: {', '.join(unknown)}", details={"field": field, "unknown": unknown}
        )


async def system_prompt_for_run(
    db: Database, agent: AgentBase, history: list[dict[str, Any]]
) -> EventBase | None:
    """The SystemPromptEvent a starting run records, or None when the last one recorded says
    the same (prompt text, tools, skills and their versions).

    The enabled skills are read now, once: the run's context is built from this event, so a
    skill edited while the run goes on changes only later runs. A conversation that pins
    `agent.skills` gets the enabled ones among those.
    """
    event = agent.system_prompt_event()
    recorded = [e for e in history if e["kind"] == "SystemPromptEvent"]
    if not isinstance(event, SystemPromptEvent):  # no prompt, or an agent's own kind of event
        return None if event is None or recorded else event
    pinned = agent.spec.get("skills")
    names = None if pinned is None else [str(n) for n in pinned]
    rows: Sequence[Any] = []
    if names != []:
        async with db.session(write=False) as session:
            rows = await repository.enabled_for_run(session, names)
    event = prompt.with_skills(event, [prompt.SkillText(*row) for row in rows])
    if recorded and prompt.still_holds(recorded[-1], event):
        return None
    return event
