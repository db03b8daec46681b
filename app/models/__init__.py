"""ORM models: one module per aggregate. Importing this package registers every table."""

from app.models.conversation import Conversation, ExecutionStatus
from app.models.event import Event, EventCount

__all__ = ["Conversation", "Event", "EventCount", "ExecutionStatus"]
