"""Model registry: registered endpoints and models, per-model usage.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "endpoints",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("provider_id", sa.String(40), nullable=False),
        sa.Column("platform", sa.String(20), nullable=False),
        sa.Column("base_url", sa.String(500), nullable=False),
        sa.Column("api_key_encrypted", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_endpoints"),
        sa.UniqueConstraint("provider_id", name="uq_endpoints_provider_id"),
    )
    op.create_table(
        "registered_models",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("endpoint_id", sa.String(36), nullable=False),
        sa.Column("upstream_model", sa.String(300), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("alias", sa.String(100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registered_models"),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["endpoints.id"],
            ondelete="CASCADE",
            name="fk_registered_models_endpoint_id_endpoints",
        ),
        sa.UniqueConstraint("endpoint_id", "upstream_model", name="uq_registered_models_endpoint_id"),
        sa.UniqueConstraint("alias", name="uq_registered_models_alias"),
    )
    op.create_index("ix_registered_models_endpoint_id", "registered_models", ["endpoint_id"])
    op.create_table(
        "model_usage",
        sa.Column("model_id", sa.String(400), primary_key=True),
        sa.Column("sessions", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("model_id", name="pk_model_usage"),
    )


def downgrade() -> None:
    op.drop_table("model_usage")
    op.drop_index("ix_registered_models_endpoint_id", table_name="registered_models")
    op.drop_table("registered_models")
    op.drop_table("endpoints")
