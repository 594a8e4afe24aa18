"""Cloud providers end to end through the Studio: key and base-URL variables, the right adapter and quirks."""

from __future__ import annotations

import pytest

from mmstudio.errors import AllModelsFailed, AuthenticationError
from mmstudio.providers.base import Message
from tests.domain.conftest import OpenStudio, local_env
from tests.fakes.anthropic_server import FakeAnthropicServer
from tests.fakes.base import FakeServer, Reply
from tests.fakes.gemini_server import FakeGeminiServer
from tests.fakes.openai_server import FakeOpenAIServer

KEY = "cloud-SECRET-key-0123456789"

CASES = {
    # provider: (model id, fake factory, base-URL suffix, header carrying the key)
    "openai": (
        "openai/gpt-4o",
        lambda: FakeOpenAIServer(models=["gpt-4o"], api_key=KEY),
        "/v1",
        "authorization",
    ),
    "xai": (
        "xai/grok-4.3",
        lambda: FakeOpenAIServer(flavor="xai", models=["grok-4.3"], api_key=KEY),
        "/v1",
        "authorization",
    ),
    "anthropic": (
        "anthropic/claude-sonnet-4-5",
        lambda: FakeAnthropicServer(models=["claude-sonnet-4-5"], api_key=KEY),
        "",
        "x-api-key",
    ),
    "gemini": (
        "gemini/gemini-2.5-flash",
        lambda: FakeGeminiServer(models=["gemini-2.5-flash"], api_key=KEY),
        "/v1beta",
        "x-goog-api-key",
    ),
}
ENV = {"openai": "OPENAI", "xai": "XAI", "anthropic": "ANTHROPIC", "gemini": "GEMINI"}


@pytest.mark.parametrize("provider", list(CASES))
async def test_cloud_model_answers_through_its_base_url(open_studio: OpenStudio, provider: str) -> None:
    model_id, make, suffix, header = CASES[provider]
    fake: FakeServer = make().start()
    try:
        prefix = ENV[provider]
        env = {**local_env(None, None), f"{prefix}_API_KEY": KEY, f"{prefix}_BASE_URL": fake.url + suffix}
        studio = await open_studio(env)
        fake.script(Reply(text="Cloud says hi."), Reply(text="Streamed from the cloud."))
        result = await studio.chat(model_id, [Message.text("user", "hello")])
        assert result.response.text == "Cloud says hi."
        streamed = [e async for e in studio.stream_chat(model_id, [Message.text("user", "again")])]
        assert "".join(e.text for e in streamed if e.type == "text") == "Streamed from the cloud."
        assert streamed[-1].type == "finish"
        assert KEY in fake.requests[-1].headers[header]
        states = await studio.registry.health.check_all()
        assert states[f"cloud:{provider}"].status == "healthy"
        await studio.router.drain()  # session counts are written just after the answer
        view = next(v for v in studio.registry.views() if v.entry.id == model_id)
        assert view.usage.sessions == 2 and view.available
    finally:
        fake.stop()


@pytest.mark.parametrize("provider", list(CASES))
async def test_a_wrong_cloud_key_is_an_authentication_error_without_the_key(
    open_studio: OpenStudio, provider: str
) -> None:
    model_id, make, suffix, _ = CASES[provider]
    fake: FakeServer = make().start()
    wrong = "wrong-SECRET-key-9876543210"
    try:
        prefix = ENV[provider]
        studio = await open_studio(
            {**local_env(None, None), f"{prefix}_API_KEY": wrong, f"{prefix}_BASE_URL": fake.url + suffix}
        )
        with pytest.raises(AllModelsFailed) as info:
            await studio.chat(model_id, [Message.text("user", "hello")], fallbacks=False)
        assert isinstance(info.value.last, AuthenticationError)
        assert wrong not in str(info.value) and wrong[:12] not in str(info.value)
    finally:
        fake.stop()
