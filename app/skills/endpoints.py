"""Skill routes."""

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response, status

from app.db.session import ReadSessionDep, WriteSessionDep
from app.errors import database_responses, error_responses, response_headers
from app.http import parse_if_match
from app.idempotency.route import IDEMPOTENT, IdempotentRoute
from app.skills import service
from app.skills.schemas import (
    NAME_PATTERN,
    RevisionSortOrder,
    SkillCreate,
    SkillPage,
    SkillRead,
    SkillRevisionPage,
    SkillRevisionRead,
    SkillRollback,
    SkillSummary,
    SkillUpdate,
)

router = APIRouter(
    prefix="/skills",
    tags=["skills"],
    responses=database_responses(),
    route_class=IdempotentRoute,
)

NameParam = Annotated[str, Path(pattern=NAME_PATTERN, description="The skill's name")]
IfMatch = Annotated[
    str | None, Header(description='The skill\'s ETag (e.g. "3"); a stale one is 412')
]


def _read(skill: object, response: Response) -> SkillRead:
    read = SkillRead.model_validate(skill)
    response.headers["ETag"] = service.etag(read.version)
    return read


@router.post(
    "",
    dependencies=[IDEMPOTENT],
    response_model=SkillRead,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 409, 413, 422, extra=response_headers(201, "ETag")),
)
async def create_skill(
    body: SkillCreate, session: WriteSessionDep, response: Response
) -> SkillRead:
    """Add a skill from its SKILL.md content (version 1, with its first revision)."""
    return _read(await service.create(session, body), response)


@router.get("", response_model=SkillPage, responses=error_responses(400, 401, 422))
async def list_skills(
    session: ReadSessionDep,
    enabled: bool | None = None,
    page_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
) -> SkillPage:
    """List skills by name (without their content), a keyset-paginated page at a time."""
    items, next_page_id = await service.search(
        session, enabled=enabled, limit=limit, page_id=page_id
    )
    return SkillPage(
        items=[SkillSummary.model_validate(s) for s in items], next_page_id=next_page_id
    )


@router.get(
    "/{name}",
    response_model=SkillRead,
    responses=error_responses(401, 404, 422, extra=response_headers(200, "ETag")),
)
async def get_skill(name: NameParam, session: ReadSessionDep, response: Response) -> SkillRead:
    """Get one skill; its ETag is its version."""
    return _read(await service.get(session, name), response)


@router.patch(
    "/{name}",
    response_model=SkillRead,
    responses=error_responses(
        400, 401, 404, 409, 412, 413, 422, extra=response_headers(200, "ETag")
    ),
)
async def update_skill(
    name: NameParam,
    body: SkillUpdate,
    session: WriteSessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> SkillRead:
    """Change enabled, description or content as one new version; unchanged values: no-op."""
    skill = await service.update(session, name, body, parse_if_match(if_match))
    return _read(skill, response)


@router.delete(
    "/{name}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401, 404, 422)
)
async def delete_skill(name: NameParam, session: WriteSessionDep) -> Response:
    """Delete a skill and all its revisions."""
    await service.delete(session, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{name}/revisions",
    response_model=SkillRevisionPage,
    responses=error_responses(400, 401, 404, 422),
)
async def list_revisions(
    name: NameParam,
    session: ReadSessionDep,
    page_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    sort_order: RevisionSortOrder = RevisionSortOrder.VERSION_DESC,
) -> SkillRevisionPage:
    """Every saved state of a skill, by version, a keyset-paginated page at a time."""
    items, next_page_id = await service.revisions(
        session, name, sort_order=sort_order, limit=limit, page_id=page_id
    )
    return SkillRevisionPage(
        items=[SkillRevisionRead.model_validate(r) for r in items], next_page_id=next_page_id
    )


@router.post(
    "/{name}/rollback",
    dependencies=[IDEMPOTENT],
    response_model=SkillRead,
    responses=error_responses(400, 401, 404, 409, 412, 422, extra=response_headers(200, "ETag")),
)
async def rollback_skill(
    name: NameParam,
    body: SkillRollback,
    session: WriteSessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> SkillRead:
    """Restore a revision's content and description as a new version."""
    skill = await service.rollback(session, name, body.version, parse_if_match(if_match))
    return _read(skill, response)
