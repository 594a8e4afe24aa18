"""Documents and memories: the service with its repository on SQLite (FTS5) and a real PostgreSQL."""

from __future__ import annotations

import random
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from mmstudio.config import ChatConfig
from mmstudio.domain.chat import knowledge as knowledge_module
from mmstudio.domain.chat.documents import DocumentUnreadable
from mmstudio.domain.chat.knowledge import (
    MAX_MEMORY_CHARS,
    KnowledgeService,
    Memory,
    Passage,
    clean_filename,
    query_terms,
)
from mmstudio.errors import InvalidRequest, NotFound, PayloadTooLarge, UnsupportedMediaType
from mmstudio.storage.db import session_factory
from mmstudio.storage.knowledge_repo import KnowledgeRepository, fts5_query, tsquery
from mmstudio.storage.tables import ConversationRow
from tests.domain.chat.test_documents import make_pdf
from tests.storage import conftest as storage_conftest

engine = storage_conftest.engine  # SQLite and PostgreSQL, migrated to head
NO_STORE: Any = None  # for what needs no storage

FILLER = (
    "The quarterly review covered hiring plans, office moves and the budget for the coming year. "
    "Several teams asked for more time to finish their migration work before the holidays. "
    "Project planning meetings will continue every second Tuesday in the large meeting room. "
)
ANSWER = "The launch code for Project Nightingale is 7431, and only the duty officer may use it."

# Strings that are operators, quotes or garbage to FTS5 or to_tsquery if they reached the syntax.
HOSTILE = [
    "",
    " ",
    '"',
    '""',
    "'",
    "''",
    "*",
    "'*'",
    ":*",
    "a:*",
    "AND",
    "OR",
    "NOT",
    "NEAR",
    "NEAR(a b, 2)",
    "a AND OR NOT b",
    "(((",
    ")",
    "!!",
    "&|!<->",
    "foo <-> bar",
    "col:value",
    "text:secret",
    "^start",
    "{a b}",
    "-",
    "+x -y",
    "\\",
    "\\'",
    "'; DROP TABLE documents; --",
    "%_",
    "\x00",
    "a\x00b",
    "\ud800",
    "💥🔥",
    "________",
    "foo_bar",
    "ǅ ½ ⅷ ٣ 中文",
    "x" * 5000,
    " ".join(["word"] * 500),
    " ".join(f"w{i}" for i in range(500)),
]


@pytest.fixture
async def service(engine: Any) -> KnowledgeService:
    store = KnowledgeRepository(session_factory(engine), engine.dialect.name)
    return KnowledgeService(store, ChatConfig())


async def new_conversation(engine: Any) -> str:
    now = datetime.now(UTC)
    conversation_id = str(uuid.uuid4())
    async with session_factory(engine)() as session, session.begin():
        session.add(ConversationRow(id=conversation_id, title="t", created_at=now, updated_at=now))
    return conversation_id


def paragraphs(*texts: str) -> bytes:
    return "\n\n".join(texts).encode()


async def upload_text(
    service: KnowledgeService, body: bytes, name: str = "notes.txt", conversation_id: str | None = None
) -> Any:
    return await service.upload(
        body, filename=name, content_type="text/plain", conversation_id=conversation_id
    )


# --- upload ------------------------------------------------------------------------------------


async def test_upload_text_is_stored_listed_and_found(service: KnowledgeService) -> None:
    body = paragraphs(FILLER * 3, ANSWER, FILLER * 3)
    doc = await upload_text(service, body, name="../../secret/dir/report.txt")
    assert doc.filename == "report.txt" and doc.kind == "text" and doc.media_type == "text/plain"
    assert doc.size_bytes == len(body) and doc.pages == 1 and doc.chunk_count >= 2
    assert doc.conversation_id is None and doc.created_at.tzinfo is not None
    assert await service.get_document(doc.id) == doc
    assert [d.id for d in await service.list_documents()] == [doc.id]


async def test_upload_markdown_and_pdf(service: KnowledgeService) -> None:
    md = await service.upload(
        b"# Setup\n\nRun the installer twice.\n", filename="guide.md", content_type=None, conversation_id=None
    )
    assert md.kind == "markdown" and md.media_type == "text/markdown"
    pdf_bytes = make_pdf([["Introduction to the handbook."], ["Refunds are accepted within 30 days."]])
    pdf = await service.upload(
        pdf_bytes, filename="handbook.pdf", content_type="application/pdf", conversation_id=None
    )
    assert pdf.kind == "pdf" and pdf.pages == 2 and pdf.chunk_count == 2
    [best, *_] = await service.retrieve("refund policy days", conversation_id=None)
    assert best.filename == "handbook.pdf" and best.page == 2 and "30 days" in best.text


async def test_extraction_runs_in_a_worker_thread(
    service: KnowledgeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[threading.Thread] = []
    real = knowledge_module._extract_and_chunk

    def spy(*args: Any) -> Any:
        seen.append(threading.current_thread())
        return real(*args)

    monkeypatch.setattr(knowledge_module, "_extract_and_chunk", spy)
    await upload_text(service, b"hello world")
    assert seen and seen[0] is not threading.main_thread()


async def test_oversize_upload_names_the_limit_and_the_size(engine: Any) -> None:
    store = KnowledgeRepository(session_factory(engine), engine.dialect.name)
    small = KnowledgeService(store, ChatConfig(max_upload_mb=0.001))
    assert small.max_upload_bytes == 1000
    await upload_text(small, b"x" * 1000)  # exactly the limit is fine
    with pytest.raises(PayloadTooLarge) as caught:
        await upload_text(small, b"x" * 2500, name="big.txt")
    assert "0.001 MB" in caught.value.message and "0.0025 MB" in caught.value.message
    assert "'big.txt'" in caught.value.message and caught.value.field == "file"
    assert len(await small.list_documents()) == 1


@pytest.mark.parametrize(
    ("filename", "content_type", "data"),
    [
        ("photo.png", "image/png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20),
        ("setup.exe", "application/octet-stream", b"MZ\x90\x00" + b"\x00" * 20),
    ],
)
async def test_unsupported_type_is_415(
    service: KnowledgeService, filename: str, content_type: str, data: bytes
) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        await service.upload(data, filename=filename, content_type=content_type, conversation_id=None)
    assert "application/pdf" in caught.value.message
    assert await service.list_documents() == []


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (b"%PDF-1.4\n1 0 obj garbage that is not a pdf", "broken.pdf"),
        (b"", "empty.txt"),
        (b"   \n\n  \t ", "blank.txt"),
        (b"binary\x00bytes", "binary.txt"),
    ],
)
async def test_unreadable_documents_are_400(service: KnowledgeService, data: bytes, filename: str) -> None:
    with pytest.raises(DocumentUnreadable) as caught:
        await service.upload(data, filename=filename, content_type=None, conversation_id=None)
    assert not isinstance(caught.value, UnsupportedMediaType) and repr(filename) in caught.value.message


async def test_upload_to_unknown_or_malformed_conversation(service: KnowledgeService) -> None:
    with pytest.raises(NotFound, match="no conversation"):
        await upload_text(service, b"hello", conversation_id=str(uuid.uuid4()))
    with pytest.raises(InvalidRequest) as caught:
        await upload_text(service, b"hello", conversation_id="x" * 80)
    assert caught.value.field == "conversation_id"
    with pytest.raises(InvalidRequest):
        await upload_text(service, b"hello", conversation_id="a\x00b")
    assert await service.list_documents() == []


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\Desktop\\notes.md", "notes.md"),
        ("  spaced.txt  ", "spaced.txt"),
        ("tab\tand\x00nul.txt", "tabandnul.txt"),
        ("", "upload"),
        ("..", "upload"),
        ("dir/", "upload"),
    ],
)
def test_clean_filename(given: str, expected: str) -> None:
    assert clean_filename(given) == expected


def test_long_filenames_keep_their_extension() -> None:
    name = clean_filename("a" * 500 + ".pdf")
    assert len(name) == 200 and name.endswith("a.pdf")
    assert len(clean_filename("b" * 500)) == 200


# --- get and delete ----------------------------------------------------------------------------


async def test_delete_document_removes_it_from_search(service: KnowledgeService) -> None:
    keep = await upload_text(service, b"Zebras are striped horses of the savanna.", name="keep.txt")
    gone = await upload_text(service, b"Zebras sleep standing up at night.", name="gone.txt")
    assert {p.document_id for p in await service.retrieve("zebras", conversation_id=None)} == {
        keep.id,
        gone.id,
    }
    await service.delete_document(gone.id)
    assert [p.document_id for p in await service.retrieve("zebras", conversation_id=None)] == [keep.id]
    for missing in (gone.id, "nope", "", "\x00", "z" * 500):
        with pytest.raises(NotFound):
            await service.get_document(missing)
        with pytest.raises(NotFound):
            await service.delete_document(missing)
    assert [d.id for d in await service.list_documents()] == [keep.id]


# --- retrieval ---------------------------------------------------------------------------------


async def test_the_passage_with_the_answer_ranks_first(service: KnowledgeService) -> None:
    distractors = [
        "Project Falcon is the new name of the planning project, and the project board meets monthly. " * 3,
        "Codes of conduct apply to every project; the duty roster lists who is on call each week. " * 3,
    ]
    doc = await upload_text(
        service, paragraphs(distractors[0], FILLER * 4, ANSWER, FILLER * 4, distractors[1])
    )
    assert doc.chunk_count >= 3
    passages = await service.retrieve(
        "What is the launch code for Project Nightingale?", conversation_id=None
    )
    assert passages and "7431" in passages[0].text
    assert passages == sorted(passages, key=lambda p: p.score, reverse=True)
    assert len(passages) <= ChatConfig().retrieval_chunks


async def test_words_match_as_prefixes_and_limit_applies(service: KnowledgeService) -> None:
    await upload_text(
        service, paragraphs(*(f"Section {i}: nightingales sing at dusk. " * 20 for i in range(8)))
    )
    passages = await service.retrieve("NIGHTINGALE", conversation_id=None, limit=2)
    assert len(passages) == 2 and all("nightingales" in p.text for p in passages)
    assert await service.retrieve("xylophone quartz", conversation_id=None) == []
    assert await service.retrieve("?!", conversation_id=None) == []


async def test_retrieval_is_scoped_to_the_conversation_and_global_documents(
    engine: Any, service: KnowledgeService
) -> None:
    first, second = await new_conversation(engine), await new_conversation(engine)
    mine = await upload_text(service, b"Orchids need indirect light.", conversation_id=first)
    theirs = await upload_text(service, b"Orchids need weekly water.", conversation_id=second)
    shared = await upload_text(service, b"Orchids are flowering plants.")

    def ids(passages: list[Passage]) -> set[str]:
        return {p.document_id for p in passages}

    assert ids(await service.retrieve("orchids", conversation_id=first)) == {mine.id, shared.id}
    assert ids(await service.retrieve("orchids", conversation_id=second)) == {theirs.id, shared.id}
    assert ids(await service.retrieve("orchids", conversation_id=None)) == {shared.id}
    assert {d.id for d in await service.list_documents(first)} == {mine.id, shared.id}
    assert {d.id for d in await service.list_documents()} == {mine.id, theirs.id, shared.id}
    assert mine.conversation_id == first


async def test_deleting_a_conversation_deletes_its_documents(engine: Any, service: KnowledgeService) -> None:
    conversation_id = await new_conversation(engine)
    await upload_text(service, b"Ravens can mimic speech.", conversation_id=conversation_id)
    shared = await upload_text(service, b"Ravens are corvids.")
    async with session_factory(engine)() as session, session.begin():
        await session.delete(await session.get(ConversationRow, conversation_id))
    # The cascade reaches the chunks, and on SQLite their triggers keep the FTS index in step.
    assert [d.id for d in await service.list_documents()] == [shared.id]
    found = await service.retrieve("ravens", conversation_id=conversation_id)
    assert [p.document_id for p in found] == [shared.id]


async def test_hostile_queries_never_raise(service: KnowledgeService) -> None:
    await upload_text(service, b'Quotes "and" operators: AND OR NOT NEAR * ^ : - + ( ) { } \' \\ foo_bar')
    rng = random.Random(4)
    alphabet = "\"'*:^(){}[]&|!<>-+\\/%_.,;~`@#$= \t\nABNORTDEaz09\x00é中🙂"
    generated = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(200)]
    for query in [*HOSTILE, *generated]:
        passages = await service.retrieve(query, conversation_id=None)
        assert isinstance(passages, list)
    assert await service.retrieve("foo_bar", conversation_id=None)
    assert await service.retrieve("NEAR(operators", conversation_id=None)


def test_query_terms_and_full_text_syntax() -> None:
    terms = query_terms('What is the "launch" code? NEAR(x_y)* -- ; DROP café CODE')
    assert terms == ["launch", "code", "near", "x", "y", "drop", "café"]
    assert query_terms("the is a") == ["the", "is", "a"]  # only stopwords: still something to search
    assert len(query_terms(" ".join(f"w{i}" for i in range(100)))) == 32
    assert fts5_query(["launch", "o'k", 'a"b', "__"]) == '"launch"* OR "o"* OR "k"* OR "a"* OR "b"*'
    assert tsquery(["launch", "o'k"]) == "'launch':* | 'o':* | 'k':*"
    assert fts5_query(["", "_", "!!"]) == "" and tsquery(["*"]) == ""


# --- prompt blocks -----------------------------------------------------------------------------


def test_context_for_numbers_sources_and_builds_citations() -> None:
    service = KnowledgeService(NO_STORE, ChatConfig())
    passages = [
        Passage("d1", "handbook.pdf", 4, 3, "Refunds are accepted\nwithin 30 days.", 2.5),
        Passage("d2", "notes.md", 0, None, "word " * 100, 1.0),
    ]
    block, citations = service.context_for(passages)
    assert "[1] handbook.pdf p.3: Refunds are accepted within 30 days." in block
    assert "[2] notes.md: word word" in block
    assert "[n]" in block and "do not contain the answer" in block
    assert citations[0] == {
        "n": 1,
        "document_id": "d1",
        "filename": "handbook.pdf",
        "page": 3,
        "chunk": 4,
        "snippet": "Refunds are accepted within 30 days.",
    }
    assert citations[1]["page"] is None and citations[1]["snippet"].endswith("…")
    assert len(citations[1]["snippet"]) <= 201
    assert service.context_for([]) == ("", [])


# --- memories ----------------------------------------------------------------------------------


async def test_memory_crud(service: KnowledgeService) -> None:
    first = await service.add_memory("  I am vegetarian.  ")
    second = await service.add_memory("My dog is called Rex.", conversation_id="c-1")
    assert first.content == "I am vegetarian." and first.conversation_id is None
    assert second.conversation_id == "c-1"
    assert [m.id for m in await service.list_memories()] == [second.id, first.id]
    await service.delete_memory(first.id)
    assert [m.id for m in await service.list_memories()] == [second.id]
    for missing in (first.id, "nope", "\x00"):
        with pytest.raises(NotFound):
            await service.delete_memory(missing)


@pytest.mark.parametrize("content", ["", "   ", "\n\t", "\x00\x01"])
async def test_empty_memories_are_refused(service: KnowledgeService, content: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await service.add_memory(content)
    assert caught.value.field == "content"


async def test_memory_length_is_bounded(service: KnowledgeService) -> None:
    assert len((await service.add_memory("m" * MAX_MEMORY_CHARS)).content) == MAX_MEMORY_CHARS
    with pytest.raises(InvalidRequest, match="2000"):
        await service.add_memory("m" * (MAX_MEMORY_CHARS + 1))
    # Control characters go (PostgreSQL refuses NUL); newlines stay.
    assert (await service.add_memory("line one\x00\nline two")).content == "line one\nline two"


async def test_relevant_memories(service: KnowledgeService) -> None:
    vegetarian = await service.add_memory("I am vegetarian and avoid fish.")
    dog = await service.add_memory("My dog is called Rex; he loves long walks.")
    lisbon = await service.add_memory("I live in Lisbon, Portugal.")
    hiking = await service.add_memory("Hiking in the mountains is my favourite weekend activity.")

    [best, *_] = await service.relevant_memories("Suggest a VEGETARIAN dinner recipe")
    assert best.id == vegetarian.id
    assert [m.id for m in await service.relevant_memories("What should I name my dogs' new toy?")] == [dog.id]
    hikes = await service.relevant_memories("Any good hikes near Lisbon?")
    assert {m.id for m in hikes} == {lisbon.id, hiking.id}  # "hikes" meets "Hiking"
    # Accents and case fold: "lisbôn" meets "Lisbon".
    assert (await service.relevant_memories("weather in LISBÔN"))[0].id == lisbon.id
    # No shared word at all: the most recent ones, so the profile still personalises.
    recent = await service.relevant_memories("Write a haiku about autumn", limit=2)
    assert [m.id for m in recent] == [hiking.id, lisbon.id]
    assert len(await service.relevant_memories("anything", limit=10)) == 4


async def test_relevant_memories_prefer_rare_words_then_recency(service: KnowledgeService) -> None:
    older = await service.add_memory("I like coffee in the morning.")
    rare = await service.add_memory("My sister Ana visits every morning in spring.")
    newer = await service.add_memory("Morning runs keep me sane.")
    ranked = await service.relevant_memories("Plan a morning with Ana")
    assert ranked[0].id == rare.id  # "ana" is rarer than "morning"
    assert [m.id for m in ranked[1:]] == [newer.id, older.id]  # equal scores: the newer first


async def test_relevant_memories_with_none_stored(service: KnowledgeService) -> None:
    assert await service.relevant_memories("hello") == []


def test_memory_block() -> None:
    service = KnowledgeService(NO_STORE, ChatConfig())
    now = datetime.now(UTC)
    block = service.memory_block(
        [Memory("1", "I am vegetarian.", None, now), Memory("2", "Two\nlines", None, now)]
    )
    assert block.splitlines()[1:] == ["- I am vegetarian.", "- Two lines"]
    assert "remember" in block.splitlines()[0]
    assert service.memory_block([]) == ""
