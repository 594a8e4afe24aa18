"""The provider interface: our message types, the one stream event type, and the adapter protocol.

Every adapter translates between these types and one upstream wire protocol. Adapters know
nothing about the database, the web layer or other adapters.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import httpx

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]
EventType = Literal["text", "tool_call", "usage", "finish", "error"]


# --- message content ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str
    type: Literal["text"] = "text"


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image input: inline bytes (`data` + `media_type`) or a URL."""

    data: bytes | None = None
    media_type: str = "image/png"
    url: str | None = None
    type: Literal["image"] = "image"

    def as_base64(self) -> str:
        if self.data is None:
            raise ValueError("image has no inline data")
        return base64.b64encode(self.data).decode("ascii")

    def as_data_url(self) -> str:
        if self.url is not None:
            return self.url
        return f"data:{self.media_type};base64,{self.as_base64()}"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete tool call requested by the model. `arguments` is the parsed JSON object."""

    id: str
    name: str
    arguments: dict[str, Any]
    type: Literal["tool_call"] = "tool_call"


@dataclass(frozen=True, slots=True)
class ToolResultPart:
    """The result of a tool call, sent back to the model (role ``tool``)."""

    tool_call_id: str
    name: str
    content: str
    is_error: bool = False
    type: Literal["tool_result"] = "tool_result"


ContentPart = TextPart | ImagePart | ToolCall | ToolResultPart


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: tuple[ContentPart, ...]

    @classmethod
    def text(cls, role: Role, text: str) -> Message:
        return cls(role=role, content=(TextPart(text),))

    @property
    def text_content(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    @property
    def images(self) -> list[ImagePart]:
        return [p for p in self.content if isinstance(p, ImagePart)]

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [p for p in self.content if isinstance(p, ToolCall)]

    @property
    def tool_results(self) -> list[ToolResultPart]:
        return [p for p in self.content if isinstance(p, ToolResultPart)]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the model may call; `parameters` is a JSON Schema object."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat call. `model` is the upstream's own model name (no ``provider/`` prefix)."""

    model: str
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str | None = None  # "auto" | "none" | "required" | a tool name
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    json_mode: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)  # passed through to the upstream body

    @property
    def has_images(self) -> bool:
        return any(m.images for m in self.messages)


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class ChatResponse:
    model: str
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: FinishReason = "stop"
    usage: Usage | None = None
    id: str | None = None


# --- streaming ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call. `index` identifies the call within the response; `id` and `name`
    come with the first piece, `arguments` are JSON string fragments to concatenate."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """The one event type every adapter's stream yields.

    type ``text``: `text` holds a delta; ``tool_call``: `tool_call`; ``usage``: `usage`;
    ``finish``: `finish_reason` (always the last event of a clean stream); ``error``: `error`
    (an adapter raises rather than yielding this; the router uses it to report failures
    downstream).
    """

    type: EventType
    text: str = ""
    tool_call: ToolCallDelta | None = None
    usage: Usage | None = None
    finish_reason: FinishReason | None = None
    error: str | None = None


def text_event(text: str) -> StreamEvent:
    return StreamEvent("text", text=text)


def finish_event(reason: FinishReason) -> StreamEvent:
    return StreamEvent("finish", finish_reason=reason)


def usage_event(input_tokens: int, output_tokens: int) -> StreamEvent:
    return StreamEvent("usage", usage=Usage(input_tokens, output_tokens))


# --- models, health, capabilities ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a model (or a protocol) can do, declared as data."""

    streaming: bool = True
    tools: bool = False
    vision: bool = False
    json_mode: bool = False
    reference_images: bool = False
    input_fidelity: bool = False
    context_length: int | None = None

    def merged(self, **changes: Any) -> Capabilities:
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update({k: v for k, v in changes.items() if v is not None})
        return Capabilities(**values)


@dataclass(frozen=True, slots=True)
class RemoteModel:
    """A model as an upstream lists it."""

    id: str
    owned_by: str | None = None
    capabilities: Capabilities | None = None  # when the upstream says (Ollama /api/show, LM Studio)
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """A health probe's outcome. `latency_ms` is the probe's round trip."""

    ok: bool
    latency_ms: float
    error: str | None = None
    version: str | None = None


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """Where an adapter talks to and how.

    `quirks` names known deviations of OpenAI-compatible servers: ``lmstudio`` (200 with an
    error body), ``xai`` (errors as ``{"code","error"}``, bad key is 400), ``ollama_v1``.
    """

    base_url: str
    api_key: str | None = None
    provider: str = ""  # our provider id, used in error messages (e.g. "openai", "lmstudio")
    quirks: frozenset[str] = frozenset()
    timeout: float = 60.0
    connect_timeout: float = 5.0
    headers: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # never show the key
        key = "set" if self.api_key else "none"
        return f"EndpointConfig(base_url={self.base_url!r}, provider={self.provider!r}, api_key={key})"

    @property
    def secrets(self) -> tuple[str | None, ...]:
        return (self.api_key,)


@runtime_checkable
class ProviderAdapter(Protocol):
    """One wire protocol. Construct with an `EndpointConfig` and a shared `httpx.AsyncClient`."""

    protocol: ClassVar[str]
    default_capabilities: ClassVar[Capabilities]

    async def chat(self, request: ChatRequest) -> ChatResponse: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]: ...

    async def list_models(self) -> list[RemoteModel]: ...

    async def probe(self) -> ProbeResult: ...


def elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 2)


def make_timeout(config: EndpointConfig, total: float | None = None) -> httpx.Timeout:
    value = total if total is not None else config.timeout
    return httpx.Timeout(value, connect=min(config.connect_timeout, value))
