"""Alembic environment: runs on the connection handed over by db.migrate (no alembic.ini)."""

from __future__ import annotations

from alembic import context

from db import governance  # noqa: F401  (its tables join Base.metadata)
from db.schema import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite can't ALTER most things
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
