"""SQLAlchemy table definitions. Only `storage` imports these; repositories return domain objects."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class EndpointRow(Base):
    """A user-registered server (Ollama, LM Studio, any OpenAI-compatible /v1)."""

    __tablename__ = "endpoints"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    provider_id: Mapped[str] = mapped_column(String(40), unique=True)
    platform: Mapped[str] = mapped_column(String(20))
    base_url: Mapped[str] = mapped_column(String(500))
    # Fernet-encrypted with the data directory's secret key; never the plain key.
    api_key_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RegisteredModelRow(Base):
    """A model the user named on one of their endpoints ("My Gemma 2B")."""

    __tablename__ = "registered_models"
    __table_args__ = (UniqueConstraint("endpoint_id", "upstream_model"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"), index=True)
    upstream_model: Mapped[str] = mapped_column(String(300))
    display_name: Mapped[str] = mapped_column(String(200))
    alias: Mapped[str | None] = mapped_column(String(100), unique=True, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ModelUsageRow(Base):
    """Per-model session tracking: successful generations and when the model was last used."""

    __tablename__ = "model_usage"

    model_id: Mapped[str] = mapped_column(String(400), primary_key=True)
    sessions: Mapped[int] = mapped_column(Integer, default=0)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class PreferenceRow(Base):
    """A studio-wide setting the user chose in the UI or CLI (e.g. the active model): JSON by key."""

    __tablename__ = "preferences"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class GatewayKeyRow(Base):
    """A key clients present to /v1 and /api. Only a SHA-256 hash of the key is stored."""

    __tablename__ = "gateway_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # first characters, to recognise a key in lists
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    rpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    tiers: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # story tiers it is scoped to


class RequestMetricRow(Base):
    """One row per routed request (see domain.types.RequestRecord)."""

    __tablename__ = "request_metrics"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the request id
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    key_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    route: Mapped[str] = mapped_column(String(20))
    model_requested: Mapped[str | None] = mapped_column(String(400), nullable=True)
    model_used: Mapped[str | None] = mapped_column(String(400), nullable=True, index=True)
    provider: Mapped[str | None] = mapped_column(String(40), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    fallback: Mapped[bool] = mapped_column(Boolean, default=False)
    outcome: Mapped[str] = mapped_column(String(20))
    error_kind: Mapped[str | None] = mapped_column(String(40), nullable=True)
    status_code: Mapped[int] = mapped_column(Integer)
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    latency_ms: Mapped[float] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    tokens_per_second: Mapped[float | None] = mapped_column(Float, nullable=True)
    cost_usd: Mapped[float | None] = mapped_column(Float, nullable=True)


# -- Chat Studio ----------------------------------------------------------------------------------
# Messages are rows linked by `parent_id`; a conversation's branches, siblings and active path are
# derived by queries (never one JSON blob per conversation). SQLite adds FTS5 tables for search in
# migration 0003 (virtual tables, so not declared here); PostgreSQL searches with to_tsvector.


class PromptProfileRow(Base):
    """A named system prompt with generation parameters."""

    __tablename__ = "prompt_profiles"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    system_prompt: Mapped[str] = mapped_column(Text, default="")
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    memory: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ConversationRow(Base):
    """A conversation; `current_leaf_id` is the last message of the active branch."""

    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_archived_updated", "archived", "pinned", "updated_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    title: Mapped[str] = mapped_column(String(300), default="New chat")
    model: Mapped[str | None] = mapped_column(String(400), nullable=True)
    prompt_profile_id: Mapped[str | None] = mapped_column(
        ForeignKey("prompt_profiles.id", ondelete="SET NULL"), nullable=True
    )
    routing_profile: Mapped[str] = mapped_column(String(20), default="direct")
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    current_leaf_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MessageRow(Base):
    """One message. `parts` holds text, image, tool call and tool result parts; `text` their plain
    text (for search and cheap listing)."""

    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_conversation_parent", "conversation_id", "parent_id"),)

    # An integer key so SQLite's FTS5 index can follow the rows (content_rowid); `id` is the public id.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), nullable=True, index=True
    )
    role: Mapped[str] = mapped_column(String(20))
    parts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    text: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), index=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    model_requested: Mapped[str | None] = mapped_column(String(400), nullable=True)
    model: Mapped[str | None] = mapped_column(String(400), nullable=True)
    provider: Mapped[str | None] = mapped_column(String(40), nullable=True)
    input_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    output_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    ttft_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    attempts: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ChatMetricRow(Base):
    """One row per finished assistant message."""

    __tablename__ = "chat_metrics"

    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(36), index=True)
    model: Mapped[str | None] = mapped_column(String(400), nullable=True)
    provider: Mapped[str | None] = mapped_column(String(40), nullable=True)
    outcome: Mapped[str] = mapped_column(String(20))
    fallback: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    ttft_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    tokens_per_second: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class MemoryRow(Base):
    """Something the user (or the agent, on their behalf) asked to remember."""

    __tablename__ = "memories"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    content: Mapped[str] = mapped_column(Text)
    conversation_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DocumentRow(Base):
    """An uploaded document (text, Markdown, PDF); its text lives in `document_chunks`."""

    __tablename__ = "documents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    conversation_id: Mapped[str | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), nullable=True, index=True
    )
    filename: Mapped[str] = mapped_column(String(300))
    media_type: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    size_bytes: Mapped[int] = mapped_column(Integer)
    pages: Mapped[int] = mapped_column(Integer, default=1)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DocumentChunkRow(Base):
    """One retrievable passage of a document."""

    __tablename__ = "document_chunks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    idx: Mapped[int] = mapped_column(Integer)
    page: Mapped[int | None] = mapped_column(Integer, nullable=True)
    start: Mapped[int] = mapped_column(Integer)
    end: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)


class CompareRunRow(Base):
    """One prompt sent to two to four models side by side."""

    __tablename__ = "compare_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    prompt: Mapped[str] = mapped_column(Text)
    models: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class CompareAnswerRow(Base):
    """One side's answer in a compare run."""

    __tablename__ = "compare_answers"
    __table_args__ = (UniqueConstraint("run_id", "side"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("compare_runs.id", ondelete="CASCADE"), index=True)
    side: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(400))
    model_used: Mapped[str | None] = mapped_column(String(400), nullable=True)
    text: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    ttft_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    output_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)


class VoteRow(Base):
    """The user's verdict on a compare run (one per run; voting again replaces it)."""

    __tablename__ = "votes"

    run_id: Mapped[str] = mapped_column(ForeignKey("compare_runs.id", ondelete="CASCADE"), primary_key=True)
    winner: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CodegenProjectRow(Base):
    """A Creator Studio generation: stored before the model is called, finished when it ends."""

    __tablename__ = "codegen_projects"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    framework: Mapped[str] = mapped_column(String(40))
    target_type: Mapped[str] = mapped_column(String(40))
    model_requested: Mapped[str | None] = mapped_column(String(400), nullable=True)
    status: Mapped[str] = mapped_column(String(20))
    model_used: Mapped[str | None] = mapped_column(String(400), nullable=True)
    model_name: Mapped[str | None] = mapped_column(String(400), nullable=True)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    skipped: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    raw_text: Mapped[str] = mapped_column(Text, default="")
    file_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CodegenFileRow(Base):
    """One generated file of a project, in the order the model wrote them."""

    __tablename__ = "codegen_files"

    project_id: Mapped[str] = mapped_column(
        ForeignKey("codegen_projects.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(String(300))
    language: Mapped[str] = mapped_column(String(40))
    content: Mapped[str] = mapped_column(Text)


class MediaAssetRow(Base):
    """A stored file (a generated image with its recipe, or an upload). The bytes live in the media
    store under their sha256; `model_used`, `provider` and `prompt` are copied out of the recipe so the
    gallery can filter and search without reading JSON."""

    __tablename__ = "media_assets"
    __table_args__ = (Index("ix_media_assets_kind_created_at", "kind", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    mime: Mapped[str] = mapped_column(String(60))
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recipe: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    cost_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    parent_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    tier: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    filename: Mapped[str | None] = mapped_column(String(300), nullable=True)
    model_used: Mapped[str | None] = mapped_column(String(400), nullable=True, index=True)
    provider: Mapped[str | None] = mapped_column(String(60), nullable=True, index=True)
    prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # videos
    fps: Mapped[float | None] = mapped_column(Float, nullable=True)


class JobRow(Base):
    """A durable generation job (see domain/jobs/types.py). Written before any upstream call; the
    upstream handle is set in the same UPDATE that records the submission."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_state_priority_created_at", "state", "priority", "created_at"),
        Index("ix_jobs_updated_at", "updated_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    state: Mapped[str] = mapped_column(String(20))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    recipe: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    plan: Mapped[list[str]] = mapped_column(JSON, default=list)
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    provider: Mapped[str | None] = mapped_column(String(60), nullable=True)
    model: Mapped[str | None] = mapped_column(String(400), nullable=True)
    upstream_handle: Mapped[str | None] = mapped_column(String(500), nullable=True)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    progress: Mapped[float | None] = mapped_column(Float, nullable=True)
    progress_estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    depends_on: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error_kind: Mapped[str | None] = mapped_column(String(40), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    output_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class VideoProjectRow(Base):
    """A Video Studio project and its settings for the next shot, one column per setting so that two
    tabs changing different settings at once both keep their change (last write wins per field)."""

    __tablename__ = "video_projects"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    aspect_ratio: Mapped[str] = mapped_column(String(20))
    resolution: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    order_version: Mapped[int] = mapped_column(Integer, default=0)  # bumped by every change of the order
    selected_clip_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    playhead_s: Mapped[float] = mapped_column(Float, default=0.0)
    model: Mapped[str | None] = mapped_column(String(400), nullable=True)
    start_frame: Mapped[str | None] = mapped_column(String(40), nullable=True)
    end_frame: Mapped[str | None] = mapped_column(String(40), nullable=True)
    pan_x: Mapped[float] = mapped_column(Float, default=0.0)
    pan_y: Mapped[float] = mapped_column(Float, default=0.0)
    zoom: Mapped[float] = mapped_column(Float, default=0.0)
    tilt: Mapped[float] = mapped_column(Float, default=0.0)
    roll: Mapped[float] = mapped_column(Float, default=0.0)
    duration_s: Mapped[float] = mapped_column(Float, default=4.0)
    stability: Mapped[float] = mapped_column(Float, default=0.0)
    amplitude: Mapped[float] = mapped_column(Float, default=0.0)
    coherence: Mapped[float] = mapped_column(Float, default=0.0)
    seed: Mapped[int] = mapped_column(Integer, default=-1)
    loop: Mapped[bool] = mapped_column(Boolean, default=False)
    interpolate: Mapped[bool] = mapped_column(Boolean, default=True)
    prompt: Mapped[str] = mapped_column(Text, default="")
    negative_prompt: Mapped[str] = mapped_column(Text, default="")


class VideoClipRow(Base):
    """A clip on a project's timeline: the job that makes it (or an uploaded video), its output, the
    settings it was made with, and its trim. `position` orders the live clips; a deleted clip keeps its
    row (`deleted_at`) so the delete can be undone."""

    __tablename__ = "video_clips"
    __table_args__ = (Index("ix_video_clips_project_id_position", "project_id", "position"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(40), ForeignKey("video_projects.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    asset_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    trim_in_s: Mapped[float] = mapped_column(Float, default=0.0)
    trim_out_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


# -- Story mode -----------------------------------------------------------------------------------
# A story's scenes are rows linked by `parent_id` (a branch is a second child of one scene; both are
# kept), never one JSON blob. Every row carries its tier and every query filters by it. `title_key` and
# `premise_key` are the casefolded title and premise, written by the repository with each change, so
# search and the A-Z sort behave the same on SQLite (whose lower() and LIKE fold ASCII only) and PostgreSQL.


class StoryRow(Base):
    """A story of one tier; `scene_count` is kept by the repository in the transaction that adds a scene."""

    __tablename__ = "stories"
    __table_args__ = (
        Index("ix_stories_tier_updated_at", "tier", "updated_at"),
        Index("ix_stories_tier_created_at", "tier", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tier: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(Text)
    title_key: Mapped[str] = mapped_column(Text)
    premise: Mapped[str] = mapped_column(Text)
    premise_key: Mapped[str] = mapped_column(Text)
    text_model: Mapped[str] = mapped_column(String(400))
    image_model: Mapped[str] = mapped_column(String(400))
    video_model: Mapped[str | None] = mapped_column(String(400), nullable=True)
    memory_mode: Mapped[bool] = mapped_column(Boolean, default=False)
    video_mode: Mapped[bool] = mapped_column(Boolean, default=False)
    scene_count: Mapped[int] = mapped_column(Integer, default=0)
    cover_asset_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    current_scene_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    has_video: Mapped[bool] = mapped_column(Boolean, default=False)
    saved: Mapped[bool] = mapped_column(Boolean, default=False)
    legacy_format: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StorySceneRow(Base):
    """One scene: the answer to one choice of its parent (`parent_id` None: the story's first scene)."""

    __tablename__ = "story_scenes"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    story_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("stories.id", ondelete="CASCADE"), index=True
    )
    tier: Mapped[str] = mapped_column(String(40))  # the story's, copied so scene reads filter without a join
    parent_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("story_scenes.id"), nullable=True, index=True
    )
    choice: Mapped[str | None] = mapped_column(Text, nullable=True)
    depth: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20))
    title: Mapped[str] = mapped_column(Text, default="")
    narrative: Mapped[str] = mapped_column(Text, default="")
    image_prompt: Mapped[str] = mapped_column(Text, default="")
    choices: Mapped[list[str]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    model_used: Mapped[str | None] = mapped_column(String(400), nullable=True)
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    image_job_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    video_job_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    image_asset_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    video_asset_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StoryCharacterRow(Base):
    """A tier's character with its reference photos (image asset ids, in order)."""

    __tablename__ = "story_characters"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tier: Mapped[str] = mapped_column(String(40), index=True)
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    photo_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
