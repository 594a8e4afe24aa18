"""Video Studio: projects with their next-shot settings, and the clips on their timelines.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "video_projects",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("aspect_ratio", sa.String(20), nullable=False),
        sa.Column("resolution", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("order_version", sa.Integer(), nullable=False),
        sa.Column("selected_clip_id", sa.String(40), nullable=True),
        sa.Column("playhead_s", sa.Float(), nullable=False),
        sa.Column("model", sa.String(400), nullable=True),
        sa.Column("start_frame", sa.String(40), nullable=True),
        sa.Column("end_frame", sa.String(40), nullable=True),
        *(sa.Column(name, sa.Float(), nullable=False) for name in ("pan_x", "pan_y", "zoom", "tilt", "roll")),
        sa.Column("duration_s", sa.Float(), nullable=False),
        *(sa.Column(name, sa.Float(), nullable=False) for name in ("stability", "amplitude", "coherence")),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("loop", sa.Boolean(), nullable=False),
        sa.Column("interpolate", sa.Boolean(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("negative_prompt", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_video_projects"),
    )
    op.create_index("ix_video_projects_updated_at", "video_projects", ["updated_at"])
    op.create_table(
        "video_clips",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("project_id", sa.String(40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(40), nullable=True),
        sa.Column("asset_id", sa.String(40), nullable=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("trim_in_s", sa.Float(), nullable=False),
        sa.Column("trim_out_s", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["video_projects.id"],
            name="fk_video_clips_project_id_video_projects",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_video_clips"),
    )
    op.create_index("ix_video_clips_project_id_position", "video_clips", ["project_id", "position"])
    op.create_index("ix_video_clips_job_id", "video_clips", ["job_id"])


def downgrade() -> None:
    op.drop_index("ix_video_clips_job_id", table_name="video_clips")
    op.drop_index("ix_video_clips_project_id_position", table_name="video_clips")
    op.drop_table("video_clips")
    op.drop_index("ix_video_projects_updated_at", table_name="video_projects")
    op.drop_table("video_projects")
