"""Ensembles, and predictions/evaluations keyed by scorer (a model or an ensemble)

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ensembles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("members", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    with op.batch_alter_table("evaluations") as batch:
        batch.add_column(sa.Column("ensemble_id", sa.Integer(), nullable=True))
        batch.alter_column("model_id", existing_type=sa.Integer(), nullable=True)
        batch.create_index("ix_evaluations_ensemble_id", ["ensemble_id"])
        batch.create_foreign_key(
            "fk_evaluations_ensemble_id", "ensembles", ["ensemble_id"], ["id"], ondelete="CASCADE"
        )
    # Existing rows all came from a model: their scorer key is 'model:<id>'.
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("scorer", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("ensemble_id", sa.Integer(), nullable=True))
    op.execute("UPDATE predictions SET scorer = 'model:' || CAST(model_id AS VARCHAR)")
    with op.batch_alter_table("predictions") as batch:
        batch.alter_column("scorer", existing_type=sa.String(length=32), nullable=False)
        batch.alter_column("model_id", existing_type=sa.Integer(), nullable=True)
        batch.drop_constraint("uq_prediction", type_="unique")
        batch.create_unique_constraint("uq_prediction", ["job_id", "scorer", "path"])
        batch.create_foreign_key(
            "fk_predictions_ensemble_id", "ensembles", ["ensemble_id"], ["id"], ondelete="CASCADE"
        )


def downgrade() -> None:
    op.execute("DELETE FROM predictions WHERE model_id IS NULL")
    op.execute("DELETE FROM evaluations WHERE model_id IS NULL")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_constraint("fk_predictions_ensemble_id", type_="foreignkey")
        batch.drop_constraint("uq_prediction", type_="unique")
        batch.create_unique_constraint("uq_prediction", ["job_id", "model_id", "path"])
        batch.alter_column("model_id", existing_type=sa.Integer(), nullable=False)
        batch.drop_column("ensemble_id")
        batch.drop_column("scorer")
    with op.batch_alter_table("evaluations") as batch:
        batch.drop_constraint("fk_evaluations_ensemble_id", type_="foreignkey")
        batch.drop_index("ix_evaluations_ensemble_id")
        batch.alter_column("model_id", existing_type=sa.Integer(), nullable=False)
        batch.drop_column("ensemble_id")
    op.drop_table("ensembles")
