"""The Creator Studio service on a real Studio against fake engines: what the router's observer
reports, what a crash or shutdown leaves behind, and the bound on runaway output."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from mmstudio.config import CodegenConfig, Routing, StudioConfig
from mmstudio.domain.codegen.service import CodegenRequest
from mmstudio.domain.plan import Candidate, Plan
from mmstudio.domain.router import Attempt, RouteOptions
from mmstudio.errors import AllModelsFailed
from mmstudio.providers.base import ChatRequest, Message
from mmstudio.storage.codegen_repo import CodegenRepository
from mmstudio.storage.db import session_factory
from tests.domain.conftest import OpenStudio, local_env
from tests.fakes.base import Reply
from tests.gateway.test_compare import HeldOllama, event_gate

LLAMA = "ollama/llama3.2:latest"
REQUEST = CodegenRequest("Hello", "a hello script", "python-cli", "script", LLAMA)


@pytest.fixture
def ollama() -> Iterator[HeldOllama]:
    with HeldOllama() as server:
        yield server


class Observed:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def planned(self, plan: Plan) -> None:
        self.calls.append(("planned", [c.model_id for c in plan.candidates]))

    def trying(self, candidate: Candidate, number: int) -> None:
        self.calls.append(("trying", (candidate.model_id, number)))

    def failed(self, candidate: Candidate, attempt: Attempt) -> None:
        self.calls.append(("failed", (candidate.model_id, attempt.kind)))


async def test_the_router_tells_an_observer_each_step_and_takes_a_chain(
    open_studio: OpenStudio, ollama: HeldOllama
) -> None:
    studio = await open_studio(
        local_env(ollama, None), config=StudioConfig(routing=Routing(retries=1, backoff_base=0))
    )
    await studio.registry.detect()
    observed = Observed()
    ollama.script(Reply(status=500), Reply(status=500), Reply(text="fine"))
    request = ChatRequest(model=LLAMA, messages=(Message.text("user", "Hi"),))
    options = RouteOptions(chain=("ollama/gemma3:4b", "nobody/nothing"), observer=observed)
    routed = await studio.router.chat(request, options)
    assert routed.info.model_used == "ollama/gemma3:4b"
    assert observed.calls == [
        ("planned", [LLAMA, "ollama/gemma3:4b"]),
        ("trying", (LLAMA, 1)),
        ("failed", (LLAMA, "unavailable")),
        ("trying", (LLAMA, 2)),
        ("failed", (LLAMA, "unavailable")),
        ("trying", ("ollama/gemma3:4b", 3)),
    ]
    assert ("nobody/nothing", "not in the registry") in routed.info.skipped
    # An empty chain means no fallback at all (not the default chain).
    ollama.script(Reply(status=500), Reply(status=500))
    with pytest.raises(AllModelsFailed):
        await studio.router.chat(request, RouteOptions(chain=()))


async def test_closing_the_studio_mid_generation_keeps_the_text_as_interrupted(
    open_studio: OpenStudio, ollama: HeldOllama
) -> None:
    studio = await open_studio(local_env(ollama, None))
    await studio.registry.detect()
    never = threading.Event()
    ollama.script(Reply(chunks=["File: main.py\n```python\nprint(1)\n", " held back"]))
    ollama.hold(" held back", event_gate(never))
    project = await studio.codegen.start(REQUEST, user="test")
    async for event in studio.codegen.listen(project.id):
        if event.type == "text":
            break
    await studio.close()
    never.set()
    again = await open_studio(local_env(ollama, None))
    stored = await again.codegen.get(project.id)
    assert stored.status == "interrupted" and stored.raw_text == "File: main.py\n```python\nprint(1)\n"
    assert stored.error == "the studio stopped before this generation finished"
    # The unterminated block is still a file: nothing generated is lost.
    assert [(f.path, f.content) for f in stored.files] == [("main.py", "print(1)\n")]


async def test_a_crash_leaves_nothing_generating(open_studio: OpenStudio) -> None:
    studio = await open_studio(local_env(None, None))
    repo = CodegenRepository(session_factory(studio.engine))
    left = await repo.create(
        name="x", description="y", framework="react", target_type="page", model_requested=None
    )
    assert await studio.codegen.recover() == 1
    stored = await studio.codegen.get(left.id)
    assert stored.status == "interrupted" and stored.finished_at is not None


async def test_runaway_output_is_stopped_and_said(open_studio: OpenStudio, ollama: HeldOllama) -> None:
    config = StudioConfig(codegen=CodegenConfig(max_total_kb=1))
    studio = await open_studio(local_env(ollama, None), config=config)
    await studio.registry.detect()
    ollama.script(Reply(chunks=["File: a.py\n```python\nx = 1\n```\n", *["# more\n" * 50] * 20]))
    project = await studio.codegen.generate(REQUEST, user="test")
    assert project.status == "complete" and [f.path for f in project.files] == ["a.py"]
    assert any("was stopped there" in s.reason for s in project.skipped)
    assert len(project.raw_text) < 3000


async def test_listeners_arriving_late_see_everything_from_the_start(
    open_studio: OpenStudio, ollama: HeldOllama
) -> None:
    studio = await open_studio(local_env(ollama, None))
    await studio.registry.detect()
    gate = threading.Event()
    ollama.script(
        Reply(chunks=["File: a.py\n```python\nx = 1\n```\n", "File: b.py\n```python\ny = 2\n```\n"])
    )
    ollama.hold("File: b.py", event_gate(gate))
    project = await studio.codegen.start(REQUEST, user="test")
    early = studio.codegen.listen(project.id)
    first = [await anext(early) for _ in range(5)]  # project, plan, attempt, text, file
    assert [e.type for e in first] == ["project", "plan", "attempt", "text", "file"]
    late = studio.codegen.listen(project.id)  # joins now: replays the same five, then follows
    gate.set()
    rest_early = [e.type async for e in early]
    everything_late = [e.type async for e in late]
    assert everything_late == [e.type for e in first] + rest_early
    assert rest_early[-1] == "done"
    await asyncio.wait_for(studio.codegen.result(project.id), 10)
