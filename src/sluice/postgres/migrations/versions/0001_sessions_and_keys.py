"""Session records with their event logs, API keys with their spend, and the installation's
values (the keys' version, the login cookies' secret).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A session is one row: its record (orjson bytes, as the SQLite store keeps them) and
    # its event log as one JSON array, beside the columns that lists filter and sort on.
    op.create_table(
        "sessions",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("created_at", sa.Float(precision=53), nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("tenant", sa.Text),
        sa.Column("record", sa.LargeBinary, nullable=False),
        sa.Column("events", sa.LargeBinary),
    )
    op.create_index("sessions_created", "sessions", ["created_at"])
    op.create_index("sessions_tenant", "sessions", ["tenant", "created_at"])
    op.create_table(
        "api_keys",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("prefix", sa.Text, nullable=False),
        sa.Column("hash", sa.Text, nullable=False, unique=True),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("models", sa.ARRAY(sa.Text), nullable=False),
        sa.Column("budget", sa.Float(precision=53)),
        sa.Column("rpm", sa.Integer),
        sa.Column("tpm", sa.Integer),
        sa.Column("max_streams", sa.Integer),
        sa.Column("created_at", sa.Float(precision=53), nullable=False),
        sa.Column("expires_at", sa.Float(precision=53)),
        sa.Column("revoked_at", sa.Float(precision=53)),
        sa.Column("spend", sa.Float(precision=53), nullable=False, server_default="0"),
        sa.Column("unpriced_sessions", sa.BigInteger, nullable=False, server_default="0"),
    )
    # The keys' version is a counter in a row, changed in the transaction that changes a
    # key, so a reader that sees the new number also sees the key (a sequence would not be).
    op.create_table(
        "sluice_meta",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("counter", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("value", sa.LargeBinary),
    )
    op.execute("INSERT INTO sluice_meta (name, counter) VALUES ('keys_version', 0)")


def downgrade() -> None:
    op.drop_table("sluice_meta")
    op.drop_table("api_keys")
    op.drop_table("sessions")
