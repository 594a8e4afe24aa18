"""Documents for the tools+data profile and memories: upload, index, retrieve, and what goes into a prompt."""

from __future__ import annotations

import asyncio
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from mmstudio.config import ChatConfig
from mmstudio.domain.chat.documents import (
    Chunk,
    DocumentKind,
    DocumentUnreadable,
    chunk,
    detect_kind,
    extract,
)
from mmstudio.domain.patterns import is_id
from mmstudio.errors import InvalidRequest, PayloadTooLarge

BYTES_PER_MB: Final = 1_000_000  # as `limits.max_body_mb` counts them
MAX_FILENAME_CHARS: Final = 200
MAX_MEMORY_CHARS: Final = 2000
MAX_QUERY_TERMS: Final = 32
MAX_TERM_CHARS: Final = 64
MEMORY_SCAN: Final = 2000  # relevance is scored over at most this many recent memories
SNIPPET_CHARS: Final = 200

MEDIA_TYPES: Final[dict[DocumentKind, str]] = {
    "text": "text/plain",
    "markdown": "text/markdown",
    "pdf": "application/pdf",
}

# Letters and digits only: the underscore is a separator to both full-text indexers (FTS5's
# unicode61, PostgreSQL's parser), and nothing else can reach a query's syntax.
_TERM = re.compile(r"[^\W_]+")
# Words that carry no topic. PostgreSQL's ts_rank has no inverse document frequency, so a passage
# full of "the" would otherwise outrank the one that answers; they also make prefix terms noisy.
_STOPWORD_LIST = """a about after all also an and any are as at be been but by can could did do does for from
    had has have he her his how i if in into is it its just me my no not of on or our she so
    than that the their them then there these they this to us was we were what when where which
    who whom why will with would you your"""
_STOPWORDS: Final = frozenset(_STOPWORD_LIST.split())


@dataclass(frozen=True)
class Document:
    id: str
    conversation_id: str | None  # None: global, retrieved in every conversation
    filename: str
    media_type: str
    kind: DocumentKind
    size_bytes: int
    pages: int
    chunk_count: int
    created_at: datetime


@dataclass(frozen=True)
class Passage:
    document_id: str
    filename: str
    chunk_index: int
    page: int | None  # 1-based for PDFs
    text: str
    score: float  # higher is better; comparable only within one result list


@dataclass(frozen=True)
class Memory:
    id: str
    content: str
    conversation_id: str | None  # where it was remembered; memories apply everywhere
    created_at: datetime


class KnowledgeStore(Protocol):
    """What the service needs from storage. Unknown ids raise `NotFound`."""

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
        """The document and its chunks in one transaction; `NotFound` for an unknown conversation."""
        ...

    async def list_documents(self, conversation_id: str | None) -> list[Document]:
        """Newest first: every document for None, else the conversation's and the global ones."""
        ...

    async def get_document(self, document_id: str) -> Document: ...

    async def delete_document(self, document_id: str) -> None: ...

    async def search_chunks(
        self, terms: Sequence[str], *, conversation_id: str | None, limit: int
    ) -> list[Passage]:
        """Chunks matching any term as a word prefix, best first, from the conversation's documents
        and the global ones (only the global ones for None)."""
        ...

    async def add_memory(self, content: str, conversation_id: str | None) -> Memory: ...

    async def list_memories(self, limit: int | None = None) -> list[Memory]:
        """Newest first."""
        ...

    async def delete_memory(self, memory_id: str) -> None: ...


class KnowledgeService:
    def __init__(self, store: KnowledgeStore, config: ChatConfig) -> None:
        self.store = store
        self.config = config

    # -- documents -------------------------------------------------------------------------------

    @property
    def max_upload_bytes(self) -> int:
        return int(self.config.max_upload_mb * BYTES_PER_MB)

    def check_size(self, size_bytes: int, filename: str = "the upload") -> None:
        """`PayloadTooLarge` when `size_bytes` is over the limit (the web layer calls this early)."""
        if size_bytes > self.max_upload_bytes:
            raise PayloadTooLarge(
                f"{filename} is {_mb(size_bytes)} MB; the upload limit is {_mb(self.max_upload_bytes)} MB "
                "(set chat.max_upload_mb in the config to change it)",
                field="file",
            )

    async def upload(
        self, data: bytes, *, filename: str, content_type: str | None, conversation_id: str | None
    ) -> Document:
        """Extract, chunk and store a document; it is searchable as soon as this returns."""
        name = clean_filename(filename)
        conversation = _conversation_id(conversation_id)
        self.check_size(len(data), repr(name))
        kind = detect_kind(data, filename=name, content_type=content_type)  # 415 before any parsing
        # Extraction is CPU work (PDFs above all): off the event loop.
        pages, chunks = await asyncio.to_thread(_extract_and_chunk, data, name, content_type)
        return await self.store.add_document(
            conversation_id=conversation,
            filename=name,
            media_type=MEDIA_TYPES[kind],
            kind=kind,
            size_bytes=len(data),
            pages=pages,
            chunks=chunks,
        )

    async def list_documents(self, conversation_id: str | None = None) -> list[Document]:
        """Every document for None; else what retrieval in that conversation searches (its own and
        the global ones)."""
        return await self.store.list_documents(_conversation_id(conversation_id))

    async def get_document(self, document_id: str) -> Document:
        return await self.store.get_document(document_id)

    async def delete_document(self, document_id: str) -> None:
        await self.store.delete_document(document_id)

    async def retrieve(
        self, query: str, *, conversation_id: str | None, limit: int | None = None
    ) -> list[Passage]:
        """The passages best matching `query`, best first. Any text is a valid query."""
        terms = query_terms(query)
        if not terms:
            return []
        count = limit if limit is not None and limit > 0 else self.config.retrieval_chunks
        return await self.store.search_chunks(
            terms, conversation_id=_conversation_id(conversation_id), limit=count
        )

    def context_for(self, passages: Sequence[Passage]) -> tuple[str, list[dict[str, Any]]]:
        """The system-prompt block with numbered sources, and the `citations` part items; ("", [])
        when there is nothing to cite."""
        if not passages:
            return "", []
        lines = [
            "Answer using the numbered sources below, from documents the user uploaded. Cite each "
            "source you use as [n] right after the statement it supports. If the sources do not "
            "contain the answer, say so plainly instead of guessing.",
            "",
            "Sources:",
        ]
        citations: list[dict[str, Any]] = []
        for n, passage in enumerate(passages, start=1):
            page = f" p.{passage.page}" if passage.page is not None else ""
            lines.append(f"[{n}] {passage.filename}{page}: {_one_line(passage.text)}")
            citations.append(
                {
                    "n": n,
                    "document_id": passage.document_id,
                    "filename": passage.filename,
                    "page": passage.page,
                    "chunk": passage.chunk_index,
                    "snippet": _snippet(passage.text),
                }
            )
        return "\n".join(lines), citations

    # -- memories --------------------------------------------------------------------------------

    async def add_memory(self, content: str, conversation_id: str | None = None) -> Memory:
        text = _printable(content).strip()
        if not text:
            raise InvalidRequest("a memory needs some text", field="content")
        if len(text) > MAX_MEMORY_CHARS:
            raise InvalidRequest(
                f"a memory is at most {MAX_MEMORY_CHARS} characters; this one is {len(text)}", field="content"
            )
        return await self.store.add_memory(text, _conversation_id(conversation_id))

    async def list_memories(self) -> list[Memory]:
        """Newest first."""
        return await self.store.list_memories()

    async def delete_memory(self, memory_id: str) -> None:
        await self.store.delete_memory(memory_id)

    async def relevant_memories(self, query: str, limit: int | None = None) -> list[Memory]:
        """The memories sharing the most (and rarest) words with `query`, best first; when none
        shares a word, the most recent ones, so a memory-enabled profile still personalises."""
        count = limit if limit is not None and limit > 0 else self.config.memory_items
        memories = await self.store.list_memories(MEMORY_SCAN)
        wanted = _memory_terms(query)
        bags = [_memory_terms(m.content) for m in memories]
        frequency: dict[str, int] = {}
        for bag in bags:
            for term in bag & wanted:
                frequency[term] = frequency.get(term, 0) + 1
        scored = [
            (sum(math.log(1 + len(memories) / frequency[t]) for t in bag & wanted), -age, memory)
            for age, (memory, bag) in enumerate(zip(memories, bags, strict=True))
        ]
        matching = [entry for entry in scored if entry[0] > 0]
        if not matching:
            return memories[:count]
        matching.sort(key=lambda entry: (entry[0], entry[1]), reverse=True)  # ties: the newer first
        return [memory for _, _, memory in matching[:count]]

    def memory_block(self, memories: Sequence[Memory]) -> str:
        """The system-prompt block listing `memories`; "" for none."""
        if not memories:
            return ""
        lines = [
            "What the user asked you to remember about them (use it when it is relevant; do not "
            "recite it unprompted):"
        ]
        lines.extend(f"- {_one_line(m.content)}" for m in memories)
        return "\n".join(lines)


def query_terms(query: str) -> list[str]:
    """The words of a search query, lower-cased, deduplicated, without stopwords (unless that
    leaves nothing), bounded in number and length: safe to put in any full-text query."""
    words = list(dict.fromkeys(w.lower()[:MAX_TERM_CHARS] for w in _TERM.findall(query)))
    topical = [w for w in words if w not in _STOPWORDS]
    return (topical or words)[:MAX_QUERY_TERMS]


def clean_filename(filename: str) -> str:
    """The file's own name: no directories, no control characters, at most MAX_FILENAME_CHARS
    (keeping the extension, which type detection reads)."""
    name = re.split(r"[\\/]", filename)[-1]
    name = "".join(c for c in name if not unicodedata.category(c).startswith("C")).strip()
    if name in ("", ".", ".."):
        return "upload"
    if len(name) > MAX_FILENAME_CHARS:
        stem, dot, extension = name.rpartition(".")
        if dot and stem and len(extension) < 16:
            name = stem[: MAX_FILENAME_CHARS - len(extension) - 1] + "." + extension
        else:
            name = name[:MAX_FILENAME_CHARS]
    return name


def _extract_and_chunk(data: bytes, filename: str, content_type: str | None) -> tuple[int, list[Chunk]]:
    document = extract(data, filename=filename, content_type=content_type)
    chunks = chunk(document)
    if not chunks:
        raise DocumentUnreadable(f"{filename!r} contains no text")
    # PostgreSQL text cannot hold NUL, and some PDFs' text layers produce it; same length keeps
    # each chunk's start/end true.
    return len(document.pages), [
        Chunk(c.index, c.text.replace("\x00", "\ufffd"), c.page, c.start, c.end) for c in chunks
    ]


def _conversation_id(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not is_id(value):
        raise InvalidRequest(
            f"{value[:60]!r} is not a conversation id (ids are 1 to 36 letters, digits or ._:-)",
            field="conversation_id",
        )
    return value


def _printable(text: str) -> str:
    """Without control characters other than newlines and tabs (PostgreSQL refuses NUL)."""
    return "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc")


def _memory_terms(text: str) -> set[str]:
    """Words for comparing memories with a prompt: case and accents folded, stopwords dropped,
    plural and verb endings trimmed (so "dogs" meets "dog" and "hiking" meets "hike")."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return {_stem(w) for w in _TERM.findall(folded) if w not in _STOPWORDS}


def _stem(word: str) -> str:
    """Plural, then verb ending, then a final "e": "hikes", "hiked", "hiking" and "hike" all give "hik"."""
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 4 and word.endswith(("sses", "xes", "ches", "shes")):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if (len(word) > 5 and word.endswith("ing")) or (len(word) > 4 and word.endswith("ed")):
        word = word[:-3] if word.endswith("ing") else word[:-2]
        if word[-1] == word[-2] and word[-1] not in "aeiouslz":  # "running", but not "passed"
            word = word[:-1]
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _snippet(text: str) -> str:
    line = _one_line(text)
    if len(line) <= SNIPPET_CHARS:
        return line
    cut = line.rfind(" ", 0, SNIPPET_CHARS)
    return line[: cut if cut > SNIPPET_CHARS // 2 else SNIPPET_CHARS].rstrip() + "…"


def _mb(size_bytes: int) -> str:
    return f"{size_bytes / BYTES_PER_MB:.3g}"
