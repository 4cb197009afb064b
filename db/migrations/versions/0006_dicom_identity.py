"""DICOM identity on predictions: the SOP Instance UID and a salted hash of the PatientID,
never the ID, name or birth date in the clear

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("sop_instance_uid", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("patient_hash", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("patient_hash")
        batch.drop_column("sop_instance_uid")
