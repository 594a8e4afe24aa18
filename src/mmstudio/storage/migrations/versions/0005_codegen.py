"""Creator Studio: generated projects and their files.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "codegen_projects",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("framework", sa.String(40), nullable=False),
        sa.Column("target_type", sa.String(40), nullable=False),
        sa.Column("model_requested", sa.String(400), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("model_used", sa.String(400), nullable=True),
        sa.Column("model_name", sa.String(400), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("attempts", sa.JSON(), nullable=False),
        sa.Column("skipped", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("raw_text", sa.Text(), nullable=False),
        sa.Column("file_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_codegen_projects"),
    )
    op.create_index("ix_codegen_projects_created_at", "codegen_projects", ["created_at"])
    op.create_table(
        "codegen_files",
        sa.Column("project_id", sa.String(36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(300), nullable=False),
        sa.Column("language", sa.String(40), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "position", name="pk_codegen_files"),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["codegen_projects.id"],
            ondelete="CASCADE",
            name="fk_codegen_files_project_id_codegen_projects",
        ),
    )


def downgrade() -> None:
    op.drop_table("codegen_files")
    op.drop_index("ix_codegen_projects_created_at", table_name="codegen_projects")
    op.drop_table("codegen_projects")
