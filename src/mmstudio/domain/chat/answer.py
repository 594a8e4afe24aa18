"""Producing one assistant message: stream through the router, run tools, write progress, end cleanly.

Everything the client sees is emitted on the `Generation` and written to the message row: first
`pending`, then `streaming` (at most one write per `stream_write_interval_seconds`), then exactly one
of `complete`, `error` (partial text and the error kept) or `interrupted` (stopped, or shutdown).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mmstudio.domain.chat.agent_tools import TOOLS, AgentTools
from mmstudio.domain.chat.context import wire_messages
from mmstudio.domain.chat.generation import Generation
from mmstudio.domain.chat.store import ChatStore
from mmstudio.domain.chat.types import Message, MessageMetric, MessageProgress, Part
from mmstudio.domain.router import RouteInfo, RouteOptions, Router
from mmstudio.errors import StudioError
from mmstudio.providers.base import ChatRequest, ToolCall, ToolResultPart, Usage
from mmstudio.providers.base import Message as WireMessage

log = logging.getLogger(__name__)

INTERRUPTED = "stopped before the answer finished"


@dataclass
class AnswerPlan:
    """Everything decided before the model is called."""

    conversation_id: str
    title: str  # the conversation's, when the answer started
    message: Message  # the pending assistant message
    branch: list[Message]  # root → the user message being answered
    model: str | None  # the reference to route (None: the configured default)
    system: str | None
    parameters: dict[str, Any]
    agent: bool
    max_steps: int
    citations: list[dict[str, Any]] = field(default_factory=list)
    tools: AgentTools | None = None


@dataclass
class _Calls:
    """Tool-call fragments of one step, reassembled by index."""

    parts: dict[int, dict[str, Any]] = field(default_factory=dict)

    def add(self, index: int, id: str | None, name: str | None, arguments: str) -> None:
        call = self.parts.setdefault(index, {"id": None, "name": None, "arguments": ""})
        call["id"] = call["id"] or id
        call["name"] = call["name"] or name
        call["arguments"] += arguments

    def complete(self) -> list[tuple[ToolCall, str | None]]:
        """Each call with its parse error (None when its arguments are a JSON object)."""
        out: list[tuple[ToolCall, str | None]] = []
        for index in sorted(self.parts):
            raw = self.parts[index]
            call_id = raw["id"] or f"call_{index}"
            try:
                arguments = json.loads(raw["arguments"] or "{}")
                problem = None if isinstance(arguments, dict) else "arguments must be a JSON object"
            except json.JSONDecodeError as exc:
                arguments, problem = {}, f"arguments are not valid JSON ({exc.msg})"
            out.append((ToolCall(call_id, raw["name"] or "", arguments if not problem else {}), problem))
        return out


class AnswerRun:
    """Runs one `AnswerPlan` to its end on `generation`."""

    def __init__(
        self,
        plan: AnswerPlan,
        generation: Generation,
        store: ChatStore,
        router: Router,
        write_interval: float,
        after: Callable[[AnswerRun], Awaitable[None]] | None = None,
    ) -> None:
        self.plan = plan
        self.gen = generation
        self.store = store
        self.router = router
        self.write_interval = write_interval
        self.after = after
        self.parts: list[Part] = []
        if plan.citations:
            self.parts.append({"type": "citations", "items": plan.citations})
        self.status = "pending"
        self.error: str | None = None
        self.attempts: list[dict[str, Any]] = []
        self.skipped: list[dict[str, str]] = []
        self.usage = Usage()
        self.model: str | None = None
        self.provider: str | None = None
        self.model_name: str | None = None
        self.fallback = False
        self.finish_reason: str | None = None
        self.started = time.perf_counter()
        self.ttft_ms: float | None = None
        self.latency_ms: float | None = None
        self._last_write = 0.0

    @property
    def text(self) -> str:
        return "".join(p["text"] for p in self.parts if p["type"] == "text")

    # -- the run ---------------------------------------------------------------------------------

    async def run(self) -> None:
        message_id = self.plan.message.id
        self.gen.emit("start", {"messageId": message_id, "modelRequested": self.plan.model})
        if self.plan.citations:
            self.gen.emit("citations", {"messageId": message_id, "items": self.plan.citations})
        try:
            await self._steps()
            self.status = "complete"
        except asyncio.CancelledError:
            self.status, self.error = "interrupted", INTERRUPTED
        except StudioError as exc:
            self.status, self.error = "error", exc.message
        except Exception as exc:  # a bug must still end the message, not leave it streaming
            log.exception("answer %s failed", message_id)
            self.status, self.error = "error", f"internal error: {type(exc).__name__}"
        self.latency_ms = round((time.perf_counter() - self.started) * 1000.0, 2)
        # The final write must happen even if we are being cancelled (shutdown, Stop).
        await asyncio.shield(self._finish())

    async def _finish(self) -> None:
        try:
            await self.store.finish_message(self.plan.message.id, self._progress(final=True), self._metric())
        except Exception:
            log.exception("could not store the end of answer %s", self.plan.message.id)
        payload = self._summary()
        if self.status == "complete":
            self.gen.emit("done", payload)
        elif self.status == "interrupted":
            self.gen.emit("interrupted", payload)
        else:
            self.gen.emit("error", {**payload, "message": self.error})
        if self.after is not None:
            try:
                await self.after(self)
            except Exception:
                log.exception("after-answer work failed for %s", self.plan.message.id)

    async def _steps(self) -> None:
        history = list(wire_messages(self.plan.branch, self.plan.system))
        steps = self.plan.max_steps if self.plan.agent else 1
        for step in range(steps):
            last_step = step == steps - 1
            calls = await self._one_step(history, offer_tools=self.plan.agent and not last_step)
            if not calls:
                return
            history.extend(await self._run_tools(calls))
        # Out of steps with tools still wanted: the last step was asked without tools, so we only
        # get here when it still produced calls; say so rather than end silently.
        if not self.plan.agent:
            raise StudioError("the model asked to call tools, which this routing profile does not offer")
        raise StudioError(f"the agent used all {steps} steps without a final answer")

    async def _one_step(self, history: list[WireMessage], *, offer_tools: bool) -> list[ToolCall]:
        params = self.plan.parameters
        request = ChatRequest(
            model=self.plan.model or "",
            messages=tuple(history),
            tools=TOOLS if offer_tools else (),
            temperature=params.get("temperature"),
            top_p=params.get("top_p"),
            max_tokens=params.get("max_tokens"),
        )
        stream = self.router.stream(request, RouteOptions(fallbacks=True, route="chat"))
        calls = _Calls()
        try:
            await stream.start()
            self._note_model(stream.info)
            async for event in stream:
                if stream.info.model_used != self.model:
                    self._note_model(stream.info)
                if event.type == "text" and event.text:
                    await self._text(event.text)
                elif event.type == "tool_call" and event.tool_call is not None:
                    d = event.tool_call
                    calls.add(d.index, d.id, d.name, d.arguments)
                elif event.type == "finish":
                    self.finish_reason = event.finish_reason
                elif event.type == "error":
                    raise StudioError(event.error or "the stream failed")
        finally:
            await stream.aclose()
            self._absorb(stream.info)
        return [call for call, _ in calls.complete()] if calls.parts else []

    async def _run_tools(self, calls: list[ToolCall]) -> list[WireMessage]:
        assert self.plan.tools is not None
        results: list[ToolResultPart] = []
        for call in calls:
            part = {"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments}
            self.parts.append(part)
            self.gen.emit("tool_call", {"messageId": self.plan.message.id, **_camel(part)})
            outcome = await self.plan.tools.run(call.name, call.arguments)
            result = {
                "type": "tool_result",
                "tool_call_id": call.id,
                "name": call.name,
                "content": outcome.content,
                "is_error": outcome.is_error,
            }
            self.parts.append(result)
            self.gen.emit("tool_result", {"messageId": self.plan.message.id, **_camel(result)})
            results.append(ToolResultPart(call.id, call.name, outcome.content, outcome.is_error))
        await self._write()
        # The model's own text of this step stays in the message; it is replayed as its turn.
        return [WireMessage("assistant", tuple(calls)), WireMessage("tool", tuple(results))]

    # -- bookkeeping -----------------------------------------------------------------------------

    async def _text(self, text: str) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = round((time.perf_counter() - self.started) * 1000.0, 2)
        if self.parts and self.parts[-1]["type"] == "text":
            self.parts[-1]["text"] += text
        else:
            self.parts.append({"type": "text", "text": text})
        self.gen.emit("delta", {"messageId": self.plan.message.id, "text": text})
        first = self.status == "pending"
        self.status = "streaming"
        if first or time.monotonic() - self._last_write >= self.write_interval:
            await self._write()

    def _note_model(self, info: RouteInfo) -> None:
        if info.resolved is None or info.model_used == self.model:
            return
        self.model = info.model_used
        self.provider = info.resolved.entry.provider_id
        self.model_name = info.resolved.display_name
        # From the user's side any model but the one they chose is a fallback, also when the chosen
        # one was skipped before it was tried (no key, offline) and the router's plan began elsewhere.
        chose_another = self.plan.model is not None and self.model != self.plan.model
        self.fallback = self.fallback or info.fallback or chose_another
        self.gen.emit(
            "model",
            {
                "messageId": self.plan.message.id,
                "model": self.model,
                "provider": self.provider,
                "name": self.model_name,
                "fallback": self.fallback,
            },
        )

    def _absorb(self, info: RouteInfo) -> None:
        self.attempts.extend(a.as_dict() for a in info.attempts)
        for model, reason in info.skipped:  # why a model of the plan was not tried (no key, offline…)
            if not any(s["model"] == model for s in self.skipped):
                self.skipped.append({"model": model, "reason": reason})
        if info.usage is not None:
            self.usage = Usage(
                self.usage.input_tokens + info.usage.input_tokens,
                self.usage.output_tokens + info.usage.output_tokens,
            )
        self.fallback = self.fallback or info.fallback

    async def _write(self) -> None:
        self._last_write = time.monotonic()
        await self.store.update_message(self.plan.message.id, self._progress())

    def _progress(self, *, final: bool = False) -> MessageProgress:
        progress = MessageProgress(
            parts=[dict(p) for p in self.parts],
            status=self.status,  # type: ignore[arg-type]
            model=self.model,
            provider=self.provider,
            attempts=list(self.attempts) or None,
        )
        if final:
            progress.error = self.error
            progress.input_tokens = self.usage.input_tokens or None
            progress.output_tokens = self.usage.output_tokens or None
            progress.latency_ms = self.latency_ms
            progress.ttft_ms = self.ttft_ms
        return progress

    def tokens_per_second(self) -> float | None:
        out = self.usage.output_tokens
        if not out or self.latency_ms is None:
            return None
        generating = (self.latency_ms - (self.ttft_ms or 0.0)) / 1000.0
        return round(out / generating, 2) if generating > 0 else None

    def _metric(self) -> MessageMetric:
        return MessageMetric(
            message_id=self.plan.message.id,
            conversation_id=self.plan.conversation_id,
            model=self.model,
            provider=self.provider,
            outcome=self.status,
            fallback=self.fallback,
            attempts=len(self.attempts),
            latency_ms=self.latency_ms,
            ttft_ms=self.ttft_ms,
            input_tokens=self.usage.input_tokens,
            output_tokens=self.usage.output_tokens,
            tokens_per_second=self.tokens_per_second(),
            created_at=datetime.now(UTC),
        )

    def _summary(self) -> dict[str, Any]:
        return {
            "messageId": self.plan.message.id,
            "status": self.status,
            "finishReason": self.finish_reason,
            "model": self.model,
            "provider": self.provider,
            "modelName": self.model_name,
            "fallback": self.fallback,
            "latencyMs": self.latency_ms,
            "timeToFirstTokenMs": self.ttft_ms,
            "tokensPerSecond": self.tokens_per_second(),
            "usage": {"inputTokens": self.usage.input_tokens, "outputTokens": self.usage.output_tokens},
            "attempts": self.attempts,
            "skipped": self.skipped,
        }


def _camel(part: Part) -> dict[str, Any]:
    names = {"tool_call_id": "toolCallId", "is_error": "isError"}
    return {names.get(k, k): v for k, v in part.items() if k != "type"}
