"""Site profiles (a model's operating point at one site), the operating point on every
prediction row, and adapted models' parent and site

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain added columns, no constraint: SQLite adds them in place instead of rebuilding.
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("parent_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("site", sa.String(length=128), nullable=True))
    op.create_table(
        "site_profiles",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("site", sa.String(length=128), nullable=False),
        sa.Column(
            "model_id", sa.Integer(), sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("weights_sha256", sa.String(length=64), nullable=False),
        sa.Column(
            "adapted_model_id",
            sa.Integer(),
            sa.ForeignKey("models.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("jobs.id", ondelete="SET NULL")),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("rule", sa.String(length=16), nullable=False),
        sa.Column("target_sensitivity", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("profile", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_site_profiles_site", "site_profiles", ["site"])
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("threshold", sa.Float(), nullable=True))
        batch.add_column(sa.Column("site_profile_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("site_profile_id")
        batch.drop_column("threshold")
    op.drop_index("ix_site_profiles_site", table_name="site_profiles")
    op.drop_table("site_profiles")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("site")
        batch.drop_column("parent_id")
