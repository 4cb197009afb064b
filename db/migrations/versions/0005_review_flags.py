"""Review scores and flags on predictions: out-of-distribution, anomaly, confidence, members'
disagreement, and the reasons an image needs a person

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SCORES = ("ood_score", "anomaly_score", "confidence", "disagreement", "review_score")


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        for name in SCORES:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))
        batch.add_column(sa.Column("review", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("review_reasons", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        for name in (*SCORES, "review", "review_reasons"):
            batch.drop_column(name)
