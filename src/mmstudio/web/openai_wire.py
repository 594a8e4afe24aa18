"""OpenAI's chat-completions wire format on our side of the gateway: request bodies in, responses
and stream chunks out. The shapes follow the official API reference (see PROTOCOLS.md)."""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from mmstudio.domain.patterns import BASE64_BODY, SPACE
from mmstudio.errors import InvalidRequest
from mmstudio.providers.base import (
    ChatRequest,
    ChatResponse,
    ContentPart,
    ImagePart,
    Message,
    StreamEvent,
    TextPart,
    ToolCall,
    ToolResultPart,
    ToolSpec,
    Usage,
)
from mmstudio.web.constraints import RequestModel, matching

# Body fields we pass to the upstream as they are (OpenAI-compatible upstreams understand them).
PASSTHROUGH = ("presence_penalty", "frequency_penalty", "logit_bias", "user", "parallel_tool_calls")


class _Open(RequestModel):
    model_config = ConfigDict(extra="allow")


# An image part's URL: an http(s) URL, or a base64 `data:` URL of an image (what `image_part` reads).
IMAGE_URL = (
    rf"^(?:https?://[^{SPACE}](?:.|\n)*"
    rf"|data:image/[^;,]+;base64,{BASE64_BODY})$"
)


class ImageURL(_Open):
    url: Annotated[
        str, matching(IMAGE_URL, "image_url.url must be an http(s) URL or a data:image/...;base64,... URL")
    ] = Field(description="an http(s) URL or data:image/...;base64,...")
    detail: str | None = None


class TextPartIn(_Open):
    type: Literal["text", "input_text"]
    text: str


class ImagePartIn(_Open):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPartIn = Annotated[TextPartIn | ImagePartIn, Field(discriminator="type")]


class FunctionCallIn(_Open):
    name: str
    arguments: str = Field(default="{}", description="the arguments: a JSON object, as a string")


class ToolCallIn(_Open):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallIn


# What a message may hold. Every role but the assistant's must say something: a non-empty string,
# or at least one part.
Said = Annotated[str, Field(min_length=1)] | Annotated[list[ContentPartIn], Field(min_length=1)]


class SystemMessageIn(_Open):
    role: Literal["system", "developer"]
    content: Said
    name: str | None = None
    tool_calls: None = Field(default=None, description="only assistant messages carry tool calls")


class UserMessageIn(_Open):
    role: Literal["user"]
    content: Said
    name: str | None = None
    tool_calls: None = Field(default=None, description="only assistant messages carry tool calls")


class AssistantMessageIn(_Open):
    role: Literal["assistant"]
    content: str | list[ContentPartIn] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None


class ToolMessageIn(_Open):
    role: Literal["tool"]
    content: str | list[TextPartIn] | None = Field(default=None, description="the tool's result: text")
    tool_call_id: str = Field(description="the id of the assistant's tool call this answers")
    name: str | None = None
    tool_calls: None = Field(default=None, description="only assistant messages carry tool calls")


MessageIn = Annotated[
    SystemMessageIn | UserMessageIn | AssistantMessageIn | ToolMessageIn, Field(discriminator="role")
]


class FunctionSpecIn(_Open):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ToolIn(_Open):
    type: Literal["function"]
    function: FunctionSpecIn


class ToolChoiceName(_Open):
    name: str


class ToolChoiceFunction(_Open):
    type: Literal["function"]
    function: ToolChoiceName


class StreamOptions(_Open):
    include_usage: bool = False


class ResponseFormat(_Open):
    type: Literal["text", "json_object", "json_schema"]


class ChatCompletionIn(_Open):
    """A chat-completions request. Extra fields are accepted (clients send many) and the ones in
    PASSTHROUGH go upstream. mmstudio extension: `"fallbacks": false` pins the named model."""

    model: str = Field(min_length=1, description="provider/model, a registered name or an alias")
    messages: list[MessageIn] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | Annotated[list[str], Field(max_length=4)] | None = Field(default=None, description="up to 4")
    seed: int | None = None
    n: int | None = Field(default=None, ge=1, le=1, description="only 1 is supported")
    tools: list[ToolIn] | None = None
    tool_choice: Literal["auto", "none", "required"] | ToolChoiceFunction | None = Field(
        default=None, description="a function named here must be one of `tools`"
    )
    response_format: ResponseFormat | None = None
    fallbacks: bool = True


def to_chat_request(body: ChatCompletionIn) -> ChatRequest:
    tool_names = {t.function.name for t in body.tools or ()}
    extra = {k: v for k, v in (body.model_extra or {}).items() if k in PASSTHROUGH}
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    return ChatRequest(
        model=body.model,
        messages=convert_messages(body.messages),
        tools=tuple(
            ToolSpec(
                t.function.name,
                t.function.description or "",
                t.function.parameters or {"type": "object", "properties": {}},
            )
            for t in body.tools or ()
        ),
        tool_choice=_tool_choice(body.tool_choice, tool_names),
        temperature=body.temperature,
        top_p=body.top_p,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        stop=stop,
        seed=body.seed,
        json_mode=body.response_format is not None and body.response_format.type != "text",
        extra=extra,
    )


def convert_messages(messages: list[MessageIn]) -> tuple[Message, ...]:
    return tuple(_message(m, i) for i, m in enumerate(messages))


def _message(message: MessageIn, index: int) -> Message:
    where = f"messages[{index}]"
    if isinstance(message, ToolMessageIn):
        part = ToolResultPart(message.tool_call_id, message.name or "", _text_only(message.content))
        return Message("tool", (part,))
    parts: list[ContentPart] = []
    if isinstance(message.content, str):
        if message.content:
            parts.append(TextPart(message.content))
    elif message.content is not None:
        for j, item in enumerate(message.content):
            parts.append(_part(item, f"{where}.content[{j}]"))
    if isinstance(message, AssistantMessageIn):
        for call in message.tool_calls or ():
            parts.append(ToolCall(call.id, call.function.name, _arguments(call.function.arguments, where)))
        return Message("assistant", tuple(parts))
    return Message("system" if message.role == "developer" else message.role, tuple(parts))


def _part(item: TextPartIn | ImagePartIn, where: str) -> ContentPart:
    if isinstance(item, TextPartIn):
        return TextPart(item.text)
    return image_part(item.image_url.url, where)


def image_part(url: str, where: str) -> ImagePart:
    """`data:` URLs become inline bytes (every upstream accepts those); http(s) URLs stay URLs."""
    if url.startswith("data:"):
        header, sep, payload = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or not media_type.startswith("image/"):
            raise InvalidRequest(
                f"{where}: an image data URL must look like data:image/png;base64,...", field=where
            )
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(f"{where}: the image data is not valid base64", field=where) from None
        return ImagePart(data=data, media_type=media_type)
    if url.startswith(("http://", "https://")):
        return ImagePart(url=url)
    raise InvalidRequest(f"{where}: image_url.url must be an http(s) URL or a data: URL", field=where)


def _text_only(content: str | list[TextPartIn] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(p.text for p in content)


def _arguments(raw: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError:
        raise InvalidRequest(
            f"{where}: tool call arguments must be a JSON object string", field=where
        ) from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where}: tool call arguments must be a JSON object", field=where)
    return value


def _tool_choice(value: str | ToolChoiceFunction | None, names: set[str]) -> str | None:
    if not isinstance(value, ToolChoiceFunction):
        return value
    if value.function.name not in names:
        raise InvalidRequest(
            f"tool_choice names {value.function.name!r}, which is not in tools", field="tool_choice"
        )
    return value.function.name


# -- responses -------------------------------------------------------------------------------


def completion_id(request_id: str) -> str:
    return "chatcmpl-" + request_id.removeprefix("req_")


def usage_body(usage: Usage | None) -> dict[str, int] | None:
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }


def completion_body(response: ChatResponse, *, request_id: str, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": response.text or None, "refusal": None}
    if response.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in response.tool_calls
        ]
    finish = response.finish_reason if response.finish_reason != "error" else "stop"
    return {
        "id": completion_id(request_id),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage_body(response.usage),
        "system_fingerprint": None,
    }


class ChunkWriter:
    """Turns routed stream events into `data: {...}` SSE frames of `chat.completion.chunk`s."""

    def __init__(self, request_id: str, include_usage: bool) -> None:
        self.id = completion_id(request_id)
        self.created = int(time.time())
        self.include_usage = include_usage
        self._role_sent = False
        self._usage: Usage | None = None

    def frame(self, event: StreamEvent, model: str) -> bytes | None:
        if event.type == "text":
            delta: dict[str, Any] = {"content": event.text}
        elif event.type == "tool_call" and event.tool_call is not None:
            call = event.tool_call
            piece: dict[str, Any] = {"index": call.index, "function": {"arguments": call.arguments}}
            if call.id is not None:
                piece["id"] = call.id
                piece["type"] = "function"
            if call.name is not None:
                piece["function"]["name"] = call.name
            delta = {"tool_calls": [piece]}
        elif event.type == "finish":
            finish = event.finish_reason if event.finish_reason != "error" else "stop"
            frame = self._chunk(model, {}, finish)
            if self.include_usage:  # OpenAI sends usage last, in a chunk with no choices
                frame += _sse(
                    {
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": model,
                        "choices": [],
                        "usage": usage_body(self._usage or Usage()),
                    }
                )
            return frame
        elif event.type == "usage":
            self._usage = event.usage
            return None
        elif event.type == "error":
            return error_frame(event.error or "the stream failed", "mid_stream_error")
        else:
            return None
        return self._chunk(model, delta, None)

    def _chunk(self, model: str, delta: dict[str, Any], finish: str | None) -> bytes:
        if not self._role_sent:
            delta = {"role": "assistant", **delta}
            self._role_sent = True
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self.include_usage:
            body["usage"] = None
        return _sse(body)


DONE = b"data: [DONE]\n\n"


def error_frame(message: str, code: str, status: int | None = None) -> bytes:
    """An in-stream error as OpenAI's SDK recognises it (it raises APIError on an `error` chunk)."""
    return _sse({"error": {"message": message, "type": "api_error", "param": None, "code": code}})


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
