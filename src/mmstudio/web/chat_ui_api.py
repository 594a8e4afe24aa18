"""Chat Studio's API (`/api/chat/ui/...`): conversations, sending with SSE, branches, profiles, export.

A send answers with server-sent events: `conversation`, `user_message`, `assistant_message`, then
the answer's `start`, `model`, `citations`, `delta`, `tool_call`, `tool_result`, and exactly one of
`done`, `error` or `interrupted` (then `title` after a first exchange). The answer is produced by
the service, not by this response: closing the connection does not stop it, and
`GET /messages/{id}/stream` re-attaches.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import AfterValidator, ConfigDict, Discriminator, Field, StrictBool, Tag
from pydantic_core import PydanticCustomError

from mmstudio.domain.chat.context import IMAGE_TYPES, MAX_TEXT
from mmstudio.domain.chat.export import (
    FORMAT,
    MAX_IMPORT_MESSAGES,
    VERSION,
    export_json,
    export_markdown,
    import_json,
    message_json,
)
from mmstudio.domain.chat.generation import Generation
from mmstudio.domain.chat.service import ROUTING, Started
from mmstudio.domain.chat.types import (
    PART_TYPES,
    ROLES,
    ROUTING_PROFILES,
    STATUSES,
    Conversation,
    ConversationUpdate,
    Message,
    PromptProfile,
)
from mmstudio.domain.patterns import NOT_BLANK
from mmstudio.errors import InvalidRequest
from mmstudio.web.bodies import MAX_OFFSET, body_schema, json_object, validate
from mmstudio.web.constraints import BASE64, DATE_TIME, RequestModel, http_url, matching, one_of, text
from mmstudio.web.deps import StudioDep
from mmstudio.web.sse import sse_event, sse_response

if TYPE_CHECKING:
    from mmstudio.studio import Studio

router = APIRouter(prefix="/api/chat/ui", tags=["chat studio"])


class _In(RequestModel):
    model_config = ConfigDict(extra="forbid")


class TextPartIn(_In):
    type: Literal["text"] = Field(description="text, or image (with url, or data and media_type)")
    text: Annotated[str, matching(None, "", max_length=MAX_TEXT)]


class ImageLinkIn(_In):
    type: Literal["image"]
    url: Annotated[str, http_url("url")]


class ImageDataIn(_In):
    type: Literal["image"]
    data: Annotated[str, Field(min_length=1), matching(BASE64, "data is not valid base64")] = Field(
        description="the image, base64"
    )
    media_type: Annotated[str, one_of(IMAGE_TYPES, "media_type")] = "image/png"


def _part_kind(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "image":
        return "link" if "url" in value else "data"
    return "text" if kind == "text" else None


UserPart = Annotated[
    Annotated[TextPartIn, Tag("text")]
    | Annotated[ImageLinkIn, Tag("link")]
    | Annotated[ImageDataIn, Tag("data")],
    Discriminator(
        _part_kind, custom_error_type="part", custom_error_message="a part has type 'text' or 'image'"
    ),
]


def _says_something(parts: list[TextPartIn | ImageLinkIn | ImageDataIn]) -> list[Any]:
    if not any(not isinstance(p, TextPartIn) or p.text.strip() for p in parts):
        raise PydanticCustomError("blank", "content is empty: write something (or attach an image)")
    return parts


# What a user says: some text, or parts of which at least one is an image or text that is not blank.
# The discriminator picks the branch by the value's type, so an error names only that branch's problem.
UserContent = Annotated[
    Annotated[
        str, text("content is empty: write something (or attach an image)", max_length=MAX_TEXT), Tag("text")
    ]
    | Annotated[
        list[UserPart],
        Field(
            min_length=1,
            json_schema_extra={
                "contains": {
                    "anyOf": [
                        {"type": "object", "properties": {"type": {"const": "image"}}, "required": ["type"]},
                        {
                            "type": "object",
                            "properties": {"text": {"pattern": NOT_BLANK}},
                            "required": ["text"],
                        },
                    ]
                }
            },
        ),
        AfterValidator(_says_something),
        Tag("parts"),
    ],
    Discriminator(lambda value: "text" if isinstance(value, str) else "parts"),
]


def _content(content: str | list[TextPartIn | ImageLinkIn | ImageDataIn]) -> str | list[dict[str, Any]]:
    """What the chat service takes: the text, or the parts as dicts."""
    return content if isinstance(content, str) else [p.model_dump() for p in content]


class SendIn(_In):
    conversation_id: str | None = None
    parent_id: str | None = None
    content: UserContent = Field(description="text, or text and image parts")
    model: str | None = Field(
        default=None, description="a model id, name or alias; default: the conversation's"
    )
    prompt_profile_id: str | None = None
    routing_profile: Annotated[str, one_of(ROUTING_PROFILES, "routing profile")] | None = None
    system: str | None = Field(
        default=None, max_length=100_000, description="new conversations: a system prompt"
    )
    stream: bool = True


class EditIn(_In):
    content: UserContent
    model: str | None = None
    stream: bool = True


class RegenerateIn(_In):
    model: str | None = None
    stream: bool = True


class ConversationIn(_In):
    title: str | None = Field(default=None, max_length=300)
    model: str | None = None
    prompt_profile_id: str | None = None
    routing_profile: Annotated[str, one_of(ROUTING_PROFILES, "routing profile")] | None = None


class ConversationPatch(_In):
    title: str | None = Field(default=None, max_length=300)
    model: str | None = None
    prompt_profile_id: str | None = None
    routing_profile: Annotated[str, one_of(ROUTING_PROFILES, "routing profile")] | None = None
    pinned: bool | None = None
    archived: bool | None = None


class NavigateIn(_In):
    message_id: str
    step: int = Field(
        default=0, ge=-1000, le=1000, description="go to the sibling this many places away (-1: previous)"
    )


class PromptProfileIn(_In):
    name: Annotated[str, text("name cannot be empty", max_length=100)]
    system_prompt: str = Field(default="", max_length=100_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    memory: StrictBool = False


# A conversation file (what `export` writes): its shape, checked before `import_json` reads its tree
# (ids unique, every parent before its children). Fields not named here are kept by the exporter for
# people and ignored on import.
class _FileObject(RequestModel):
    model_config = ConfigDict(extra="allow")


Timestamp = Annotated[str, DATE_TIME]


class FilePart(_FileObject):
    type: Literal[PART_TYPES]  # type: ignore[valid-type]


class FileMessage(_FileObject):
    id: str
    parentId: str | None = None
    role: Literal[ROLES]  # type: ignore[valid-type]
    status: Literal[STATUSES] = "complete"  # type: ignore[valid-type]
    parts: list[FilePart]
    modelRequested: str | None = None
    model: Annotated[str, Field(max_length=400)] | None = None
    provider: Annotated[str, Field(max_length=40)] | None = None
    inputTokens: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    outputTokens: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    latencyMs: Annotated[float, Field(ge=0)] | None = None
    ttftMs: Annotated[float, Field(ge=0)] | None = None
    attempts: list[dict[str, Any]] | None = None
    error: str | None = None
    createdAt: Timestamp | None = None
    updatedAt: Timestamp | None = None


class FileConversation(_FileObject):
    title: str | None = None
    model: str | None = None
    routingProfile: str | None = None
    currentLeafId: str | None = None
    createdAt: Timestamp | None = None


class ConversationFile(_FileObject):
    format: Literal[FORMAT]  # type: ignore[valid-type]
    version: Literal[VERSION]  # type: ignore[valid-type]
    conversation: FileConversation
    messages: Annotated[list[FileMessage], Field(max_length=MAX_IMPORT_MESSAGES)]


# -- rendering --------------------------------------------------------------------------------------


def conversation_json(c: Conversation) -> dict[str, Any]:
    return {
        "id": c.id,
        "title": c.title,
        "model": c.model,
        "promptProfileId": c.prompt_profile_id,
        "routingProfile": c.routing_profile,
        "pinned": c.pinned,
        "archived": c.archived,
        "currentLeafId": c.current_leaf_id,
        "createdAt": c.created_at.isoformat(),
        "updatedAt": c.updated_at.isoformat(),
        "messageCount": c.message_count,
    }


def message_out(m: Message) -> dict[str, Any]:
    return {
        **message_json(m),
        "conversationId": m.conversation_id,
        "text": m.text,
        "siblingCount": m.sibling_count,
        "siblingIndex": m.sibling_index,
    }


def profile_json(p: PromptProfile) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "systemPrompt": p.system_prompt,
        "parameters": p.parameters,
        "memory": p.memory,
        "createdAt": p.created_at.isoformat(),
        "updatedAt": p.updated_at.isoformat(),
    }


async def _follow(generation: Generation, preface: list[bytes]) -> AsyncIterator[bytes]:
    for frame in preface:
        yield frame
    async for event in generation.follow():
        yield sse_event(event.name, event.data)


async def _answer(started: Started, stream: bool, studio: Studio) -> Response:
    preface = [
        sse_event(
            "conversation",
            {"conversation": conversation_json(started.conversation), "created": started.created},
        )
    ]
    if started.user_message is not None:
        preface.append(sse_event("user_message", {"message": message_out(started.user_message)}))
    preface.append(sse_event("assistant_message", {"message": message_out(started.assistant_message)}))
    if stream:
        return sse_response(_follow(started.generation, preface))
    await started.generation.wait()
    chat = studio.conversations
    return JSONResponse(
        {
            "conversation": conversation_json(await chat.store.get_conversation(started.conversation.id)),
            "userMessage": message_out(started.user_message) if started.user_message else None,
            "assistantMessage": message_out(await chat.store.get_message(started.assistant_message.id)),
        }
    )


# -- sending ------------------------------------------------------------------------------------


@router.post("/send", response_model=None)
async def send(body: SendIn, studio: StudioDep) -> Response:
    """Store the message (creating the conversation when `conversation_id` is absent) and stream the
    answer as server-sent events (`"stream": false` waits and returns JSON)."""
    started = await studio.conversations.send(
        _content(body.content),
        conversation_id=body.conversation_id,
        parent_id=body.parent_id,
        model=body.model,
        prompt_profile_id=body.prompt_profile_id,
        routing_profile=body.routing_profile,
        system=body.system,
    )
    return await _answer(started, body.stream, studio)


@router.post("/messages/{message_id}/edit", response_model=None)
async def edit(message_id: str, body: EditIn, studio: StudioDep) -> Response:
    """A new version of a user message (a sibling on a new branch), then its answer."""
    started = await studio.conversations.edit(message_id, _content(body.content), model=body.model)
    return await _answer(started, body.stream, studio)


@router.post("/messages/{message_id}/regenerate", response_model=None)
async def regenerate(message_id: str, studio: StudioDep, body: RegenerateIn | None = None) -> Response:
    """Another answer (optionally from another model) as a sibling of this one."""
    body = body or RegenerateIn()
    started = await studio.conversations.regenerate(message_id, model=body.model)
    return await _answer(started, body.stream, studio)


@router.get("/messages/{message_id}/stream", response_model=None)
async def reattach(message_id: str, studio: StudioDep) -> Response:
    """A running answer: its events from the beginning, then live. A finished one: the message."""
    generation = studio.conversations.running(message_id)
    if generation is None:
        return JSONResponse(
            {"message": message_out(await studio.conversations.store.get_message(message_id))}
        )
    message = await studio.conversations.store.get_message(message_id)
    preface = [sse_event("assistant_message", {"message": message_out(message), "reattached": True})]
    return sse_response(_follow(generation, preface))


@router.get("/messages/{message_id}")
async def get_message(message_id: str, studio: StudioDep) -> dict[str, Any]:
    return {"message": message_out(await studio.conversations.store.get_message(message_id))}


@router.post("/messages/{message_id}/stop")
async def stop(message_id: str, studio: StudioDep) -> dict[str, Any]:
    """Stop a running answer; it is kept, marked `interrupted`."""
    stopped = await studio.conversations.stop(message_id)
    message = await studio.conversations.store.get_message(message_id)
    return {"stopped": stopped, "message": message_out(message)}


# -- conversations ------------------------------------------------------------------------------


@router.get("/conversations")
async def list_conversations(
    studio: StudioDep,
    q: str | None = Query(
        default=None, max_length=500, description="full-text search over titles and messages"
    ),
    limit: int = Query(default=50, ge=1, le=200),
    offset: int = Query(default=0, ge=0, le=MAX_OFFSET),
    archived: bool = False,
) -> dict[str, Any]:
    page = await studio.conversations.store.list_conversations(
        q=q, limit=limit, offset=offset, archived=archived
    )
    return {
        "items": [conversation_json(c) for c in page.items],
        "total": page.total,
        "limit": page.limit,
        "offset": page.offset,
    }


@router.post("/conversations", status_code=201)
async def create_conversation(body: ConversationIn, studio: StudioDep) -> dict[str, Any]:
    conversation = await studio.conversations.create_conversation(
        title=body.title,
        model=body.model,
        prompt_profile_id=body.prompt_profile_id,
        routing_profile=body.routing_profile,
    )
    return {"conversation": conversation_json(conversation)}


@router.post("/conversations/import", status_code=201, openapi_extra=body_schema(ConversationFile))
async def import_conversation(request: Request, studio: StudioDep) -> dict[str, Any]:
    """A new conversation from one of our JSON exports (all branches; new ids)."""
    document = await json_object(request)
    validate(ConversationFile, document)  # the file's shape; import_json checks its tree
    conversation = await import_json(studio.conversations.store, document)
    return {"conversation": conversation_json(conversation)}


@router.get("/conversations/{conversation_id}")
async def get_conversation(
    conversation_id: str,
    studio: StudioDep,
    tree: Literal["active", "full"] = Query(default="active", description="active branch or every branch"),
) -> dict[str, Any]:
    conversation = await studio.conversations.store.get_conversation(conversation_id)
    store = studio.conversations.store
    messages = await (
        store.all_messages(conversation_id) if tree == "full" else store.active_branch(conversation_id)
    )
    running = [m.id for m in messages if studio.conversations.running(m.id) is not None]
    return {
        "conversation": conversation_json(conversation),
        "messages": [message_out(m) for m in messages],
        "running": running,
    }


@router.patch("/conversations/{conversation_id}")
async def patch_conversation(
    conversation_id: str, body: ConversationPatch, studio: StudioDep
) -> dict[str, Any]:
    given = body.model_fields_set
    update = ConversationUpdate(
        title=body.title,
        model=body.model or None,
        clear_model="model" in given and not body.model,
        prompt_profile_id=body.prompt_profile_id or None,
        clear_prompt_profile="prompt_profile_id" in given and not body.prompt_profile_id,
        routing_profile=body.routing_profile,  # type: ignore[arg-type]  # one of ROUTING_PROFILES: checked by its Rule
        pinned=body.pinned,
        archived=body.archived,
    )
    conversation = await studio.conversations.update_conversation(conversation_id, update)
    return {"conversation": conversation_json(conversation)}


@router.delete("/conversations/{conversation_id}", status_code=204)
async def delete_conversation(conversation_id: str, studio: StudioDep) -> Response:
    await studio.conversations.delete_conversation(conversation_id)
    return Response(status_code=204)


@router.post("/conversations/{conversation_id}/navigate")
async def navigate(conversation_id: str, body: NavigateIn, studio: StudioDep) -> dict[str, Any]:
    """Make the branch through `message_id` the active one (down to its newest answer)."""
    chat = studio.conversations
    messages = await (
        chat.navigate_sibling(conversation_id, body.message_id, body.step)
        if body.step
        else chat.navigate(conversation_id, body.message_id)
    )
    conversation = await studio.conversations.store.get_conversation(conversation_id)
    return {"conversation": conversation_json(conversation), "messages": [message_out(m) for m in messages]}


@router.get("/conversations/{conversation_id}/graph")
async def graph(conversation_id: str, studio: StudioDep) -> dict[str, Any]:
    """Nodes and edges of the whole tree; `active` marks the current branch."""
    store = studio.conversations.store
    messages = await store.all_messages(conversation_id)
    active = {m.id for m in await store.active_branch(conversation_id)}
    nodes = [
        {
            "id": m.id,
            "parentId": m.parent_id,
            "role": m.role,
            "status": m.status,
            "model": m.model,
            "preview": m.text[:120],
            "createdAt": m.created_at.isoformat(),
            "siblingIndex": m.sibling_index,
            "siblingCount": m.sibling_count,
            "active": m.id in active,
        }
        for m in messages
    ]
    edges = [{"from": m.parent_id, "to": m.id} for m in messages if m.parent_id]
    return {"conversationId": conversation_id, "nodes": nodes, "edges": edges}


@router.get(
    "/conversations/{conversation_id}/export",
    response_model=None,
    responses={
        200: {
            "description": "JSON (ours) or Markdown",
            "content": {"application/json": {}, "text/markdown": {}},
        }
    },
)
async def export(
    conversation_id: str,
    studio: StudioDep,
    format: Literal["json", "markdown"] = Query(default="json"),
) -> Response:
    """JSON: lossless, every branch (importable). Markdown: the active branch, for reading."""
    if format == "markdown":
        text = await export_markdown(studio.conversations.store, conversation_id)
        return PlainTextResponse(
            text,
            media_type="text/markdown; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="conversation-{conversation_id}.md"'},
        )
    document = await export_json(studio.conversations.store, conversation_id)
    return JSONResponse(
        document,
        headers={"content-disposition": f'attachment; filename="conversation-{conversation_id}.json"'},
    )


# -- models, profiles, metrics ---------------------------------------------------------------------


@router.get("/models")
async def models(studio: StudioDep) -> dict[str, Any]:
    """Chat-capable models, local first, with health and what they can do."""
    views = [v for v in studio.registry.views() if v.entry.modality in ("chat", "code")]
    views.sort(key=lambda v: (v.entry.kind != "local", v.entry.provider_id, v.entry.display_name.lower()))
    default = studio.router.planner.default_model()
    return {
        "default": default,
        "models": [
            {
                "id": v.entry.id,
                "name": v.entry.display_name,
                "provider": v.entry.provider_id,
                "providerName": v.endpoint.display_name,
                "kind": v.entry.kind,
                "available": v.available,
                "unavailableReason": v.unavailable_reason,
                "health": {
                    "status": v.health.status,
                    "latencyMs": v.health.latency_ms,
                    "error": v.health.last_error,
                },
                "capabilities": {
                    "tools": v.entry.capabilities.tools,
                    "vision": v.entry.capabilities.vision,
                    "contextLength": v.entry.capabilities.context_length,
                    "declared": v.entry.capabilities_declared,
                },
            }
            for v in views
        ],
    }


@router.get("/profiles")
async def routing_profiles() -> dict[str, Any]:
    """The routing profiles a conversation can use."""
    return {
        "profiles": [
            {"id": p.id, "name": p.name, "description": p.description, "tools": list(p.tools)}
            for p in ROUTING.values()
        ]
    }


def _parameters(body: PromptProfileIn) -> dict[str, Any]:
    values = {"temperature": body.temperature, "top_p": body.top_p, "max_tokens": body.max_tokens}
    return {k: v for k, v in values.items() if v is not None}


@router.get("/prompt-profiles")
async def list_prompt_profiles(studio: StudioDep) -> dict[str, Any]:
    return {"profiles": [profile_json(p) for p in await studio.conversations.store.list_prompt_profiles()]}


@router.post("/prompt-profiles", status_code=201)
async def create_prompt_profile(body: PromptProfileIn, studio: StudioDep) -> dict[str, Any]:
    name = body.name.strip()
    if not name:
        raise InvalidRequest("name cannot be empty", field="name")
    profile = await studio.conversations.store.create_prompt_profile(
        name=name, system_prompt=body.system_prompt, parameters=_parameters(body), memory=body.memory
    )
    return {"profile": profile_json(profile)}


@router.get("/prompt-profiles/{profile_id}")
async def get_prompt_profile(profile_id: str, studio: StudioDep) -> dict[str, Any]:
    return {"profile": profile_json(await studio.conversations.store.get_prompt_profile(profile_id))}


@router.put("/prompt-profiles/{profile_id}")
async def put_prompt_profile(profile_id: str, body: PromptProfileIn, studio: StudioDep) -> dict[str, Any]:
    name = body.name.strip()
    if not name:
        raise InvalidRequest("name cannot be empty", field="name")
    profile = await studio.conversations.store.update_prompt_profile(
        profile_id,
        name=name,
        system_prompt=body.system_prompt,
        parameters=_parameters(body),
        memory=body.memory,
    )
    return {"profile": profile_json(profile)}


@router.delete("/prompt-profiles/{profile_id}", status_code=204)
async def delete_prompt_profile(profile_id: str, studio: StudioDep) -> Response:
    await studio.conversations.store.delete_prompt_profile(profile_id)
    return Response(status_code=204)


@router.get("/metrics")
async def chat_metrics(studio: StudioDep, recent: int = Query(default=50, ge=0, le=1000)) -> dict[str, Any]:
    """Per model: answers, errors, fallbacks, latency, time to first token, tokens/s; recent answers."""
    store = studio.conversations.store
    by_model = await store.metrics_by_model()
    latest = await store.recent_metrics(limit=recent) if recent else []
    return {
        "byModel": [
            {
                "model": s.model,
                "messages": s.messages,
                "errors": s.errors,
                "fallbacks": s.fallbacks,
                "avgLatencyMs": s.avg_latency_ms,
                "p50LatencyMs": s.p50_latency_ms,
                "avgTtftMs": s.avg_ttft_ms,
                "avgTokensPerSecond": s.avg_tokens_per_second,
                "inputTokens": s.input_tokens,
                "outputTokens": s.output_tokens,
            }
            for s in by_model
        ],
        "recent": [
            {
                "messageId": m.message_id,
                "conversationId": m.conversation_id,
                "model": m.model,
                "provider": m.provider,
                "outcome": m.outcome,
                "fallback": m.fallback,
                "attempts": m.attempts,
                "latencyMs": m.latency_ms,
                "ttftMs": m.ttft_ms,
                "inputTokens": m.input_tokens,
                "outputTokens": m.output_tokens,
                "tokensPerSecond": m.tokens_per_second,
                "createdAt": m.created_at.isoformat(),
            }
            for m in latest
        ],
    }
