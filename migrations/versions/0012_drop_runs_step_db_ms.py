"""runs: drop step_db_ms (step timings are metrics now)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01

Each run kept up to 1,000 [wait, work] pairs of per-step database time, rewritten on every
step. Those timings are now the `agent_server_run_step_db_seconds` histogram of GET
/metrics. The downgrade adds the column back, empty for every run.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("step_db_ms")


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(
            sa.Column("step_db_ms", JSON, nullable=False, server_default=sa.text("'[]'"))
        )
    with op.batch_alter_table("runs") as batch:  # 0011 had no server default
        batch.alter_column("step_db_ms", existing_type=JSON, server_default=None)
