"""Chat Studio: profiles, conversations, message trees, chat metrics, memories, documents, compare runs.

On SQLite this also creates the FTS5 search tables and the triggers that keep them in sync; on
PostgreSQL, GIN indexes on `to_tsvector('simple', …)` (the exact expression the queries use). Both
carry `*_fts*` names, which `env.py` leaves out of autogenerate comparisons. A later migration that rebuilds
`messages`, `conversations` or `document_chunks` in batch mode (copy, drop, rename) drops these
triggers with the old table and must create them again: call `create_sqlite_search()` after it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TOKENIZE = "tokenize='unicode61 remove_diacritics 2'"

# External content on `messages`: the index follows `seq` and reads the text back from the table, so
# message text is stored once. The 'delete' rows must carry the text that was indexed (old.text).
MESSAGES_FTS = [
    "CREATE VIRTUAL TABLE messages_fts USING fts5("
    f"text, content='messages', content_rowid='seq', {TOKENIZE})",
    """CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts(rowid, text) VALUES (new.seq, new.text);
    END""",
    """CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.seq, old.text);
        INSERT INTO messages_fts(rowid, text) VALUES (new.seq, new.text);
    END""",
    """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.seq, old.text);
    END""",
]

# Conversations have a string key, and their implicit rowid may change on VACUUM, so the FTS rowid is
# taken from a small map with an INTEGER PRIMARY KEY (stable). Without it a title change would have
# to find its row by scanning the whole FTS table (2 ms at 10,000 conversations, measured).
CONVERSATIONS_FTS = [
    f"CREATE VIRTUAL TABLE conversations_fts USING fts5(title, conversation_id UNINDEXED, {TOKENIZE})",
    """CREATE TABLE conversations_fts_map (
        id INTEGER PRIMARY KEY,
        conversation_id VARCHAR(36) NOT NULL UNIQUE
    )""",
    """CREATE TRIGGER conversations_fts_insert AFTER INSERT ON conversations BEGIN
        INSERT INTO conversations_fts_map(conversation_id) VALUES (new.id);
        INSERT INTO conversations_fts(rowid, title, conversation_id)
            VALUES ((SELECT id FROM conversations_fts_map WHERE conversation_id = new.id), new.title, new.id);
    END""",
    """CREATE TRIGGER conversations_fts_update AFTER UPDATE OF title ON conversations BEGIN
        UPDATE conversations_fts SET title = new.title
            WHERE rowid = (SELECT id FROM conversations_fts_map WHERE conversation_id = old.id);
    END""",
    """CREATE TRIGGER conversations_fts_delete AFTER DELETE ON conversations BEGIN
        DELETE FROM conversations_fts
            WHERE rowid = (SELECT id FROM conversations_fts_map WHERE conversation_id = old.id);
        DELETE FROM conversations_fts_map WHERE conversation_id = old.id;
    END""",
]

DOCUMENT_CHUNKS_FTS = [
    "CREATE VIRTUAL TABLE document_chunks_fts USING fts5("
    f"text, content='document_chunks', content_rowid='id', {TOKENIZE})",
    """CREATE TRIGGER document_chunks_fts_insert AFTER INSERT ON document_chunks BEGIN
        INSERT INTO document_chunks_fts(rowid, text) VALUES (new.id, new.text);
    END""",
    """CREATE TRIGGER document_chunks_fts_update AFTER UPDATE OF text ON document_chunks BEGIN
        INSERT INTO document_chunks_fts(document_chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
        INSERT INTO document_chunks_fts(rowid, text) VALUES (new.id, new.text);
    END""",
    """CREATE TRIGGER document_chunks_fts_delete AFTER DELETE ON document_chunks BEGIN
        INSERT INTO document_chunks_fts(document_chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END""",
]

SEARCH_TRIGGERS = [
    f"{table}_fts_{event}"
    for table in ("messages", "conversations", "document_chunks")
    for event in ("insert", "update", "delete")
]
SEARCH_TABLES = ["messages_fts", "conversations_fts", "conversations_fts_map", "document_chunks_fts"]


# Without these every search evaluates to_tsvector on every row (2.5 s over 200,000 messages, measured).
# SQLAlchemy 2 reflects expression indexes without warnings; env.py keeps them out of comparisons.
POSTGRES_SEARCH_INDEXES = {
    "ix_messages_fts": ("messages", "text"),
    "ix_conversations_fts": ("conversations", "title"),
    "ix_document_chunks_fts": ("document_chunks", "text"),
}


def create_postgres_search() -> None:
    for name, (table, column) in POSTGRES_SEARCH_INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON {table} USING gin (to_tsvector('simple', {column}))")


def create_sqlite_search() -> None:
    """Create the FTS5 tables and triggers, indexing the rows already there (none on a fresh upgrade)."""
    for statement in (*MESSAGES_FTS, *CONVERSATIONS_FTS, *DOCUMENT_CHUNKS_FTS):
        op.execute(statement)
    op.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
    op.execute("INSERT INTO document_chunks_fts(document_chunks_fts) VALUES ('rebuild')")
    op.execute("INSERT INTO conversations_fts_map(conversation_id) SELECT id FROM conversations")
    op.execute(
        "INSERT INTO conversations_fts(rowid, title, conversation_id) "
        "SELECT m.id, c.title, c.id FROM conversations c "
        "JOIN conversations_fts_map m ON m.conversation_id = c.id"
    )


def drop_sqlite_search() -> None:
    for trigger in SEARCH_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    for table in SEARCH_TABLES:
        op.execute(f"DROP TABLE IF EXISTS {table}")


def upgrade() -> None:
    op.create_table(
        "prompt_profiles",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("system_prompt", sa.Text(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("memory", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_prompt_profiles"),
        sa.UniqueConstraint("name", name="uq_prompt_profiles_name"),
    )
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("model", sa.String(400), nullable=True),
        sa.Column("prompt_profile_id", sa.String(36), nullable=True),
        sa.Column("routing_profile", sa.String(20), nullable=False),
        sa.Column("pinned", sa.Boolean(), nullable=False),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.Column("current_leaf_id", sa.String(36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_conversations"),
        sa.ForeignKeyConstraint(
            ["prompt_profile_id"],
            ["prompt_profiles.id"],
            ondelete="SET NULL",
            name="fk_conversations_prompt_profile_id_prompt_profiles",
        ),
    )
    op.create_index(
        "ix_conversations_archived_updated", "conversations", ["archived", "pinned", "updated_at"]
    )
    op.create_table(
        "messages",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("conversation_id", sa.String(36), nullable=False),
        sa.Column("parent_id", sa.String(36), nullable=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("parts", sa.JSON(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("model_requested", sa.String(400), nullable=True),
        sa.Column("model", sa.String(400), nullable=True),
        sa.Column("provider", sa.String(40), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("ttft_ms", sa.Float(), nullable=True),
        sa.Column("attempts", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_messages"),
        sa.UniqueConstraint("id", name="uq_messages_id"),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            ondelete="CASCADE",
            name="fk_messages_conversation_id_conversations",
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["messages.id"], ondelete="CASCADE", name="fk_messages_parent_id_messages"
        ),
    )
    op.create_index("ix_messages_conversation_parent", "messages", ["conversation_id", "parent_id"])
    op.create_index("ix_messages_parent_id", "messages", ["parent_id"])
    op.create_index("ix_messages_status", "messages", ["status"])
    op.create_table(
        "chat_metrics",
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("conversation_id", sa.String(36), nullable=False),
        sa.Column("model", sa.String(400), nullable=True),
        sa.Column("provider", sa.String(40), nullable=True),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("fallback", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("ttft_ms", sa.Float(), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("tokens_per_second", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name="pk_chat_metrics"),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], ondelete="CASCADE", name="fk_chat_metrics_message_id_messages"
        ),
    )
    op.create_index("ix_chat_metrics_conversation_id", "chat_metrics", ["conversation_id"])
    op.create_index("ix_chat_metrics_created_at", "chat_metrics", ["created_at"])
    op.create_table(
        "memories",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("conversation_id", sa.String(36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_memories"),
    )
    op.create_table(
        "documents",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("conversation_id", sa.String(36), nullable=True),
        sa.Column("filename", sa.String(300), nullable=False),
        sa.Column("media_type", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_documents"),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            ondelete="CASCADE",
            name="fk_documents_conversation_id_conversations",
        ),
    )
    op.create_index("ix_documents_conversation_id", "documents", ["conversation_id"])
    op.create_table(
        "document_chunks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("document_id", sa.String(36), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("page", sa.Integer(), nullable=True),
        sa.Column("start", sa.Integer(), nullable=False),
        sa.Column("end", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_document_chunks"),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            ondelete="CASCADE",
            name="fk_document_chunks_document_id_documents",
        ),
    )
    op.create_index("ix_document_chunks_document_id", "document_chunks", ["document_id"])
    op.create_table(
        "compare_runs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_compare_runs"),
    )
    op.create_index("ix_compare_runs_created_at", "compare_runs", ["created_at"])
    op.create_table(
        "compare_answers",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("side", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(400), nullable=False),
        sa.Column("model_used", sa.String(400), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("ttft_ms", sa.Float(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_compare_answers"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["compare_runs.id"], ondelete="CASCADE", name="fk_compare_answers_run_id_compare_runs"
        ),
        sa.UniqueConstraint("run_id", "side", name="uq_compare_answers_run_id"),
    )
    op.create_index("ix_compare_answers_run_id", "compare_answers", ["run_id"])
    op.create_table(
        "votes",
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("winner", sa.String(400), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name="pk_votes"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["compare_runs.id"], ondelete="CASCADE", name="fk_votes_run_id_compare_runs"
        ),
    )
    if op.get_bind().dialect.name == "sqlite":
        create_sqlite_search()
    else:
        create_postgres_search()


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        drop_sqlite_search()
    else:
        for name in POSTGRES_SEARCH_INDEXES:
            op.execute(f"DROP INDEX IF EXISTS {name}")
    op.drop_table("votes")
    op.drop_index("ix_compare_answers_run_id", table_name="compare_answers")
    op.drop_table("compare_answers")
    op.drop_index("ix_compare_runs_created_at", table_name="compare_runs")
    op.drop_table("compare_runs")
    op.drop_index("ix_document_chunks_document_id", table_name="document_chunks")
    op.drop_table("document_chunks")
    op.drop_index("ix_documents_conversation_id", table_name="documents")
    op.drop_table("documents")
    op.drop_table("memories")
    op.drop_index("ix_chat_metrics_created_at", table_name="chat_metrics")
    op.drop_index("ix_chat_metrics_conversation_id", table_name="chat_metrics")
    op.drop_table("chat_metrics")
    op.drop_index("ix_messages_status", table_name="messages")
    op.drop_index("ix_messages_parent_id", table_name="messages")
    op.drop_index("ix_messages_conversation_parent", table_name="messages")
    op.drop_table("messages")
    op.drop_index("ix_conversations_archived_updated", table_name="conversations")
    op.drop_table("conversations")
    op.drop_table("prompt_profiles")
