"""Story mode: stories of a tier, their scenes as a tree, and the tier's characters.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SCENE_INDEXED = ("story_id", "parent_id", "image_job_id", "video_job_id", "image_asset_id", "video_asset_id")


def upgrade() -> None:
    op.create_table(
        "stories",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("tier", sa.String(40), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("title_key", sa.Text(), nullable=False),
        sa.Column("premise", sa.Text(), nullable=False),
        sa.Column("premise_key", sa.Text(), nullable=False),
        sa.Column("text_model", sa.String(400), nullable=False),
        sa.Column("image_model", sa.String(400), nullable=False),
        sa.Column("video_model", sa.String(400), nullable=True),
        sa.Column("memory_mode", sa.Boolean(), nullable=False),
        sa.Column("video_mode", sa.Boolean(), nullable=False),
        sa.Column("scene_count", sa.Integer(), nullable=False),
        sa.Column("cover_asset_id", sa.String(40), nullable=True),
        sa.Column("current_scene_id", sa.String(40), nullable=True),
        sa.Column("has_video", sa.Boolean(), nullable=False),
        sa.Column("saved", sa.Boolean(), nullable=False),
        sa.Column("legacy_format", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stories"),
    )
    op.create_index("ix_stories_tier_updated_at", "stories", ["tier", "updated_at"])
    op.create_index("ix_stories_tier_created_at", "stories", ["tier", "created_at"])
    op.create_index("ix_stories_cover_asset_id", "stories", ["cover_asset_id"])
    op.create_table(
        "story_scenes",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("story_id", sa.String(40), nullable=False),
        sa.Column("tier", sa.String(40), nullable=False),
        sa.Column("parent_id", sa.String(40), nullable=True),
        sa.Column("choice", sa.Text(), nullable=True),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("narrative", sa.Text(), nullable=False),
        sa.Column("image_prompt", sa.Text(), nullable=False),
        sa.Column("choices", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("model_used", sa.String(400), nullable=True),
        sa.Column("attempts", sa.JSON(), nullable=False),
        sa.Column("image_job_id", sa.String(40), nullable=True),
        sa.Column("video_job_id", sa.String(40), nullable=True),
        sa.Column("image_asset_id", sa.String(40), nullable=True),
        sa.Column("video_asset_id", sa.String(40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["story_id"], ["stories.id"], name="fk_story_scenes_story_id_stories", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["story_scenes.id"], name="fk_story_scenes_parent_id_story_scenes"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_story_scenes"),
    )
    for column in SCENE_INDEXED:
        op.create_index(f"ix_story_scenes_{column}", "story_scenes", [column])
    op.create_table(
        "story_characters",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("tier", sa.String(40), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("photo_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_story_characters"),
    )
    op.create_index("ix_story_characters_tier", "story_characters", ["tier"])


def downgrade() -> None:
    op.drop_index("ix_story_characters_tier", table_name="story_characters")
    op.drop_table("story_characters")
    for column in reversed(SCENE_INDEXED):
        op.drop_index(f"ix_story_scenes_{column}", table_name="story_scenes")
    op.drop_table("story_scenes")
    op.drop_index("ix_stories_cover_asset_id", table_name="stories")
    op.drop_index("ix_stories_tier_created_at", table_name="stories")
    op.drop_index("ix_stories_tier_updated_at", table_name="stories")
    op.drop_table("stories")
