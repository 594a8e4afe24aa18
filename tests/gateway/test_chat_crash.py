"""Kill the server with SIGKILL mid-answer, restart it: the question and the partial answer are there."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx

from tests.fakes.base import Reply, closed_port
from tests.fakes.ollama_server import FakeOllamaServer
from tests.gateway.process import serve_process

LLAMA = "ollama/llama3.2:latest"
UI = "/api/chat/ui"


def test_a_crash_mid_answer_leaves_the_question_and_the_partial_answer_interrupted(tmp_path: Path) -> None:
    words = [f"word{i} " for i in range(400)]
    with FakeOllamaServer() as ollama:
        ollama.script(Reply(chunks=words, chunk_delay=0.02))
        env = {
            "MMSTUDIO_DATA_DIR": str(tmp_path / "data"),
            "OLLAMA_HOST": ollama.url,
            "LMSTUDIO_BASE_URL": f"http://127.0.0.1:{closed_port()}",
        }
        with serve_process(env, tmp_path, "before") as server:
            httpx.post(f"{server.url}/api/models/detect", timeout=30)
            body = {"content": "Tell me a long story", "model": LLAMA}
            seen = ""
            with httpx.stream("POST", f"{server.url}{UI}/send", json=body, timeout=30) as response:
                for text in response.iter_text():
                    seen += text
                    if seen.count("event: delta") >= 5:
                        os.kill(server.pid, signal.SIGKILL)
                        break
        events = [
            (block.split("\n")[0].removeprefix("event: "), json.loads(block.split("data: ", 1)[1]))
            for block in seen.split("\n\n")
            if block.startswith("event: ") and "data: " in block
        ]
        conversation_id = next(d for e, d in events if e == "conversation")["conversation"]["id"]
        streamed = "".join(d["text"] for e, d in events if e == "delta")

        with serve_process(env, tmp_path, "after") as server:
            got = httpx.get(f"{server.url}{UI}/conversations/{conversation_id}", timeout=30)
    assert got.status_code == 200, got.text
    user, answer = got.json()["messages"]
    assert user["role"] == "user" and user["text"] == "Tell me a long story"
    assert answer["status"] == "interrupted"
    assert "stopped" in answer["error"]
    # what was written before the kill survives: a non-empty prefix of the answer (writes are
    # bounded in rate, so it may be shorter than what the client saw, never longer or different)
    assert answer["text"] and "".join(words).startswith(answer["text"])
    assert streamed.startswith(answer["text"][: len(streamed)])
