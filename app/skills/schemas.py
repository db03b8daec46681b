"""Skill API schemas: XCreate / XUpdate / XRead."""

import enum
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.json_schema import SkipJsonSchema

from app.validators import reject_unstorable

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
MAX_DESCRIPTION_CHARS = 1024
MAX_CONTENT_BYTES = 256 * 1024  # of the content encoded as UTF-8; more is 413

SkillName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Description = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_DESCRIPTION_CHARS, strip_whitespace=True)
]
CONTENT_HELP = (
    "SKILL.md text: front matter (`---`, `name: ...`, `description: ...`, `---`) then markdown."
    " At most 256 KiB as UTF-8 (413 beyond)."
)


class SkillCreate(BaseModel):
    """{content}, or {name, description, content}: the front matter must agree with `name`."""

    model_config = ConfigDict(extra="forbid")
    _storable = model_validator(mode="before")(reject_unstorable)

    name: SkillName | None = Field(
        default=None, description="Default: the front matter's name, which it must equal"
    )
    description: Description | None = Field(
        default=None, description="Default: the front matter's description"
    )
    content: str = Field(description=CONTENT_HELP)
    enabled: bool = True


class SkillUpdate(BaseModel):
    """Fields to change; absent fields are left as they are (null is refused)."""

    model_config = ConfigDict(extra="forbid")
    _storable = model_validator(mode="before")(reject_unstorable)

    enabled: bool | SkipJsonSchema[None] = None
    description: Description | SkipJsonSchema[None] = Field(
        default=None, description="Given: it wins over the content's front matter"
    )
    content: str | SkipJsonSchema[None] = Field(
        default=None,
        description=CONTENT_HELP + " Its front matter name must be the skill's name; its"
        " description becomes the skill's unless `description` is given too.",
    )

    @model_validator(mode="after")
    def _no_nulls(self) -> "SkillUpdate":
        nulls = sorted(f for f in self.model_fields_set if getattr(self, f) is None)
        if nulls:
            raise ValueError(f"{', '.join(nulls)}: omit a field to leave it as it is, not null")
        return self


class SkillRollback(BaseModel):
    version: Annotated[int, Field(ge=1, le=2**31 - 1)]


class SkillSummary(BaseModel):
    """A skill without its content (the listing)."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    description: str
    enabled: bool
    version: int
    created_at: datetime
    updated_at: datetime


class SkillRead(SkillSummary):
    content: str


class SkillPage(BaseModel):
    items: list[SkillSummary]
    next_page_id: str | None = None


class SkillRevisionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    description: str
    content: str
    enabled: bool
    created_at: datetime


class SkillRevisionPage(BaseModel):
    items: list[SkillRevisionRead]
    next_page_id: str | None = None


class RevisionSortOrder(enum.StrEnum):
    VERSION = "VERSION"
    VERSION_DESC = "VERSION_DESC"
