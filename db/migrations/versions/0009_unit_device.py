"""Work units record the device that ran them (cpu, cuda:N)

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("work_units") as batch:
        batch.add_column(sa.Column("device", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("work_units") as batch:
        batch.drop_column("device")
