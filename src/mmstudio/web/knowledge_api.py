"""Chat Studio API for knowledge: document uploads, passage search, and memories."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from mmstudio.domain.chat.documents import SUPPORTED_TYPES
from mmstudio.domain.chat.knowledge import MAX_MEMORY_CHARS, Document, Memory, Passage
from mmstudio.domain.patterns import ID_PATTERN
from mmstudio.errors import InvalidRequest
from mmstudio.web.bodies import check_form, upload_body
from mmstudio.web.constraints import SAYS_SOMETHING, RequestModel, an_id, matching
from mmstudio.web.deps import StudioDep

router = APIRouter(prefix="/api/chat/ui", tags=["chat studio"])

# A multipart body is the file plus a few hundred bytes of boundaries, headers and the
# conversation id; a body larger than the limit by more than this cannot hold an acceptable file.
MULTIPART_SLACK: Final = 64 * 1024

CONVERSATION_OR_NONE = f"^(?:{ID_PATTERN[1:-1]})?$"  # empty: none
_UPLOAD_BODY: Final = upload_body(
    {"file": "a text (.txt), Markdown (.md) or PDF file"},
    content_types=", ".join(SUPPORTED_TYPES),
    fields={
        "conversation_id": {
            "type": "string",
            "pattern": CONVERSATION_OR_NONE,
            "description": "the conversation it belongs to; omit (or empty) for every conversation",
        }
    },
)


class DocumentPublic(BaseModel):
    id: str
    conversation_id: str | None = Field(description="None: used by every conversation")
    filename: str
    media_type: str
    kind: str = Field(description="text, markdown or pdf")
    size_bytes: int
    pages: int
    chunk_count: int
    created_at: datetime

    @classmethod
    def of(cls, doc: Document) -> DocumentPublic:
        return cls(
            id=doc.id,
            conversation_id=doc.conversation_id,
            filename=doc.filename,
            media_type=doc.media_type,
            kind=doc.kind,
            size_bytes=doc.size_bytes,
            pages=doc.pages,
            chunk_count=doc.chunk_count,
            created_at=doc.created_at,
        )


class DocumentList(BaseModel):
    documents: list[DocumentPublic]


class PassagePublic(BaseModel):
    document_id: str
    filename: str
    chunk_index: int
    page: int | None
    text: str
    score: float = Field(description="higher is better; comparable within one result list only")

    @classmethod
    def of(cls, passage: Passage) -> PassagePublic:
        return cls(
            document_id=passage.document_id,
            filename=passage.filename,
            chunk_index=passage.chunk_index,
            page=passage.page,
            text=passage.text,
            score=passage.score,
        )


class PassageList(BaseModel):
    query: str
    passages: list[PassagePublic]


class MemoryCreate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    content: Annotated[
        str, matching(SAYS_SOMETHING, "a memory needs some text", max_length=MAX_MEMORY_CHARS)
    ] = Field(description=f"what to remember (at most {MAX_MEMORY_CHARS:,} characters)")
    conversation_id: Annotated[str, an_id("a conversation id")] | None = Field(
        default=None, description="where it was said, for reference"
    )


class MemoryPublic(BaseModel):
    id: str
    content: str
    conversation_id: str | None
    created_at: datetime

    @classmethod
    def of(cls, memory: Memory) -> MemoryPublic:
        return cls(
            id=memory.id,
            content=memory.content,
            conversation_id=memory.conversation_id,
            created_at=memory.created_at,
        )


class MemoryList(BaseModel):
    memories: list[MemoryPublic]


@router.post("/documents", status_code=201, response_model=DocumentPublic, openapi_extra=_UPLOAD_BODY)
async def upload_document(request: Request, studio: StudioDep) -> DocumentPublic:
    """Upload a document (multipart field `file`; optional field `conversation_id`). It is extracted,
    chunked and indexed before the response: 413 over `chat.max_upload_mb`, 415 for a type other
    than text, Markdown or PDF, 400 for a file that cannot be read."""
    knowledge = studio.knowledge
    declared = _content_length(request)
    if declared is not None and declared > knowledge.max_upload_bytes + MULTIPART_SLACK:
        knowledge.check_size(declared, "the upload")  # refused before any of the body is read
    # The form is parsed by hand, not declared as parameters, so a missing or wrong field is our
    # 400 with a message rather than a generic validation error; files over 1 MB spool to disk.
    async with request.form(max_files=1, max_fields=4) as form:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise InvalidRequest(
                "send the document as a multipart/form-data upload in the field 'file'", field="file"
            )
        check_form(form, {"file", "conversation_id"})
        conversation_id = form.get("conversation_id")
        if conversation_id is not None and not isinstance(conversation_id, str):
            raise InvalidRequest("conversation_id must be a plain form field", field="conversation_id")
        filename = file.filename or "upload"
        if file.size is not None:
            knowledge.check_size(file.size, repr(filename))
        data = await file.read(knowledge.max_upload_bytes + 1)  # never more than the limit allows
        document = await knowledge.upload(
            data, filename=filename, content_type=file.content_type, conversation_id=conversation_id or None
        )
    return DocumentPublic.of(document)


@router.get("/documents", response_model=DocumentList)
async def list_documents(
    studio: StudioDep,
    conversation_id: str | None = Query(
        None,
        pattern=CONVERSATION_OR_NONE,
        description="only what this conversation's retrieval uses: its documents and the global ones",
    ),
) -> DocumentList:
    """Newest first."""
    documents = await studio.knowledge.list_documents(conversation_id or None)
    return DocumentList(documents=[DocumentPublic.of(d) for d in documents])


# Declared before /documents/{document_id}, which would otherwise take "search" for an id.
@router.get("/documents/search", response_model=PassageList)
async def search_documents(
    studio: StudioDep,
    q: str = Query("", description="any text; its words are matched as prefixes"),
    conversation_id: str | None = Query(
        None, pattern=CONVERSATION_OR_NONE, description="omit to search the global documents only"
    ),
    limit: int | None = Query(None, ge=1, le=50, description="default: chat.retrieval_chunks"),
) -> PassageList:
    """The passages retrieval would give a model for `q`, best first."""
    passages = await studio.knowledge.retrieve(q, conversation_id=conversation_id or None, limit=limit)
    return PassageList(query=q, passages=[PassagePublic.of(p) for p in passages])


@router.get("/documents/{document_id}", response_model=DocumentPublic)
async def get_document(document_id: str, studio: StudioDep) -> DocumentPublic:
    return DocumentPublic.of(await studio.knowledge.get_document(document_id))


@router.delete("/documents/{document_id}", status_code=204)
async def delete_document(document_id: str, studio: StudioDep) -> Response:
    """Delete a document and its passages."""
    await studio.knowledge.delete_document(document_id)
    return Response(status_code=204)


@router.get("/memories", response_model=MemoryList)
async def list_memories(studio: StudioDep) -> MemoryList:
    """Newest first."""
    return MemoryList(memories=[MemoryPublic.of(m) for m in await studio.knowledge.list_memories()])


@router.post("/memories", status_code=201, response_model=MemoryPublic)
async def add_memory(body: MemoryCreate, studio: StudioDep) -> MemoryPublic:
    """Remember something; prompt profiles with memory enabled put relevant memories in the prompt."""
    memory = await studio.knowledge.add_memory(body.content, body.conversation_id or None)
    return MemoryPublic.of(memory)


@router.delete("/memories/{memory_id}", status_code=204)
async def delete_memory(memory_id: str, studio: StudioDep) -> Response:
    await studio.knowledge.delete_memory(memory_id)
    return Response(status_code=204)


def _content_length(request: Request) -> int | None:
    try:
        return int(request.headers["content-length"])
    except (KeyError, ValueError):
        return None
