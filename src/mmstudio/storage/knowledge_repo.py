"""Uploaded documents with their full-text-searchable chunks, and memories. Returns domain objects.

Search is full text on both databases: SQLite through the `document_chunks_fts` FTS5 table (kept
in sync by triggers, ranked by bm25), PostgreSQL with `to_tsvector('simple', text)` at query time
(ranked by ts_rank). Both match any term as a word prefix: retrieval wants recall, the rank sorts.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any, Final, cast

from sqlalchemy import delete, insert, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mmstudio.domain.chat.documents import Chunk, DocumentKind
from mmstudio.domain.chat.knowledge import Document, Memory, Passage
from mmstudio.errors import NotFound
from mmstudio.storage._time import utc, utc_now
from mmstudio.storage.tables import ConversationRow, DocumentChunkRow, DocumentRow, MemoryRow

# Whatever the caller passes, only letters and digits reach a query's syntax.
_SAFE_TERM = re.compile(r"[^\W_]+")
_MAX_TERMS: Final = 32

_SQLITE_SEARCH = text(
    """
    SELECT c.document_id, d.filename, c.idx, c.page, c.text, -bm25(document_chunks_fts) AS score
    FROM document_chunks_fts
    JOIN document_chunks AS c ON c.id = document_chunks_fts.rowid
    JOIN documents AS d ON d.id = c.document_id
    WHERE document_chunks_fts MATCH :query
      AND (d.conversation_id IS NULL OR d.conversation_id = :conversation_id)
    ORDER BY bm25(document_chunks_fts), c.document_id, c.idx
    LIMIT :limit
    """
)
# The expression is spelled exactly as an expression index on it would be.
_POSTGRES_SEARCH = text(
    """
    SELECT c.document_id, d.filename, c.idx, c.page, c.text,
           ts_rank(to_tsvector('simple', c.text), q.query) AS score
    FROM document_chunks AS c
    JOIN documents AS d ON d.id = c.document_id
    CROSS JOIN (SELECT to_tsquery('simple', :query) AS query) AS q
    WHERE to_tsvector('simple', c.text) @@ q.query
      AND (d.conversation_id IS NULL OR d.conversation_id = :conversation_id)
    ORDER BY score DESC, c.document_id, c.idx
    LIMIT :limit
    """
)


def _plausible_id(value: str) -> bool:
    # PostgreSQL refuses NUL in a parameter, and no id is longer than a UUID.
    return 0 < len(value) <= 36 and "\x00" not in value


def _document(row: DocumentRow) -> Document:
    return Document(
        id=row.id,
        conversation_id=row.conversation_id,
        filename=row.filename,
        media_type=row.media_type,
        kind=cast(DocumentKind, row.kind),
        size_bytes=row.size_bytes,
        pages=row.pages,
        chunk_count=row.chunk_count,
        created_at=utc(row.created_at),
    )


def _memory(row: MemoryRow) -> Memory:
    return Memory(
        id=row.id, content=row.content, conversation_id=row.conversation_id, created_at=utc(row.created_at)
    )


def fts5_query(terms: Sequence[str]) -> str:
    """`"w1"* OR "w2"*`: each word a quoted prefix term, so no word is read as an operator."""
    return " OR ".join(f'"{w}"*' for w in _safe_terms(terms))


def tsquery(terms: Sequence[str]) -> str:
    """`'w1':* | 'w2':*` for to_tsquery: quoted operands, so no word is read as an operator."""
    return " | ".join(f"'{w}':*" for w in _safe_terms(terms))


def _safe_terms(terms: Sequence[str]) -> list[str]:
    words = (w for term in terms for w in _SAFE_TERM.findall(term))
    return list(dict.fromkeys(words))[:_MAX_TERMS]


class KnowledgeRepository:
    """The `documents`, `document_chunks` (and on SQLite `document_chunks_fts`) and `memories` tables."""

    def __init__(self, sessions: async_sessionmaker[Any], dialect: str) -> None:
        self._sessions = sessions
        self._dialect = dialect

    # -- documents -------------------------------------------------------------------------------

    async def add_document(
        self,
        *,
        conversation_id: str | None,
        filename: str,
        media_type: str,
        kind: DocumentKind,
        size_bytes: int,
        pages: int,
        chunks: Sequence[Chunk],
    ) -> Document:
        row = DocumentRow(
            id=str(uuid.uuid4()),
            conversation_id=conversation_id,
            filename=filename,
            media_type=media_type,
            kind=kind,
            size_bytes=size_bytes,
            pages=pages,
            chunk_count=len(chunks),
            created_at=utc_now(),
        )
        try:
            async with self._sessions() as session, session.begin():
                if conversation_id is not None:
                    await self._require_conversation(session, conversation_id)
                session.add(row)
                await session.flush()  # the document row first: the chunks reference it
                if chunks:
                    await session.execute(
                        insert(DocumentChunkRow),
                        [
                            {
                                "document_id": row.id,
                                "idx": c.index,
                                "page": c.page,
                                "start": c.start,
                                "end": c.end,
                                "text": c.text,
                            }
                            for c in chunks
                        ],
                    )
        except IntegrityError as e:
            if conversation_id is None:
                raise
            # The conversation was deleted between the check and the commit.
            raise NotFound(f"no conversation with id {conversation_id!r}") from e
        return _document(row)

    @staticmethod
    async def _require_conversation(session: AsyncSession, conversation_id: str) -> None:
        if not _plausible_id(conversation_id) or await session.get(ConversationRow, conversation_id) is None:
            raise NotFound(f"no conversation with id {conversation_id!r}")

    async def list_documents(self, conversation_id: str | None) -> list[Document]:
        query = select(DocumentRow).order_by(DocumentRow.created_at.desc(), DocumentRow.id)
        if conversation_id is not None:
            query = query.where(
                or_(DocumentRow.conversation_id.is_(None), DocumentRow.conversation_id == conversation_id)
            )
        async with self._sessions() as session:
            rows = (await session.scalars(query)).all()
        return [_document(row) for row in rows]

    async def get_document(self, document_id: str) -> Document:
        async with self._sessions() as session:
            row = await session.get(DocumentRow, document_id) if _plausible_id(document_id) else None
        if row is None:
            raise NotFound(f"no document with id {document_id!r}")
        return _document(row)

    async def delete_document(self, document_id: str) -> None:
        if not _plausible_id(document_id):
            raise NotFound(f"no document with id {document_id!r}")
        async with self._sessions() as session, session.begin():
            # Chunks explicitly, not only by ON DELETE CASCADE: their delete triggers are what keep
            # SQLite's external-content FTS index in step.
            await session.execute(delete(DocumentChunkRow).where(DocumentChunkRow.document_id == document_id))
            deleted = await session.execute(delete(DocumentRow).where(DocumentRow.id == document_id))
            if cast(Any, deleted).rowcount == 0:
                raise NotFound(f"no document with id {document_id!r}")

    async def search_chunks(
        self, terms: Sequence[str], *, conversation_id: str | None, limit: int
    ) -> list[Passage]:
        if self._dialect == "sqlite":
            statement, query = _SQLITE_SEARCH, fts5_query(terms)
        else:
            statement, query = _POSTGRES_SEARCH, tsquery(terms)
        if not query or limit <= 0:
            return []
        params = {"query": query, "conversation_id": conversation_id, "limit": limit}
        async with self._sessions() as session:
            rows = (await session.execute(statement, params)).all()
        return [
            Passage(
                document_id=r.document_id,
                filename=r.filename,
                chunk_index=r.idx,
                page=r.page,
                text=r.text,
                score=float(r.score),
            )
            for r in rows
        ]

    # -- memories --------------------------------------------------------------------------------

    async def add_memory(self, content: str, conversation_id: str | None) -> Memory:
        row = MemoryRow(
            id=str(uuid.uuid4()), content=content, conversation_id=conversation_id, created_at=utc_now()
        )
        async with self._sessions() as session, session.begin():
            session.add(row)
        return _memory(row)

    async def list_memories(self, limit: int | None = None) -> list[Memory]:
        query = select(MemoryRow).order_by(MemoryRow.created_at.desc(), MemoryRow.id.desc()).limit(limit)
        async with self._sessions() as session:
            rows = (await session.scalars(query)).all()
        return [_memory(row) for row in rows]

    async def delete_memory(self, memory_id: str) -> None:
        if not _plausible_id(memory_id):
            raise NotFound(f"no memory with id {memory_id!r}")
        async with self._sessions() as session, session.begin():
            deleted = await session.execute(delete(MemoryRow).where(MemoryRow.id == memory_id))
            if cast(Any, deleted).rowcount == 0:
                raise NotFound(f"no memory with id {memory_id!r}")
