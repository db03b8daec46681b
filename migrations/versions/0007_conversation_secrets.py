"""conversations.secrets: credentials sealed apart from the agent spec

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

Moves every credential out of `conversations.agent` (agent.llm.api_key, extra_headers, the
AWS keys, and any agent.llm field that is not a public model parameter) into the new
`secrets` column, encrypted with AGENT_SERVER_SECRET_KEY when it is set (plain otherwise:
`agent-server secrets rotate` encrypts such rows once a key is set), and leaves the mask in
the spec. Batched by id, so it is safe on a populated database. The downgrade puts the
credentials back in plain text (it needs the key that sealed them).
"""

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from app.config import get_settings
from app.vault import specs
from app.vault.cipher import Cipher

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 500
_conversations = sa.table(
    "conversations",
    sa.column("id", sa.Uuid()),
    sa.column("agent", sa.JSON().with_variant(JSONB(), "postgresql")),
    sa.column("secrets", sa.Text()),
)


def _cipher() -> Cipher:
    keys = op.get_context().config.attributes.get("secret_keys")
    return Cipher(get_settings().secret_key if keys is None else keys)


def _rows() -> Iterator[Any]:
    """Every conversation's id, agent and secrets, a batch of ids at a time."""
    bind = op.get_bind()
    last = None
    c = _conversations.c
    while True:
        stmt = sa.select(c.id, c.agent, c.secrets).order_by(c.id).limit(BATCH)
        if last is not None:
            stmt = stmt.where(c.id > last)
        rows = bind.execute(stmt).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].id


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("secrets", sa.Text(), nullable=True))
    cipher = _cipher()
    c = _conversations.c
    for row in _rows():
        if not isinstance(row.agent, dict):
            continue
        public, secrets = specs.conceal(row.agent)
        if secrets:
            op.get_bind().execute(
                sa.update(_conversations)
                .where(c.id == row.id)
                .values(agent=public, secrets=cipher.seal(secrets))
            )


def downgrade() -> None:
    cipher = _cipher()
    c = _conversations.c
    for row in _rows():
        if row.secrets is None or not isinstance(row.agent, dict):
            continue
        op.get_bind().execute(
            sa.update(_conversations)
            .where(c.id == row.id)
            .values(agent=specs.reveal(row.agent, cipher.open(row.secrets)))
        )
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("secrets")
