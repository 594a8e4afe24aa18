"""The router against fake upstreams: plans, retries, backoff, timeouts, breaker, mid-stream failover."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mmstudio.config import ModelConfig, Routing, StudioConfig, Timeouts
from mmstudio.domain.router import RouteOptions, Router
from mmstudio.errors import AllModelsFailed, BadRequest, ModelNotFound, NoModelAvailable
from mmstudio.providers.base import ChatRequest, ImagePart, Message, StreamEvent, TextPart, ToolSpec
from mmstudio.studio import Studio
from tests.domain.conftest import OpenStudio, local_env
from tests.fakes.base import Reply
from tests.fakes.ollama_server import FakeOllamaServer
from tests.fakes.openai_server import FakeOpenAIServer

LLAMA = "ollama/llama3.2:latest"
GEMMA = "lmstudio/gemma-2-2b-it"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sleeps:
    """Records backoff waits instead of waiting (the router's sleep is injected)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def ask(text: str = "Hi", model: str = LLAMA, **params: Any) -> ChatRequest:
    return ChatRequest(model=model, messages=(Message.text("user", text),), **params)


@pytest.fixture
def ollama() -> Iterator[FakeOllamaServer]:
    with FakeOllamaServer() as server:
        yield server


async def routed(
    open_studio: OpenStudio,
    ollama: FakeOllamaServer | None,
    lmstudio: FakeOpenAIServer | None,
    *,
    env: dict[str, str] | None = None,
    **config: Any,
) -> tuple[Studio, Router, Sleeps, Clock]:
    routing = Routing(**config.pop("routing", {}))
    studio_config = StudioConfig(routing=routing, **config)
    studio = await open_studio({**local_env(ollama, lmstudio), **(env or {})}, config=studio_config)
    await studio.registry.detect()
    sleeps, clock = Sleeps(), Clock()
    router = Router(
        studio.registry,
        studio_config,
        sleep=sleeps,
        jitter=lambda: 0.5,
        clock=clock,
        on_success=studio.registry.note_session,
    )
    return studio, router, sleeps, clock


async def collect(stream: Any) -> list[StreamEvent]:
    return [event async for event in stream]


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a condition another task or thread makes true (no fixed sleeps)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - set by the fake's server thread, not by a task
            await asyncio.sleep(0.01)


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if e.type == "text")


# -- plans --------------------------------------------------------------------------------------


async def test_plan_is_selected_then_own_fallbacks_then_local_then_cloud(
    open_studio: OpenStudio, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    models = (ModelConfig(id=GEMMA, fallbacks=("anthropic/claude-haiku-4-5",)),)
    _, router, _, _ = await routed(
        open_studio,
        ollama,
        lmstudio,
        env={"ANTHROPIC_API_KEY": "a", "OPENAI_API_KEY": "o"},
        models=models,
        routing={"max_candidates": 10},
    )
    plan = router.plan(ask(model=GEMMA))
    ids = [c.model_id for c in plan.candidates]
    assert ids[:2] == [GEMMA, "anthropic/claude-haiku-4-5"]
    local = [i for i in ids[2:] if i.startswith(("ollama/", "lmstudio/"))]
    cloud = [i for i in ids[2:] if not i.startswith(("ollama/", "lmstudio/"))]
    assert ids[2:] == local + cloud and local and "openai/gpt-4o-mini" in cloud
    assert [c.source for c in plan.candidates[:2]] == ["selected", "fallback"]
    assert plan.candidates[0].timeout == 30.0 and plan.candidates[1].timeout == 60.0


async def test_plan_skips_offline_engines_missing_capabilities_and_unknown_fallbacks(
    open_studio: OpenStudio, lmstudio: FakeOpenAIServer
) -> None:
    config = {"fallback_chain": (LLAMA, "ollama/gemma3:4b", GEMMA, "openai/gpt-4o", "nobody/nothing")}
    with FakeOllamaServer() as ollama:
        studio, router, _, _ = await routed(open_studio, ollama, lmstudio, **config)
    await studio.registry.health.check_all()  # the Ollama fake is gone: offline
    plan = router.plan(ask(model=GEMMA, tools=(ToolSpec("calc"),)))
    skipped = dict(plan.skipped)
    assert [c.model_id for c in plan.candidates] == [GEMMA]  # LM Studio did not declare tools: tried
    assert "offline" in skipped[LLAMA] and "offline" in skipped["ollama/gemma3:4b"]
    assert "OPENAI_API_KEY" in skipped["openai/gpt-4o"]
    assert skipped["nobody/nothing"] == "not in the registry"


async def test_plan_skips_models_without_the_needed_capability(
    open_studio: OpenStudio, ollama: FakeOllamaServer
) -> None:
    _, router, _, _ = await routed(open_studio, ollama, None, fallback_chain=("ollama/gemma3:4b",))
    plan = router.plan(ask(tools=(ToolSpec("calc"),)))
    assert [c.model_id for c in plan.candidates] == [LLAMA]  # gemma3 in the fake has no tools
    assert dict(plan.skipped)["ollama/gemma3:4b"] == "does not support tool calling"
    image = Message(role="user", content=(TextPart("what is this"), ImagePart(b"x")))
    with_image = ChatRequest(model=LLAMA, messages=(image,))
    plan = router.plan(with_image)
    assert [c.model_id for c in plan.candidates] == ["ollama/gemma3:4b"]
    assert dict(plan.skipped)[LLAMA] == "does not accept images"


async def test_unknown_model_and_nothing_available_are_clear_errors(
    open_studio: OpenStudio,
) -> None:
    _, router, _, _ = await routed(open_studio, None, None)
    with pytest.raises(ModelNotFound):
        router.plan(ask(model="ollama/nope"))
    with pytest.raises(NoModelAvailable) as info:
        router.plan(ask(model=""))
    assert "Start a local engine" in info.value.message


async def test_a_request_without_a_model_uses_the_default(
    open_studio: OpenStudio, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    _, router, _, _ = await routed(open_studio, ollama, lmstudio, default_model=GEMMA)
    result = await router.chat(ask(model=""))
    assert result.info.model_used == GEMMA
    assert lmstudio.requests_to("/v1/chat/completions")[0].json()["model"] == "gemma-2-2b-it"


# -- retries, fallback, breaker ---------------------------------------------------------------------


async def test_success_counts_a_session(open_studio: OpenStudio, ollama: FakeOllamaServer) -> None:
    studio, router, _, _ = await routed(open_studio, ollama, None)
    result = await router.chat(ask())
    await router.drain()
    assert result.response.text == "Hello from the fake." and result.info.model_used == LLAMA
    assert [a.outcome for a in result.info.attempts] == ["ok"] and not result.info.fallback
    views = {v.entry.id: v for v in studio.registry.views()}
    assert views[LLAMA].usage.sessions == 1 and views[LLAMA].usage.last_used_at is not None


async def test_5xx_is_retried_with_exponential_backoff_then_falls_back(
    open_studio: OpenStudio, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    _, router, sleeps, _ = await routed(
        open_studio, ollama, lmstudio, fallback_chain=(GEMMA,), routing={"retries": 2, "backoff_base": 0.5}
    )
    ollama.script(Reply(status=500), Reply(status=503), Reply(status=502))
    result = await router.chat(ask())
    assert result.info.model_used == GEMMA and result.info.fallback
    assert [(a.model, a.outcome) for a in result.info.attempts] == [
        (LLAMA, "error"),
        (LLAMA, "error"),
        (LLAMA, "error"),
        (GEMMA, "ok"),
    ]
    # equal jitter with jitter()=0.5: 3/4 of base * 2^n
    assert sleeps.calls == [0.375, 0.75]
    assert all(a.kind == "unavailable" for a in result.info.attempts[:3])


async def test_429_honours_retry_after_and_a_long_one_moves_on(
    open_studio: OpenStudio, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    _, router, sleeps, _ = await routed(open_studio, ollama, lmstudio, fallback_chain=(GEMMA,))
    ollama.script(Reply(status=429, headers={"Retry-After": "3"}))
    result = await router.chat(ask())
    assert result.info.model_used == LLAMA and sleeps.calls == [3.0]
    ollama.script(Reply(status=429, headers={"Retry-After": "600"}))
    result = await router.chat(ask())
    assert result.info.model_used == GEMMA and sleeps.calls == [3.0]  # no 10-minute wait


async def test_other_4xx_are_not_retried(
    open_studio: OpenStudio, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    _, router, sleeps, _ = await routed(open_studio, ollama, lmstudio, fallback_chain=(GEMMA,))
    ollama.script(Reply(status=404, error_body={"error": "model 'llama3.2' not found"}))
    result = await router.chat(ask())
    assert [a.kind for a in result.info.attempts] == ["model_not_found", None] and sleeps.calls == []
    ollama.script(Reply(status=400, error_body={"error": "invalid options"}))
    with pytest.raises(BadRequest):
        await router.chat(ask())
    assert len(lmstudio.requests_to("/v1/chat/completions")) == 1  # a bad request is not sent elsewhere


async def test_per_model_timeout_then_fallback(
    open_studio: OpenStudio, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    models = (ModelConfig(id=LLAMA, timeout=0.3),)
    _, router, _, _ = await routed(
        open_studio, ollama, lmstudio, fallback_chain=(GEMMA,), models=models, routing={"retries": 0}
    )
    ollama.script(Reply(delay=5))
    result = await router.chat(ask())
    first = result.info.attempts[0]
    assert first.kind == "timeout" and "within 0.3 s" in (first.error or "")
    assert 250 <= first.latency_ms < 2000 and result.info.model_used == GEMMA


async def test_local_and_cloud_default_timeouts_apply(
    open_studio: OpenStudio, ollama: FakeOllamaServer
) -> None:
    _, router, _, _ = await routed(
        open_studio, ollama, None, timeouts=Timeouts(local=0.2, cloud=60), routing={"retries": 0}
    )
    ollama.script(Reply(delay=5))
    with pytest.raises(AllModelsFailed) as info:
        await router.chat(ask(), RouteOptions(fallbacks=False))
    assert info.value.kind == "timeout" and "within 0.2 s" in info.value.message


async def test_the_whole_request_has_a_deadline(
    open_studio: OpenStudio, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    _, router, _, clock = await routed(
        open_studio, ollama, lmstudio, fallback_chain=(GEMMA,), routing={"deadline": 10, "retries": 3}
    )
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.now += seconds

    router._sleep = sleep
    ollama.script(*[Reply(status=429, headers={"Retry-After": "4"})] * 5)
    lmstudio.script(Reply(status=429, headers={"Retry-After": "4"}))
    with pytest.raises(AllModelsFailed) as info:
        await router.chat(ask())
    # Two 4 s waits fit in 10 s, a third would not: move on; the fallback's wait would not fit either.
    assert waits == [4.0, 4.0]
    assert [a["model"] for a in info.value.attempts] == [LLAMA, LLAMA, LLAMA, GEMMA]
    assert info.value.kind == "rate_limited"

    async def overshooting_sleep(seconds: float) -> None:
        clock.now += seconds + 20  # the deadline passes while waiting

    router._sleep = overshooting_sleep
    ollama.script(Reply(status=503))
    with pytest.raises(AllModelsFailed) as info:
        await router.chat(ask())
    assert "deadline of 10 s passed after 1 attempt" in info.value.message and info.value.kind == "timeout"


async def test_breaker_opens_after_n_failures_then_one_probe_decides(
    open_studio: OpenStudio, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    _, router, _, clock = await routed(
        open_studio,
        ollama,
        lmstudio,
        fallback_chain=(GEMMA,),
        routing={"retries": 0, "breaker_failures": 2, "breaker_cooldown": 30},
    )
    ollama.script(Reply(status=500), Reply(status=500))
    for _ in range(2):
        assert (await router.chat(ask())).info.model_used == GEMMA
    calls = len(ollama.requests_to("/api/chat"))
    result = await router.chat(ask())
    assert result.info.model_used == GEMMA and len(ollama.requests_to("/api/chat")) == calls
    assert "cooling down after 2 failures" in dict(result.info.skipped)[LLAMA]
    clock.now += 31  # the cooldown is over: exactly one probe is let through
    ollama.script(Reply(delay=1.5))
    probe = asyncio.create_task(router.chat(ask()))
    await until(lambda: len(ollama.requests_to("/api/chat")) > calls)  # the probe is in flight
    other = await router.chat(ask())
    assert other.info.model_used == GEMMA  # while the probe runs, others skip the model
    assert (await probe).info.model_used == LLAMA  # the probe succeeded: closed again
    assert (await router.chat(ask())).info.model_used == LLAMA


async def test_a_failed_probe_reopens_the_circuit(
    open_studio: OpenStudio, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    _, router, _, clock = await routed(
        open_studio,
        ollama,
        lmstudio,
        fallback_chain=(GEMMA,),
        routing={"retries": 0, "breaker_failures": 1, "breaker_cooldown": 30},
    )
    ollama.script(Reply(status=500), Reply(status=500))
    await router.chat(ask())
    clock.now += 31
    assert [a.model for a in (await router.chat(ask())).info.attempts] == [LLAMA, GEMMA]  # failed probe
    assert [a.model for a in (await router.chat(ask())).info.attempts] == [GEMMA]  # open again


# -- streams --------------------------------------------------------------------------------------


async def test_stream_falls_back_invisibly_before_the_first_token(
    open_studio: OpenStudio, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    _, router, _, _ = await routed(open_studio, ollama, lmstudio, fallback_chain=(GEMMA,))
    ollama.script(*[Reply(status=503)] * 3)
    lmstudio.script(Reply(text="From the fallback."))
    stream = router.stream(ask())
    await stream.start()
    assert stream.info.model_used == GEMMA
    events = await collect(stream)
    assert text_of(events) == "From the fallback." and events[-1].type == "finish"
    assert [e.type for e in events].count("usage") == 1


async def test_stream_fails_over_mid_answer_and_the_next_model_continues(
    open_studio: OpenStudio, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    _, router, _, _ = await routed(
        open_studio, ollama, lmstudio, fallback_chain=(GEMMA,), routing={"retries": 0}
    )
    ollama.script(Reply(chunks=["The capital ", "of France ", "is", " never"], drop_after=3))
    # The fallback restates the end of what it was given before continuing: that part is cut.
    lmstudio.script(Reply(chunks=["The capital of France is", " Paris."]))
    events = await collect(router.stream(ask("capital of France?")))
    assert text_of(events) == "The capital of France is Paris."
    assert events[-1].type == "finish" and not any(e.type == "error" for e in events)
    sent = lmstudio.requests_to("/v1/chat/completions")[0].json()["messages"]
    assert sent[-2] == {"role": "assistant", "content": "The capital of France is"}
    assert "Continue it from exactly where it stopped" in sent[-1]["content"]


async def test_a_broken_stream_with_nobody_left_ends_with_an_error_not_a_finish(
    open_studio: OpenStudio, ollama: FakeOllamaServer
) -> None:
    _, router, _, _ = await routed(open_studio, ollama, None, routing={"retries": 1})
    ollama.script(
        Reply(chunks=["Half ", "an ", "answer"], drop_after=2),
        Reply(status=500),
    )
    stream = router.stream(ask(), RouteOptions(fallbacks=False))
    events = await collect(stream)
    assert text_of(events) == "Half an "
    assert events[-1].type == "error" and "cut off after 8 characters" in (events[-1].error or "")
    assert not any(e.type == "finish" for e in events)
    assert stream.info.outcome == "error" and len(stream.info.attempts) == 2


async def test_stream_errors_before_any_token_raise_from_start(
    open_studio: OpenStudio, ollama: FakeOllamaServer
) -> None:
    _, router, _, _ = await routed(open_studio, ollama, None, routing={"retries": 0})
    ollama.script(Reply(status=500))
    stream = router.stream(ask(), RouteOptions(fallbacks=False))
    with pytest.raises(AllModelsFailed) as info:
        await stream.start()
    assert info.value.kind == "unavailable"


async def test_stream_times_out_between_chunks(
    open_studio: OpenStudio, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    models = (ModelConfig(id=LLAMA, timeout=0.3),)
    _, router, _, _ = await routed(
        open_studio, ollama, lmstudio, fallback_chain=(GEMMA,), models=models, routing={"retries": 0}
    )
    ollama.script(Reply(chunks=["One ", "two ", "three"], chunk_delay=3))
    lmstudio.script(Reply(chunks=["two three."]))
    stream = router.stream(ask())
    events = await collect(stream)
    assert text_of(events) == "One two three."
    assert [a.kind for a in stream.info.attempts] == ["timeout", None]
    assert stream.info.model_used == GEMMA and stream.info.fallback


async def test_closing_a_stream_records_a_cancelled_request(
    open_studio: OpenStudio, ollama: FakeOllamaServer
) -> None:
    _, router, _, _ = await routed(open_studio, ollama, None)
    ollama.script(Reply(chunks=["a ", "b ", "c"], chunk_delay=0.2))
    stream = router.stream(ask())
    async for event in stream:
        assert event.type == "text"
        break
    await stream.aclose()
    assert stream.info.outcome == "cancelled"
    assert router.breaker.view(LLAMA).state == "closed"
