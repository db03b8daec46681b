"""ORM models: one module per aggregate. Importing this package registers every table."""

from app.models.conversation import Conversation, ExecutionStatus
from app.models.event import Event, EventCount
from app.models.idempotency import IdempotencyKey
from app.models.run import ACTIVE_PREDICATE, ACTIVE_STATUSES, LLMCall, Run, RunStatus
from app.models.skill import Skill, SkillRevision

__all__ = [
    "ACTIVE_PREDICATE",
    "ACTIVE_STATUSES",
    "Conversation",
    "Event",
    "EventCount",
    "ExecutionStatus",
    "IdempotencyKey",
    "LLMCall",
    "Run",
    "RunStatus",
    "Skill",
    "SkillRevision",
]
