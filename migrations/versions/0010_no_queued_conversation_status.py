"""conversations.execution_status: 'queued' becomes 'running'

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01

A conversation whose run waits in the queue now shows `running`, one of the OpenHands SDK's
statuses (its client fails on any other); the run itself shows `queued`. The downgrade turns
those that have a queued run back into `queued`.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "UPDATE conversations SET execution_status = 'running' WHERE execution_status = 'queued'"
    )


def downgrade() -> None:
    op.execute(
        "UPDATE conversations SET execution_status = 'queued' WHERE execution_status = 'running' "
        "AND EXISTS (SELECT 1 FROM runs WHERE runs.conversation_id = conversations.id "
        "AND runs.status = 'queued')"
    )
