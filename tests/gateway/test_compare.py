"""The compare arena through a real uvicorn and fake engines: concurrent side-by-side streams,
stored answers, a client that leaves, validation, votes and the leaderboard.

Concurrency is proven by gates, not by timing: a fake holds a piece of its stream until something
only a concurrent run can produce has happened (the client saw the other side's words, or every
side reached the same point). A sequential implementation never opens the gate; the held stream
is then cut, the side ends in an error and the test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from mmstudio.config import Routing, StudioConfig
from mmstudio.domain.chat.leaderboard import BOTH_BAD, TIE, Vote, rank
from tests.fakes.base import DropConnection, Reply
from tests.fakes.ollama_server import FakeOllamaServer
from tests.fakes.openai_server import FakeOpenAIServer
from tests.gateway.conftest import LiveStudio, OpenLive, engines

LLAMA = "ollama/llama3.2:latest"
GEMMA3 = "ollama/gemma3:4b"
GEMMA = "lmstudio/gemma-2-2b-it"
URL = "/api/chat/ui/compare"
HOLD_SECONDS = 10.0  # how long a gate waits before giving up (only reached when the test fails)

Event = tuple[str, dict[str, Any]]


class Held:
    """A fake whose stream stops before the piece containing `marker` until `opened()` is true."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.holds: list[tuple[bytes, Callable[[], bool]]] = []

    def hold(self, marker: str, opened: Callable[[], bool]) -> None:
        self.holds.append((json.dumps(marker).encode(), opened))

    def stream_response(self, pieces: Any, reply: Reply, media_type: str) -> Any:
        response = super().stream_response(pieces, reply, media_type)  # type: ignore[misc]
        inner, holds = response.body_iterator, list(self.holds)

        async def held() -> AsyncIterator[Any]:
            async for piece in inner:
                for marker, opened in holds:
                    if marker in piece and not await asyncio.to_thread(opened):
                        raise DropConnection(f"the gate before {marker!r} never opened")
                yield piece

        response.body_iterator = held()
        return response


class HeldOllama(Held, FakeOllamaServer):
    pass


class HeldLMStudio(Held, FakeOpenAIServer):
    pass


def event_gate(event: threading.Event) -> Callable[[], bool]:
    return lambda: event.wait(HOLD_SECONDS)


def barrier_gate(barrier: threading.Barrier) -> Callable[[], bool]:
    def opened() -> bool:
        try:
            barrier.wait(HOLD_SECONDS)
        except threading.BrokenBarrierError:
            return False
        return True

    return opened


@pytest.fixture
def ollama() -> Iterator[HeldOllama]:
    with HeldOllama() as server:
        yield server


@pytest.fixture
def lmstudio() -> Iterator[HeldLMStudio]:
    with HeldLMStudio(flavor="lmstudio", models=["gemma-2-2b-it"]) as server:
        yield server


async def sse(response: httpx.Response) -> AsyncIterator[Event]:
    """Events as they arrive (not after the whole body)."""
    lines: list[str] = []
    async for line in response.aiter_lines():
        if line:
            lines.append(line)
            continue
        if lines:
            fields = dict(item.split(": ", 1) for item in lines)
            lines = []
            yield fields["event"], json.loads(fields["data"])


def texts(events: list[Event]) -> dict[int, str]:
    out: dict[int, str] = {}
    for name, data in events:
        if name == "delta":
            out[data["side"]] = out.get(data["side"], "") + data["text"]
    return out


def of(events: list[Event], name: str) -> dict[int, dict[str, Any]]:
    return {data["side"]: data for event, data in events if event == name}


async def run_to_end(studio: LiveStudio, prompt: str, models: list[str]) -> dict[str, Any]:
    response = await studio.client.post(URL, json={"prompt": prompt, "models": models, "stream": False})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# -- streaming side by side ---------------------------------------------------------------------


async def test_two_models_stream_at_the_same_time_tagged_by_side(
    live: OpenLive, ollama: HeldOllama, lmstudio: HeldLMStudio
) -> None:
    studio = await live(engines(ollama, lmstudio))
    saw_side_1, saw_side_0 = threading.Event(), threading.Event()
    ollama.script(Reply(chunks=["A1", " A2"], usage=(4, 2)))
    ollama.hold("A1", event_gate(saw_side_1))  # side 0 says nothing until the client saw side 1 speak
    lmstudio.script(Reply(chunks=["B1", " B2"], usage=(4, 3)))
    lmstudio.hold(" B2", event_gate(saw_side_0))  # and side 1 ends only after the client saw side 0
    events: list[Event] = []
    async with studio.client.stream(
        "POST", URL, json={"prompt": "Say two things", "models": [LLAMA, "lmstudio/gemma-2-2b-it"]}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for name, data in sse(response):
            events.append((name, data))
            if name == "delta":
                (saw_side_0 if data["side"] == 0 else saw_side_1).set()
    names = [name for name, _ in events]
    assert names[0] == "run" and names[-1] == "complete"
    run = events[0][1]
    assert run["models"] == [LLAMA, GEMMA] and run["prompt"] == "Say two things"
    assert run["sides"] == [{"side": 0, "model": LLAMA}, {"side": 1, "model": GEMMA}]
    assert response.headers["x-mmstudio-compare-id"] == run["id"]
    deltas = [(d["side"], d["model"], d["text"]) for name, d in events if name == "delta"]
    # Interleaved: side 1 spoke first, side 0 answered, and only then did side 1 finish.
    assert deltas[:2] == [(1, GEMMA, "B1"), (0, LLAMA, "A1")]
    assert deltas.index((1, GEMMA, " B2")) > deltas.index((0, LLAMA, "A1"))
    assert texts(events) == {0: "A1 A2", 1: "B1 B2"}
    starts, done = of(events, "start"), of(events, "done")
    assert starts == {
        0: {"side": 0, "model": LLAMA, "modelUsed": LLAMA},
        1: {"side": 1, "model": GEMMA, "modelUsed": GEMMA},
    }
    assert set(done) == {0, 1} and not of(events, "error")
    for side, model, tokens in ((0, LLAMA, 2), (1, GEMMA, 3)):
        assert done[side]["modelUsed"] == model and done[side]["outputTokens"] == tokens
        assert done[side]["finishReason"] == "stop" and done[side]["latencyMs"] > 0
        assert done[side]["timeToFirstTokenMs"] is not None
    complete = events[-1][1]
    assert complete["id"] == run["id"] and complete["status"] == "complete"
    assert [(a["side"], a["status"]) for a in complete["answers"]] == [(0, "complete"), (1, "complete")]
    # Each upstream got the prompt, once.
    (asked_llama,) = ollama.requests_to("/api/chat")
    (asked_gemma,) = lmstudio.requests_to("/v1/chat/completions")
    assert asked_llama.json()["messages"] == [{"role": "user", "content": "Say two things"}]
    assert asked_gemma.json()["messages"] == [{"role": "user", "content": "Say two things"}]

    stored = (await studio.client.get(f"{URL}/{run['id']}")).json()
    assert stored["status"] == "complete" and stored["finished"] is True and stored["vote"] is None
    assert [
        (a["side"], a["model"], a["status"], a["text"], a["outputTokens"]) for a in stored["answers"]
    ] == [
        (0, LLAMA, "complete", "A1 A2", 2),
        (1, GEMMA, "complete", "B1 B2", 3),
    ]
    assert all(a["latencyMs"] > 0 and a["modelUsed"] == a["model"] for a in stored["answers"])


async def test_three_models_are_all_asked_before_any_answers(
    live: OpenLive, ollama: HeldOllama, lmstudio: HeldLMStudio
) -> None:
    studio = await live(engines(ollama, lmstudio))
    everyone = threading.Barrier(3)  # opens only when all three streams are open at once
    ollama.hold("Hello", barrier_gate(everyone))  # both Ollama models answer the default reply
    lmstudio.script(Reply(chunks=["Bonjour", "!"]))
    lmstudio.hold("Bonjour", barrier_gate(everyone))
    async with studio.client.stream(
        "POST", URL, json={"prompt": "Greet me", "models": [LLAMA, GEMMA, "gemma3:4b"]}
    ) as response:
        events = [event async for event in sse(response)]
    assert events[0][1]["models"] == [LLAMA, GEMMA, GEMMA3]  # a bare name is resolved to its id
    assert texts(events) == {0: "Hello from the fake.", 1: "Bonjour!", 2: "Hello from the fake."}
    assert {side: d["model"] for side, d in of(events, "done").items()} == {0: LLAMA, 1: GEMMA, 2: GEMMA3}
    assert {r.json()["model"] for r in ollama.requests_to("/api/chat")} == {"llama3.2:latest", "gemma3:4b"}
    stored = (await studio.client.get(f"{URL}/{events[0][1]['id']}")).json()
    assert [a["status"] for a in stored["answers"]] == ["complete"] * 3


async def test_a_side_cut_off_mid_answer_keeps_its_text_and_the_other_side_finishes(
    live: OpenLive, ollama: HeldOllama, lmstudio: HeldLMStudio
) -> None:
    studio = await live(engines(ollama, lmstudio), config=StudioConfig(routing=Routing(retries=0)))
    ollama.script(Reply(chunks=["One, ", "two, ", "three"], drop_after=2))
    async with studio.client.stream(
        "POST", URL, json={"prompt": "Count", "models": [LLAMA, GEMMA]}
    ) as response:
        events = [event async for event in sse(response)]
    errors, done = of(events, "error"), of(events, "done")
    assert set(errors) == {0} and set(done) == {1}
    assert "cut off" in errors[0]["message"] and errors[0]["model"] == LLAMA
    assert texts(events) == {0: "One, two, ", 1: "Hello from the fake."}
    assert events[-1][0] == "complete"
    stored = (await studio.client.get(f"{URL}/{events[0][1]['id']}")).json()
    failed, fine = stored["answers"]
    assert failed["status"] == "error" and failed["text"] == "One, two, " and "cut off" in failed["error"]
    assert fine["status"] == "complete" and fine["text"] == "Hello from the fake." and fine["error"] is None
    # A finished run's events are rebuilt from storage for a listener that comes later.
    replayed = [e async for e in studio.studio.compare.listen(stored["id"])]
    assert [(e.type, e.side) for e in replayed] == [
        ("run", None),
        ("start", 0),
        ("delta", 0),
        ("error", 0),
        ("start", 1),
        ("delta", 1),
        ("done", 1),
        ("complete", None),
    ]
    assert [e.text for e in replayed if e.type == "delta"] == ["One, two, ", "Hello from the fake."]


async def test_a_failing_side_shows_its_error_instead_of_falling_back(
    live: OpenLive, ollama: HeldOllama, lmstudio: HeldLMStudio
) -> None:
    # A fallback chain that would rescue a normal chat: an arena side must not use it.
    config = StudioConfig(fallback_chain=(GEMMA,), routing=Routing(retries=0))
    studio = await live(engines(ollama, lmstudio), config=config)
    ollama.script(Reply(status=500, error_body={"error": "out of memory"}))
    body = await run_to_end(studio, "Hi", [LLAMA, GEMMA])
    failed, fine = body["answers"]
    assert failed["status"] == "error" and "out of memory" in failed["error"] and failed["text"] == ""
    assert fine["status"] == "complete" and fine["text"] == "Hello from the fake."
    assert body["status"] == "complete" and body["finished"] is True
    assert len(lmstudio.requests_to("/v1/chat/completions")) == 1  # only its own side asked it


async def test_answers_are_finished_and_stored_after_the_client_leaves(
    live: OpenLive, ollama: HeldOllama, lmstudio: HeldLMStudio
) -> None:
    studio = await live(engines(ollama, lmstudio))
    client_gone = threading.Event()
    ollama.script(Reply(chunks=["Still ", "here."]))
    ollama.hold("Still ", event_gate(client_gone))
    lmstudio.script(Reply(chunks=["Me ", "too."]))
    lmstudio.hold("Me ", event_gate(client_gone))
    body = {"prompt": "Hi", "models": [LLAMA, GEMMA]}
    async with (
        studio.client.stream("POST", URL, json=body) as response,
        contextlib.aclosing(sse(response)) as stream,
    ):
        name, run = await anext(stream)
        assert name == "run"
    # The connection is closed; only now may the models say anything.
    client_gone.set()
    finished = await studio.studio.compare.wait(run["id"])
    assert finished.status == "complete"
    stored = (await studio.client.get(f"{URL}/{run['id']}")).json()
    assert [(a["status"], a["text"]) for a in stored["answers"]] == [
        ("complete", "Still here."),
        ("complete", "Me too."),
    ]


async def test_runs_are_stored_before_any_model_answers_and_read_live(
    live: OpenLive, ollama: HeldOllama, lmstudio: HeldLMStudio
) -> None:
    studio = await live(engines(ollama, lmstudio))
    speak, release = threading.Event(), threading.Event()
    ollama.script(Reply(chunks=["Slow ", "answer."]))
    ollama.hold("Slow ", event_gate(speak))
    ollama.hold("answer.", event_gate(release))
    async with studio.client.stream("POST", URL, json={"prompt": "Hi", "models": [LLAMA, GEMMA]}) as response:
        stream = sse(response)
        _, run = await anext(stream)
        # Side 0's model has not said a word, and the run is already in the database.
        stored = await studio.studio.compare.store.get_run(run["id"])
        assert stored.prompt == "Hi" and stored.models == (LLAMA, GEMMA) and stored.status == "running"
        assert stored.answers[0].status == "pending" and stored.answers[1].status in ("pending", "complete")
        speak.set()
        async for name, data in stream:
            if name == "delta" and data["side"] == 0:
                assert data == {"side": 0, "model": LLAMA, "text": "Slow "}
                break
        live_run = (await studio.client.get(f"{URL}/{run['id']}")).json()
        assert live_run["status"] == "running" and live_run["finished"] is False
        assert live_run["answers"][0]["status"] == "streaming" and live_run["answers"][0]["text"] == "Slow "
        voted = await studio.client.post(f"{URL}/{run['id']}/vote", json={"winner": LLAMA})
        assert voted.status_code == 400 and "wait until every answer is finished" in voted.json()["message"]
        release.set()
        rest = [event async for event in stream]
    assert rest[-1][0] == "complete"
    voted = await studio.client.post(f"{URL}/{run['id']}/vote", json={"winner": LLAMA})
    assert voted.status_code == 200, voted.text


async def test_closing_the_service_stores_unfinished_sides_as_interrupted(
    live: OpenLive, ollama: HeldOllama, lmstudio: HeldLMStudio
) -> None:
    studio = await live(engines(ollama, lmstudio))
    stuck = threading.Event()  # set only at the end, to free the fake's waiting thread
    ollama.script(Reply(chunks=["Part", "ial"]))
    ollama.hold("ial", event_gate(stuck))
    try:
        async with studio.client.stream(
            "POST", URL, json={"prompt": "Hi", "models": [LLAMA, GEMMA]}
        ) as response:
            stream = sse(response)
            events = [await anext(stream)]
            while not (texts(events).get(0) and 1 in of(events, "done")):
                events.append(await anext(stream))
            await studio.studio.compare.close()  # what the studio does when it shuts down
            events.extend([event async for event in stream])
    finally:
        stuck.set()
    assert of(events, "error")[0]["status"] == "interrupted"
    assert events[-1][0] == "complete" and events[-1][1]["status"] == "interrupted"
    stored = (await studio.client.get(f"{URL}/{events[0][1]['id']}")).json()
    assert stored["status"] == "interrupted" and stored["finished"] is True
    cut, fine = stored["answers"]
    assert (cut["status"], cut["text"]) == ("interrupted", "Part") and "stopped" in cut["error"]
    assert (fine["status"], fine["text"]) == ("complete", "Hello from the fake.")


# -- bad input --------------------------------------------------------------------------------


async def test_bad_requests_are_400s_that_name_the_problem(
    live: OpenLive, ollama: HeldOllama, lmstudio: HeldLMStudio
) -> None:
    studio = await live(engines(ollama, lmstudio))

    async def refused(body: Any, field: str, *words: str, status: int = 400) -> dict[str, Any]:
        response = await studio.client.post(URL, json=body)
        assert response.status_code == status, response.text
        error: dict[str, Any] = response.json()
        assert error.get("field") == field or field == "-", error
        assert all(word in error["message"] for word in words), error
        return error

    await refused({"prompt": "Hi", "models": [LLAMA]}, "models", "2 to 4 models", "got 1")
    five = [LLAMA, GEMMA, GEMMA3, "a/b", "c/d"]
    await refused({"prompt": "Hi", "models": five}, "models", "2 to 4 models", "got 5")
    await refused({"prompt": "Hi", "models": [LLAMA, "ollama/llama3.2"]}, "models", "more than once", LLAMA)
    await refused({"prompt": "   ", "models": [LLAMA, GEMMA]}, "prompt", "prompt is empty")
    await refused({"models": [LLAMA, GEMMA]}, "prompt", "prompt", "Field required")
    await refused({"prompt": "Hi", "models": "llama"}, "models", "models")
    await refused({"prompt": "Hi", "models": [LLAMA, GEMMA], "temperature": 3}, "temperature", "temperature")
    await refused(["not", "an", "object"], "body", "JSON object")
    unknown = await refused(
        {"prompt": "Hi", "models": [LLAMA, "nobody/nothing"]}, "-", "nobody/nothing", status=404
    )
    assert (
        unknown["error"] == "Model not found"
        and LLAMA in unknown["available"]
        and GEMMA in unknown["available"]
    )
    response = await studio.client.post(
        URL, content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and "not valid JSON" in response.json()["message"]
    for query in ("limit=0", "limit=101", "limit=ten", "offset=-1"):
        response = await studio.client.get(f"{URL}?{query}")
        assert response.status_code == 400 and response.json()["field"] == query.split("=")[0]
    # Nothing was stored and no model was asked.
    assert (await studio.client.get(URL)).json()["total"] == 0
    assert not ollama.requests_to("/api/chat") and not lmstudio.requests_to("/v1/chat/completions")
    missing = await studio.client.get(f"{URL}/no-such-run")
    assert missing.status_code == 404 and "no-such-run" in missing.json()["message"]


# -- votes and the leaderboard -------------------------------------------------------------------


async def test_votes_are_checked_and_a_new_vote_replaces_the_old(
    live: OpenLive, ollama: HeldOllama, lmstudio: HeldLMStudio
) -> None:
    studio = await live(engines(ollama, lmstudio))
    run = await run_to_end(studio, "Hi", [LLAMA, GEMMA])
    vote_url = f"{URL}/{run['id']}/vote"
    response = await studio.client.post(vote_url, json={"winner": "openai/gpt-5"})
    assert response.status_code == 400 and response.json()["field"] == "winner"
    assert all(allowed in response.json()["message"] for allowed in (LLAMA, GEMMA, TIE, BOTH_BAD))
    assert (await studio.client.post(vote_url, json={})).status_code == 400
    response = await studio.client.post(vote_url, json={"winner": GEMMA})
    assert response.status_code == 200 and response.json()["winner"] == GEMMA
    assert (await studio.client.get(f"{URL}/{run['id']}")).json()["vote"]["winner"] == GEMMA
    response = await studio.client.post(vote_url, json={"winner": TIE})
    assert response.status_code == 200
    assert (await studio.client.get(f"{URL}/{run['id']}")).json()["vote"]["winner"] == TIE
    board = (await studio.client.get("/api/chat/ui/leaderboard")).json()
    assert board["totalVotes"] == 1 and {s["ties"] for s in board["standings"]} == {1}
    missing = await studio.client.post(f"{URL}/no-such-run/vote", json={"winner": TIE})
    assert missing.status_code == 404 and "no-such-run" in missing.json()["message"]


async def test_the_leaderboard_ranks_models_from_every_vote(
    live: OpenLive, ollama: HeldOllama, lmstudio: HeldLMStudio
) -> None:
    studio = await live(engines(ollama, lmstudio))
    empty = (await studio.client.get("/api/chat/ui/leaderboard")).json()
    assert empty == {"method": "bradley-terry", "standings": [], "totalVotes": 0}
    verdicts = [
        ((LLAMA, GEMMA), LLAMA),
        ((GEMMA, LLAMA), LLAMA),
        ((LLAMA, GEMMA3), LLAMA),
        ((GEMMA, GEMMA3), GEMMA),
        ((GEMMA3, GEMMA), TIE),
        ((LLAMA, GEMMA, GEMMA3), BOTH_BAD),
    ]
    ids = []
    for models, winner in verdicts:
        run = await run_to_end(studio, "Which is best?", list(models))
        ids.append(run["id"])
        response = await studio.client.post(f"{URL}/{run['id']}/vote", json={"winner": winner})
        assert response.status_code == 200, response.text
    board = (await studio.client.get("/api/chat/ui/leaderboard")).json()
    assert board["method"] == "bradley-terry" and board["totalVotes"] == 6
    standings = board["standings"]
    assert [(s["rank"], s["model"]) for s in standings] == [(1, LLAMA), (2, GEMMA), (3, GEMMA3)]
    top = standings[0]
    assert (top["votes"], top["wins"], top["losses"], top["ties"], top["bothBad"]) == (4, 3, 0, 0, 1)
    assert top["winRate"] == 0.75 and top["rating"] > standings[1]["rating"] > standings[2]["rating"]
    expected = rank(Vote(models, winner) for models, winner in verdicts)
    assert [(s["model"], s["rating"], s["votes"], s["wins"], s["losses"], s["ties"]) for s in standings] == [
        (s.model, s.rating, s.votes, s.wins, s.losses, s.ties) for s in expected
    ]
    page = (await studio.client.get(f"{URL}?limit=2&offset=1")).json()
    assert page["total"] == 6 and page["limit"] == 2 and page["offset"] == 1
    assert [r["id"] for r in page["items"]] == [ids[4], ids[3]]
    assert page["items"][0]["vote"]["winner"] == TIE and "text" not in page["items"][0]["answers"][0]
