"""Documents and memories through the real app: uploads, limits, search, scoping, memories."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from mmstudio.config import ChatConfig, Limits, StudioConfig
from mmstudio.settings import Settings
from mmstudio.storage.db import session_factory
from mmstudio.storage.tables import ConversationRow
from mmstudio.web.app import create_app
from tests.conftest import blank_postgres_database
from tests.domain.chat.test_documents import make_pdf
from tests.domain.chat.test_knowledge import ANSWER, FILLER, HOSTILE
from tests.web.conftest import app_client

DOCS = "/api/chat/ui/documents"
MEMORIES = "/api/chat/ui/memories"


@dataclass
class Studio:
    client: httpx.AsyncClient
    app: FastAPI

    async def conversation(self) -> str:
        now = datetime.now(UTC)
        conversation_id = str(uuid.uuid4())
        async with session_factory(self.app.state.studio.engine)() as session, session.begin():
            session.add(ConversationRow(id=conversation_id, title="t", created_at=now, updated_at=now))
        return conversation_id

    async def upload(
        self, data: bytes, name: str = "notes.txt", content_type: str = "text/plain", **form: str
    ) -> httpx.Response:
        return await self.client.post(DOCS, files={"file": (name, data, content_type)}, data=form)


OpenStudio = Callable[..., Any]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def open_studio(request: pytest.FixtureRequest, data_dir: Path) -> AsyncIterator[OpenStudio]:
    """`async with open_studio(chat=ChatConfig(...)) as studio`: the app on SQLite or PostgreSQL."""
    env = {"MMSTUDIO_DATA_DIR": str(data_dir)}
    if request.param == "postgres":
        env["MMSTUDIO_DATABASE_URL"] = await blank_postgres_database(
            request.getfixturevalue("postgres_admin_url")
        )

    @contextlib.asynccontextmanager
    async def make(chat: ChatConfig | None = None, limits: Limits | None = None) -> AsyncIterator[Studio]:
        config = StudioConfig(detect_local=False, chat=chat or ChatConfig(), limits=limits or Limits())
        app = create_app(replace(Settings.from_env(env), config=config), environ=env)
        async with app_client(app) as client:
            # API routes wait for the studio to open its database.
            assert (await client.get(MEMORIES)).status_code == 200
            yield Studio(client, app)

    yield make


@pytest.fixture
async def studio(open_studio: OpenStudio) -> AsyncIterator[Studio]:
    async with open_studio() as studio:
        yield studio


# --- upload ------------------------------------------------------------------------------------


async def test_upload_text_markdown_and_pdf(studio: Studio) -> None:
    text = await studio.upload(b"Plain notes about ferns.", name="../notes.txt")
    assert text.status_code == 201, text.text
    body = text.json()
    assert body["filename"] == "notes.txt" and body["kind"] == "text" and body["media_type"] == "text/plain"
    assert body["size_bytes"] == 24 and body["pages"] == 1 and body["chunk_count"] == 1
    assert body["conversation_id"] is None and body["created_at"]

    md = await studio.upload(b"# Ferns\n\nFerns like shade.", name="ferns.md", content_type="text/markdown")
    assert md.status_code == 201 and md.json()["kind"] == "markdown"

    pdf = make_pdf([["Cover page."], ["Ferns reproduce with spores."]])
    uploaded = await studio.upload(pdf, name="botany.pdf", content_type="application/pdf")
    assert uploaded.status_code == 201 and uploaded.json()["pages"] == 2

    assert (await studio.client.get(f"{DOCS}/{uploaded.json()['id']}")).json() == uploaded.json()
    listed = (await studio.client.get(DOCS)).json()["documents"]
    assert [d["filename"] for d in listed] == ["botany.pdf", "ferns.md", "notes.txt"]  # newest first

    found = (await studio.client.get(f"{DOCS}/search", params={"q": "spores"})).json()
    assert found["query"] == "spores"
    [passage] = found["passages"]
    assert passage["filename"] == "botany.pdf" and passage["page"] == 2 and passage["chunk_index"] == 1
    assert "spores" in passage["text"] and isinstance(passage["score"], float)


async def test_oversize_uploads_are_413(open_studio: OpenStudio) -> None:
    async with open_studio(chat=ChatConfig(max_upload_mb=0.001)) as studio:
        ok = await studio.upload(b"a" * 1000)
        assert ok.status_code == 201
        # Slightly over: the multipart part's exact size.
        small = await studio.upload(b"word " * 400, name="big.txt")
        assert small.status_code == 413
        assert small.json()["error"] == "Request too large" and small.json()["field"] == "file"
        assert "0.001 MB" in small.json()["message"] and "'big.txt' is 0.002 MB" in small.json()["message"]
        # Far over: refused by the request's Content-Length before the body is parsed.
        huge = await studio.upload(b"x" * 200_000, name="huge.txt")
        assert huge.status_code == 413 and "the upload is 0.2 MB" in huge.json()["message"]
        assert len((await studio.client.get(DOCS)).json()["documents"]) == 1


async def test_the_upload_limit_may_exceed_the_general_body_limit(open_studio: OpenStudio) -> None:
    limits, chat = Limits(max_body_mb=0.01), ChatConfig(max_upload_mb=1)
    async with open_studio(chat=chat, limits=limits) as studio:
        uploaded = await studio.upload(b"fern " * 20_000, name="long.txt")  # 0.1 MB: over 0.01, under 1
        assert uploaded.status_code == 201, uploaded.text
        other = await studio.client.post(MEMORIES, json={"content": "x" * 20_000})  # any other route
        assert other.status_code == 413 and "0.01 MB" in other.json()["message"]


@pytest.mark.parametrize(
    ("name", "content_type", "data"),
    [
        ("photo.png", "image/png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64),
        ("setup.exe", "application/x-msdownload", b"MZ\x90\x00" + b"\x00" * 64),
        ("setup.exe", "application/octet-stream", b"MZ\x90\x00" + b"\x00" * 64),
    ],
)
async def test_unsupported_types_are_415(studio: Studio, name: str, content_type: str, data: bytes) -> None:
    response = await studio.upload(data, name=name, content_type=content_type)
    assert response.status_code == 415
    body = response.json()
    assert body["error"] == "Unsupported media type" and "application/pdf" in body["message"]


@pytest.mark.parametrize(
    ("data", "name", "content_type"),
    [
        (b"%PDF-1.7\n% not really a pdf\n1 0 obj << /Type /Catalog", "broken.pdf", "application/pdf"),
        (make_pdf([["fine"]])[:200], "truncated.pdf", "application/pdf"),
        (b"", "empty.txt", "text/plain"),
        (b"\x00\x01\x02binary", "data.txt", "text/plain"),
    ],
)
async def test_unreadable_files_are_400(studio: Studio, data: bytes, name: str, content_type: str) -> None:
    response = await studio.upload(data, name=name, content_type=content_type)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "file" and repr(name) in response.json()["message"]


async def test_missing_or_malformed_file_field_is_400(studio: Studio) -> None:
    no_file = await studio.client.post(DOCS, data={"conversation_id": ""}, files={"other": ("a.txt", b"x")})
    assert no_file.status_code == 400 and no_file.json()["field"] == "file"
    only_fields = await studio.client.post(DOCS, data={"file": "not a file"})
    assert only_fields.status_code == 400 and only_fields.json()["field"] == "file"
    as_json = await studio.client.post(DOCS, json={"file": "x"})
    assert as_json.status_code == 400 and "multipart/form-data" in as_json.json()["message"]
    empty = await studio.client.post(DOCS)
    assert empty.status_code == 400
    broken = await studio.client.post(
        DOCS,
        content=b"--b\r\nContent-Disposition: form-data",
        headers={"content-type": "multipart/form-data"},
    )
    assert broken.status_code == 400
    assert (await studio.client.get(DOCS)).json() == {"documents": []}


async def test_get_and_delete(studio: Studio) -> None:
    doc = (await studio.upload(b"Tulips open in spring.")).json()
    assert (await studio.client.delete(f"{DOCS}/{doc['id']}")).status_code == 204
    for path in (f"{DOCS}/{doc['id']}", f"{DOCS}/nope", f"{DOCS}/%00", f"{DOCS}/{'z' * 300}"):
        assert (await studio.client.get(path)).status_code == 404
        assert (await studio.client.delete(path)).status_code == 404
    assert (await studio.client.get(f"{DOCS}/search", params={"q": "tulips"})).json()["passages"] == []


# --- retrieval ---------------------------------------------------------------------------------


async def test_the_passage_with_the_answer_ranks_first(studio: Studio) -> None:
    distractor = "Project Falcon is the new name of the planning project; the board meets monthly. " * 3
    body = "\n\n".join([distractor, FILLER * 4, ANSWER, FILLER * 4, distractor]).encode()
    assert (await studio.upload(body, name="ops.txt")).status_code == 201
    response = await studio.client.get(
        f"{DOCS}/search", params={"q": "What's the launch code for project nightingale?", "limit": 3}
    )
    passages = response.json()["passages"]
    assert 1 < len(passages) <= 3 and "7431" in passages[0]["text"]
    assert [p["score"] for p in passages] == sorted((p["score"] for p in passages), reverse=True)


async def test_documents_are_scoped_to_their_conversation(studio: Studio) -> None:
    first, second = await studio.conversation(), await studio.conversation()
    mine = (await studio.upload(b"Basil wants sun.", name="mine.txt", conversation_id=first)).json()
    (await studio.upload(b"Basil wants water.", name="theirs.txt", conversation_id=second)).json()
    shared = (await studio.upload(b"Basil is a herb.", name="shared.txt", conversation_id="")).json()
    assert mine["conversation_id"] == first and shared["conversation_id"] is None

    async def search(**params: str) -> set[str]:
        found = await studio.client.get(f"{DOCS}/search", params={"q": "basil", **params})
        return {p["filename"] for p in found.json()["passages"]}

    assert await search(conversation_id=first) == {"mine.txt", "shared.txt"}
    assert await search(conversation_id=second) == {"theirs.txt", "shared.txt"}
    assert await search() == {"shared.txt"}
    listed = (await studio.client.get(DOCS, params={"conversation_id": first})).json()["documents"]
    assert {d["filename"] for d in listed} == {"mine.txt", "shared.txt"}
    assert len((await studio.client.get(DOCS)).json()["documents"]) == 3

    unknown = await studio.upload(b"Basil.", conversation_id=str(uuid.uuid4()))
    assert unknown.status_code == 404 and "no conversation" in unknown.json()["message"]
    malformed = await studio.upload(b"Basil.", conversation_id="x" * 100)
    assert malformed.status_code == 400 and malformed.json()["field"] == "conversation_id"


async def test_hostile_search_strings(studio: Studio) -> None:
    await studio.upload(b"Operators AND OR NOT NEAR and quotes \" ' live here, with foo_bar.")
    for q in HOSTILE:
        if not q.isascii() and any(0xD800 <= ord(c) <= 0xDFFF for c in q):
            continue  # a lone surrogate cannot be put in a URL at all
        response = await studio.client.get(f"{DOCS}/search", params={"q": q, "conversation_id": ""})
        assert response.status_code == 200, (q, response.text)
    weird_scope = await studio.client.get(f"{DOCS}/search", params={"q": "x", "conversation_id": "\x00"})
    assert weird_scope.status_code == 400
    too_many = await studio.client.get(f"{DOCS}/search", params={"q": "x", "limit": 500})
    assert too_many.status_code == 400  # the studio's answer to any bad input


# --- memories ----------------------------------------------------------------------------------


async def test_memories_crud(studio: Studio) -> None:
    assert (await studio.client.get(MEMORIES)).json() == {"memories": []}
    created = await studio.client.post(MEMORIES, json={"content": "  I prefer metric units. "})
    assert created.status_code == 201
    memory = created.json()
    assert memory["content"] == "I prefer metric units." and memory["conversation_id"] is None
    second = (
        await studio.client.post(MEMORIES, json={"content": "Call me Sam.", "conversation_id": "c1"})
    ).json()
    listed = (await studio.client.get(MEMORIES)).json()["memories"]
    assert [m["id"] for m in listed] == [second["id"], memory["id"]]
    assert (await studio.client.delete(f"{MEMORIES}/{memory['id']}")).status_code == 204
    assert (await studio.client.delete(f"{MEMORIES}/{memory['id']}")).status_code == 404
    assert [m["id"] for m in (await studio.client.get(MEMORIES)).json()["memories"]] == [second["id"]]


@pytest.mark.parametrize("content", ["", "   ", "x" * 2001])
async def test_bad_memories_are_400(studio: Studio, content: str) -> None:
    response = await studio.client.post(MEMORIES, json={"content": content})
    assert response.status_code == 400 and response.json()["field"] == "content"


async def test_relevant_memories_through_the_studio(studio: Studio) -> None:
    for content in ("I am allergic to peanuts.", "My daughter plays the violin.", "I work night shifts."):
        assert (await studio.client.post(MEMORIES, json={"content": content})).status_code == 201
    knowledge = studio.app.state.studio.knowledge
    [best, *_] = await knowledge.relevant_memories("Is this satay sauce safe? It has peanuts")
    assert best.content == "I am allergic to peanuts."
    block = knowledge.memory_block(
        await knowledge.relevant_memories("Suggest a violin piece for my daughter")
    )
    assert block.splitlines()[1] == "- My daughter plays the violin."
