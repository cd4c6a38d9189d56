"""Conversations: the turns of an agent or a chat tied together, each kept whole (its
messages and its sessions' ids) so that a client sends only its next prompt.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per conversation: the whole of it as orjson bytes (as a session's record is
    # kept), beside its id, its tenant and its last update, which retention deletes by.
    op.create_table(
        "conversations",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant", sa.Text),
        sa.Column("updated_at", sa.Float(precision=53), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_index("conversations_updated", "conversations", ["updated_at"])


def downgrade() -> None:
    op.drop_table("conversations")
