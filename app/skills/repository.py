"""Skill queries."""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from app.db.dialect import insert_ignore_conflict
from app.models import Skill, SkillRevision


async def insert_if_absent(session: AsyncSession, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT (name) DO NOTHING: False when the name is taken."""
    stmt = insert_ignore_conflict(session, Skill.__table__, ["name"]).values(**values)
    result = await session.execute(stmt.returning(Skill.__table__.c.id))
    return result.first() is not None


async def insert_revision(session: AsyncSession, skill: Skill) -> None:
    """Record the skill's current state as the revision of its version."""
    await session.execute(
        insert(SkillRevision).values(
            skill_id=skill.id,
            version=skill.version,
            description=skill.description,
            content=skill.content,
            enabled=skill.enabled,
            created_at=skill.updated_at,
        )
    )


async def get(session: AsyncSession, name: str) -> Skill | None:
    # populate_existing: a re-read after a failed conditional UPDATE must see the new row,
    # not the object this session loaded before.
    stmt = select(Skill).where(Skill.name == name).execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalars().first()


async def existing_names(session: AsyncSession, names: Sequence[str]) -> set[str]:
    stmt = select(Skill.name).where(Skill.name.in_(list(names)))
    return set((await session.execute(stmt)).scalars().all())


async def update_if_changed(
    session: AsyncSession,
    name: str,
    values: dict[str, Any],
    expected_versions: Sequence[int] | None,
    now: datetime,
    skill_id: uuid.UUID | None = None,
) -> Skill | None:
    """One conditional UPDATE that bumps the version by one.

    It matches only when the skill exists (and has the id `skill_id`, when given), its version
    is one of `expected_versions` (any when None) and at least one of `values` differs from
    what is stored; None otherwise.
    """
    columns = Skill.__table__.c
    stmt = update(Skill).where(Skill.name == name)
    if skill_id is not None:
        stmt = stmt.where(Skill.id == skill_id)
    if expected_versions is not None:
        stmt = stmt.where(Skill.version.in_(list(expected_versions)))
    stmt = stmt.where(or_(*(columns[key] != value for key, value in values.items())))
    stmt = stmt.values(**values, version=Skill.version + 1, updated_at=now)
    result = await session.execute(stmt.returning(Skill).execution_options(populate_existing=True))
    return result.scalars().first()


async def delete_one(session: AsyncSession, name: str) -> bool:
    """Delete the skill; its revisions go with it (ON DELETE CASCADE)."""
    result = await session.execute(delete(Skill).where(Skill.name == name).returning(Skill.id))
    return result.first() is not None


async def search(
    session: AsyncSession, *, enabled: bool | None, after: str | None, limit: int
) -> Sequence[Skill]:
    """Skills by name (keyset on the unique name), without their content."""
    stmt = select(Skill).options(defer(Skill.content, raiseload=True))
    if enabled is not None:
        stmt = stmt.where(Skill.enabled == enabled)
    if after is not None:
        stmt = stmt.where(Skill.name > after)
    return (await session.execute(stmt.order_by(Skill.name).limit(limit))).scalars().all()


async def revisions(
    session: AsyncSession,
    skill_id: uuid.UUID,
    *,
    after: int | None,
    descending: bool,
    limit: int,
) -> Sequence[SkillRevision]:
    stmt = select(SkillRevision).where(SkillRevision.skill_id == skill_id)
    if after is not None:
        stmt = stmt.where(
            SkillRevision.version < after if descending else SkillRevision.version > after
        )
    order = SkillRevision.version.desc() if descending else SkillRevision.version
    return (await session.execute(stmt.order_by(order).limit(limit))).scalars().all()


async def get_revision(
    session: AsyncSession, skill_id: uuid.UUID, version: int
) -> SkillRevision | None:
    return await session.get(SkillRevision, (skill_id, version))


async def enabled_for_run(
    session: AsyncSession, names: Sequence[str] | None
) -> list[tuple[str, int, str, str]]:
    """Enabled skills (only those named, when `names` is given): name, version, description,
    content, by name."""
    stmt = select(Skill.name, Skill.version, Skill.description, Skill.content).where(
        Skill.enabled == true()
    )
    if names is not None:
        stmt = stmt.where(Skill.name.in_(list(names)))
    result = await session.execute(stmt.order_by(Skill.name))
    return [(row.name, row.version, row.description, row.content) for row in result]
