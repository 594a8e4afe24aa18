"""Media assets: generated images and videos with their recipes, and uploads.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

INDEXED = ("sha256", "parent_id", "tier", "model_used", "provider")


def upgrade() -> None:
    op.create_table(
        "media_assets",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("mime", sa.String(60), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recipe", sa.JSON(), nullable=True),
        sa.Column("attempts", sa.JSON(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("parent_id", sa.String(40), nullable=True),
        sa.Column("tier", sa.String(40), nullable=True),
        sa.Column("filename", sa.String(300), nullable=True),
        sa.Column("model_used", sa.String(400), nullable=True),
        sa.Column("provider", sa.String(60), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("fps", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_media_assets"),
    )
    op.create_index("ix_media_assets_kind_created_at", "media_assets", ["kind", "created_at"])
    for column in INDEXED:
        op.create_index(f"ix_media_assets_{column}", "media_assets", [column])


def downgrade() -> None:
    for column in INDEXED:
        op.drop_index(f"ix_media_assets_{column}", table_name="media_assets")
    op.drop_index("ix_media_assets_kind_created_at", table_name="media_assets")
    op.drop_table("media_assets")
