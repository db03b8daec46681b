"""Skills in the system prompt: rendering, and whether a recorded prompt still holds."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.events.schemas import SystemPromptEvent, TextContent
from app.skills.frontmatter import FrontMatterError, parse

HEADER = (
    "# Skills\n\n"
    "Skills are instructions for particular kinds of task. When a task matches a skill's"
    " description, follow that skill's instructions."
)


@dataclass(frozen=True)
class SkillText:
    name: str
    version: int
    description: str
    content: str


def _body(content: str) -> str:
    try:
        return parse(content).body.strip()
    except FrontMatterError:  # stored content was validated; keep it whole if it is not
        return content.strip()


def render(base: str, skills: Sequence[SkillText]) -> str:
    """The base prompt, then each skill (by name) in a `<skill>` element."""
    if not skills:
        return base
    parts = [base.rstrip(), HEADER]
    for skill in skills:
        parts.append(
            f'<skill name="{skill.name}" version="{skill.version}">\n'
            f"<description>{skill.description}</description>\n\n"
            f"{_body(skill.content)}\n</skill>"
        )
    return "\n\n".join(parts)


def with_skills(event: SystemPromptEvent, skills: Sequence[SkillText]) -> SystemPromptEvent:
    """The agent's own prompt event with the skills rendered in, each with its version (the
    `<skill name=... version=...>` element records which version a run used)."""
    text = render(event.system_prompt.text, skills)
    return event.model_copy(update={"system_prompt": TextContent(text=text)})


def still_holds(recorded: dict[str, Any], event: SystemPromptEvent) -> bool:
    """Whether a stored SystemPromptEvent says the same as `event` (the text, with the skills
    and their versions, and the tools)."""
    fresh = event.payload()  # as it would be stored: JSON types
    prompt = recorded.get("system_prompt") or {}
    return bool(
        prompt.get("text") == fresh["system_prompt"]["text"]
        and (recorded.get("tools") or []) == fresh["tools"]
    )
