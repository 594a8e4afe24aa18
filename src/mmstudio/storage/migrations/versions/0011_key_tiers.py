"""Gateway keys scoped to story tiers: `tiers` (a JSON list of tier names; null: not scoped).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_keys") as batch:
        batch.add_column(sa.Column("tiers", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateway_keys") as batch:
        batch.drop_column("tiers")
