"""Alembic's entry point for Sluice's schema: run on the connection that
``sluice.postgres.migrate`` hands over, inside its transaction (which holds the migration
lock), so the migrations and the record of their revision commit together."""

from __future__ import annotations

from alembic import context

from sluice.postgres import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table=VERSION_TABLE, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
