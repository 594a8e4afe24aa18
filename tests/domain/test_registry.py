"""The model registry against fake local engines: detection, resolution, availability, registration."""

from __future__ import annotations

import pytest

from mmstudio.config import StudioConfig, Timeouts
from mmstudio.domain.registry import ModelRequest
from mmstudio.errors import (
    EndpointTestFailed,
    InvalidRequest,
    ModelNotFound,
    NoModelAvailable,
    NotFound,
    ProviderError,
)
from mmstudio.providers.base import Message
from mmstudio.storage.db import session_factory
from mmstudio.storage.repositories import UsageRepository
from tests.domain.conftest import OpenStudio, local_env
from tests.fakes.base import BlackHole, Reply, closed_port
from tests.fakes.ollama_server import FakeOllamaServer
from tests.fakes.openai_server import FakeOpenAIServer


async def test_detects_ollama_and_lmstudio_with_capabilities(
    open_studio: OpenStudio, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    studio = await open_studio(local_env(ollama, lmstudio))
    results = {r.provider_id: r for r in await studio.registry.detect()}
    assert results["ollama"].ok and set(results["ollama"].models) == {"llama3.2:latest", "gemma3:4b"}
    assert results["lmstudio"].ok and "gemma-2-2b-it" in results["lmstudio"].models
    by_id = {v.entry.id: v for v in studio.registry.views()}
    llama = by_id["ollama/llama3.2:latest"]
    assert (
        llama.entry.kind == "local" and llama.entry.capabilities.tools and not llama.entry.capabilities.vision
    )
    assert llama.entry.capabilities.context_length == 131072
    assert by_id["ollama/gemma3:4b"].entry.capabilities.vision
    assert by_id["lmstudio/gemma-2-2b-it"].entry.provider_id == "lmstudio"


async def test_unreachable_engines_are_reported_not_raised(open_studio: OpenStudio) -> None:
    studio = await open_studio(local_env(None, None))
    results = await studio.registry.detect()
    assert {r.provider_id for r in results} == {"ollama", "lmstudio", "comfyui", "automatic1111"}
    assert all(not r.ok and r.error and "refused" in r.error for r in results)
    states = studio.registry.health.states()
    assert states["ollama"].status == "offline" and "refused" in (states["ollama"].last_error or "")


async def test_resolution_by_id_tag_name_alias_and_legacy(
    open_studio: OpenStudio, ollama: FakeOllamaServer
) -> None:
    config = StudioConfig(aliases={"fast": "ollama/llama3.2:latest"})
    studio = await open_studio({**local_env(ollama, None), "OPENAI_API_KEY": "sk-x"}, config=config)
    await studio.registry.detect()
    resolve = studio.registry.resolve
    assert resolve("ollama/llama3.2:latest").entry.id == "ollama/llama3.2:latest"
    assert resolve("ollama/llama3.2").entry.id == "ollama/llama3.2:latest"  # Ollama's default tag
    assert resolve("OLLAMA/Llama3.2:latest").entry.id == "ollama/llama3.2:latest"
    assert resolve("gemma3:4b").entry.id == "ollama/gemma3:4b"  # unique bare name
    assert resolve("fast").entry.id == "ollama/llama3.2:latest"
    assert resolve("GPT-4o").entry.id == "openai/gpt-4o"  # display name
    legacy = resolve("dalle")
    assert legacy.entry.id == "openai/gpt-image-1" and legacy.display_name == "DALL-E"
    with pytest.raises(ModelNotFound) as info:
        resolve("ollama/nope")
    assert "ollama/llama3.2:latest" in info.value.available
    assert "anthropic/claude-opus-4-5" not in info.value.available  # no key: not offered
    assert "ollama/nope" in info.value.message and "Available:" in info.value.message


async def test_cloud_models_need_their_key(open_studio: OpenStudio) -> None:
    studio = await open_studio({**local_env(None, None), "ANTHROPIC_API_KEY": "sk-ant-x"})
    views = {v.entry.id: v for v in studio.registry.views()}
    gpt = views["openai/gpt-4o"]
    assert not gpt.available and gpt.unavailable_reason and "OPENAI_API_KEY" in gpt.unavailable_reason
    assert gpt.entry.capabilities.tools and gpt.entry.capabilities.vision and gpt.entry.input_price == 2.5
    assert views["anthropic/claude-sonnet-4-5"].available
    assert views["openai/gpt-image-1"].entry.modality == "image"
    assert views["openai/gpt-image-1"].entry.capabilities.input_fidelity
    assert not views["openai/gpt-image-1-mini"].entry.capabilities.input_fidelity
    assert views["xai/grok-imagine-video"].entry.modality == "video"
    assert views["openai/gpt-5-codex"].entry.modality == "code"
    assert {"openai", "anthropic", "gemini", "xai"} <= {v.entry.provider_id for v in views.values()}


async def test_register_names_a_model_and_persists(
    open_studio: OpenStudio, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    studio = await open_studio(local_env(ollama, lmstudio))
    saved = await studio.registry.register(
        platform="lmstudio",
        base_url=f"{lmstudio.url}/v1",
        models=[ModelRequest(model="gemma-2-2b-it", name="My Gemma 2B", alias="gemma")],
    )
    assert saved.provider_id == "lmstudio"  # same server as the built-in LM Studio
    resolved = studio.registry.resolve("My Gemma 2B")
    assert resolved.entry.id == "lmstudio/gemma-2-2b-it" and resolved.display_name == "My Gemma 2B"
    assert studio.registry.resolve("gemma").entry.source == "registered"
    assert studio.registry.health.state(saved.id).status == "healthy"
    await studio.close()
    again = await open_studio(local_env(ollama, lmstudio))  # a new process on the same data dir
    assert again.registry.resolve("My Gemma 2B").entry.id == "lmstudio/gemma-2-2b-it"


async def test_register_other_server_gets_its_own_provider(
    open_studio: OpenStudio, lmstudio: FakeOpenAIServer
) -> None:
    with FakeOpenAIServer(flavor="openai", models=["qwen2.5-coder"], api_key="sk-box-1234567890") as box:
        studio = await open_studio(local_env(None, lmstudio))
        saved = await studio.registry.register(
            platform="openai_compat",
            base_url=f"{box.url}/v1",
            api_key="sk-box-1234567890",
            name="GPU Box",
            models=[ModelRequest(model="qwen2.5-coder", name="Qwen Coder")],
        )
        assert saved.provider_id == "gpu-box"
        assert box.requests[-1].headers["authorization"] == "Bearer sk-box-1234567890"
        result = await studio.chat("Qwen Coder", [Message.text("user", "hi")])
        assert result.response.text and result.info.model_used == "gpu-box/qwen2.5-coder"
        await studio.registry.remove_endpoint(saved.id)
        with pytest.raises(ModelNotFound):
            studio.registry.resolve("Qwen Coder")
        with pytest.raises(NotFound):
            await studio.registry.remove_endpoint(saved.id)


@pytest.mark.parametrize("case", ["refused", "timeout", "http_500", "not_ollama", "bad_key"])
async def test_failed_connection_test_names_the_cause_and_saves_nothing(
    open_studio: OpenStudio, case: str, ollama: FakeOllamaServer
) -> None:
    studio = await open_studio(local_env(None, None), config=StudioConfig(timeouts=Timeouts(local=0.5)))
    hole = BlackHole()
    openai_fake = FakeOpenAIServer(flavor="openai").start()
    keyed = FakeOpenAIServer(flavor="openai", api_key="sk-right-000000000").start()
    try:
        platform, url, key, cause = {
            "refused": ("ollama", f"http://127.0.0.1:{closed_port()}", None, "connection_refused"),
            "timeout": ("openai_compat", f"{hole.url}/v1", None, "timeout"),
            "http_500": ("ollama", ollama.url, None, "http_500"),
            "not_ollama": ("ollama", openai_fake.url, None, "not_ollama_server"),
            "bad_key": ("openai_compat", f"{keyed.url}/v1", "sk-wrong-111111111", "authentication"),
        }[case]
        if case == "http_500":
            ollama.route_errors["/api/tags"] = 500
        with pytest.raises(EndpointTestFailed) as info:
            await studio.registry.register(
                platform=platform,
                base_url=url,
                api_key=key,  # type: ignore[arg-type]
                models=[ModelRequest(model="m", name="M")],
            )
        assert info.value.cause == cause
        assert url.split("://")[1].split("/")[0] in info.value.message
        assert "sk-wrong" not in info.value.message
        assert studio.registry.registered_endpoints() == []
    finally:
        hole.close()
        openai_fake.stop()
        keyed.stop()


async def test_register_rejects_a_model_the_server_does_not_serve(
    open_studio: OpenStudio, ollama: FakeOllamaServer
) -> None:
    studio = await open_studio(local_env(ollama, None))
    with pytest.raises(InvalidRequest, match="gemma3:4b"):
        await studio.registry.register(
            platform="ollama", base_url=ollama.url, models=[ModelRequest(model="mistral", name="Mistral")]
        )
    assert studio.registry.registered_endpoints() == []


async def test_health_and_availability_follow_probes(
    open_studio: OpenStudio, ollama: FakeOllamaServer
) -> None:
    studio = await open_studio(local_env(ollama, None))
    await studio.registry.detect()
    assert studio.registry.health.state("ollama").status == "checking"
    states = await studio.registry.health.check_all()
    assert states["ollama"].status == "healthy" and (states["ollama"].latency_ms or 0) > 0
    assert states["ollama"].version == ollama.version
    assert states["lmstudio"].status == "offline"
    assert "cloud:openai" not in states  # no key, nothing to probe
    ollama.route_errors["/api/version"] = 500
    await studio.registry.health.check_all()
    view = next(v for v in studio.registry.views() if v.entry.id == "ollama/llama3.2:latest")
    assert not view.available and "not answering" in (view.unavailable_reason or "")


async def test_sessions_are_counted_on_success_only(
    open_studio: OpenStudio, ollama: FakeOllamaServer
) -> None:
    studio = await open_studio(local_env(ollama, None))
    await studio.registry.detect()
    await studio.chat("ollama/llama3.2", [Message.text("user", "hello")])
    text = "".join(
        [e.text async for e in studio.stream_chat("ollama/llama3.2", [Message.text("user", "again")])]
    )
    assert text == "Hello from the fake."
    ollama.script(*[Reply(status=500)] * 3)  # and its two retries
    with pytest.raises(ProviderError, match="HTTP 500"):
        await studio.chat("ollama/llama3.2", [Message.text("user", "fails")], fallbacks=False)
    await studio.router.drain()
    view = next(v for v in studio.registry.views() if v.entry.id == "ollama/llama3.2:latest")
    assert view.usage.sessions == 2 and view.usage.last_used_at is not None


async def test_config_overrides_and_config_endpoints(
    open_studio: OpenStudio, ollama: FakeOllamaServer
) -> None:
    from mmstudio.config import EndpointConfigEntry, ModelConfig

    with FakeOpenAIServer(flavor="llamacpp", models=["tiny"]) as box:
        config = StudioConfig(
            endpoints=(EndpointConfigEntry(name="box", platform="openai_compat", base_url=f"{box.url}/v1"),),
            models=(
                ModelConfig(
                    id="ollama/llama3.2:latest", name="Laptop Llama", timeout=12, fallbacks=("box/tiny",)
                ),
                ModelConfig(id="openai/gpt-9", name="GPT-9", modality="chat"),
            ),
        )
        studio = await open_studio(local_env(ollama, None), config=config)
        await studio.registry.detect()
        assert studio.registry.resolve("box/tiny").entry.kind == "local"
        llama = studio.registry.resolve("Laptop Llama").entry
        assert llama.timeout == 12 and llama.fallbacks == ("box/tiny",) and llama.source == "config"
        assert llama.capabilities.tools  # detected capabilities survive the override
        assert studio.registry.resolve("openai/gpt-9").entry.display_name == "GPT-9"


async def test_chat_refuses_non_chat_and_keyless_models(open_studio: OpenStudio) -> None:
    studio = await open_studio({**local_env(None, None), "OPENAI_API_KEY": "sk-x"})
    with pytest.raises(NoModelAvailable, match="is an image model, not a chat model"):
        await studio.chat("dalle", [Message.text("user", "a cat")], fallbacks=False)
    with pytest.raises(NoModelAvailable, match="needs ANTHROPIC_API_KEY to be set"):
        await studio.chat("anthropic/claude-sonnet-4-5", [Message.text("user", "hi")], fallbacks=False)


async def test_an_engine_that_comes_up_later_gets_its_models_detected(
    open_studio: OpenStudio, ollama: FakeOllamaServer
) -> None:
    ollama.route_errors.update({"/api/version": 500, "/api/tags": 500})  # "not up yet"
    studio = await open_studio(local_env(ollama, None))
    (result,) = [r for r in await studio.registry.detect() if r.provider_id == "ollama"]
    assert not result.ok and studio.registry.health.state("ollama").status == "offline"
    with pytest.raises(ModelNotFound):
        studio.registry.resolve("ollama/llama3.2:latest")
    ollama.route_errors.clear()  # the user starts Ollama
    await studio.registry.health.check_all()  # the monitor's next round
    assert studio.registry.health.state("ollama").status == "healthy"
    assert studio.registry.resolve("ollama/llama3.2:latest").entry.capabilities.tools


async def test_sessions_are_counted_in_memory_and_written_in_one_upsert_per_model(
    open_studio: OpenStudio, ollama: FakeOllamaServer
) -> None:
    studio = await open_studio(local_env(ollama, None))
    await studio.registry.detect()
    for _ in range(50):
        studio.registry.note_session("ollama/llama3.2:latest")  # the request path: no database
    studio.registry.note_session("ollama/gemma3:4b")
    views = {v.entry.id: v for v in studio.registry.views()}
    assert views["ollama/llama3.2:latest"].usage.sessions == 50
    stored = await UsageRepository(session_factory(studio.engine)).all()
    assert "ollama/llama3.2:latest" not in stored  # not written yet
    await studio.registry.flush_sessions()
    stored = await UsageRepository(session_factory(studio.engine)).all()
    assert stored["ollama/llama3.2:latest"].sessions == 50 and stored["ollama/gemma3:4b"].sessions == 1
    await studio.registry.flush_sessions()  # nothing pending: nothing counted twice
    stored = await UsageRepository(session_factory(studio.engine)).all()
    assert stored["ollama/llama3.2:latest"].sessions == 50
