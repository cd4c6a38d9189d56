"""The journal of live sessions: their events in batches as they are relayed, so that a crash
of the gateway loses only the last window; replaced by the session's whole log when it ends.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "session_journal",
        sa.Column("session_id", sa.Text, primary_key=True),
        sa.Column("first_seq", sa.BigInteger, primary_key=True),
        sa.Column("events", sa.LargeBinary, nullable=False),
    )
    # the recovery at start looks for records left live
    op.create_index(
        "sessions_live",
        "sessions",
        ["created_at"],
        postgresql_where=sa.text("state IN ('starting', 'streaming', 'finalizing')"),
    )


def downgrade() -> None:
    op.drop_index("sessions_live", table_name="sessions")
    op.drop_table("session_journal")
