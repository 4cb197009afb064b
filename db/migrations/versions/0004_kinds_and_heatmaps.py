"""Pneumonia kind (bacterial or viral) on predictions and evaluations; a table of heatmaps

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

KIND_SCORES = ("kind_accuracy", "kind_sensitivity", "kind_specificity", "kind_roc_auc")


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("prob_viral", sa.Float(), nullable=True))
        batch.add_column(sa.Column("kind", sa.String(length=16), nullable=True))
    with op.batch_alter_table("evaluations") as batch:
        for name in (*KIND_SCORES, "kind_threshold"):
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))
        batch.add_column(sa.Column("kind_n", sa.Integer(), nullable=True))
    op.create_table(
        "heatmaps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("scorer", sa.String(length=32), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("grid", sa.LargeBinary(), nullable=False),
        sa.Column("crop", sa.Float(), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "scorer", "path", name="uq_heatmap"),
    )
    op.create_index("ix_heatmaps_job_id", "heatmaps", ["job_id"])


def downgrade() -> None:
    op.drop_index("ix_heatmaps_job_id", table_name="heatmaps")
    op.drop_table("heatmaps")
    with op.batch_alter_table("evaluations") as batch:
        for name in (*KIND_SCORES, "kind_threshold", "kind_n"):
            batch.drop_column(name)
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("kind")
        batch.drop_column("prob_viral")
