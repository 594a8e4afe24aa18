"""Schemathesis with every check over the whole OpenAPI document of a real `mmstudio serve` process, as
a user would run it by hand (`st run --checks all`, from the repository root so `schemathesis.toml`
applies): no 5xx but the designed ones, every status documented, every schema-valid request accepted and
every schema-violating one refused, responses as documented, 405s with a true `Allow`. Bounded in time,
with a fixed seed; any failure fails the test with schemathesis's report."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.base import closed_port
from tests.fakes.ollama_server import FakeOllamaServer
from tests.gateway.process import ServeProcess, serve_process

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-fuzz-0123456789"  # keys on from the start: the run creating a key changes nothing midway
MAX_SECONDS = 90  # the suite's time budget; by hand, give it longer
# Unthrottled, the run keeps both cores busy (generation and the server) while the other test processes
# drive browsers; at this rate it leaves them room and still reaches every phase in 90 s.
RATE = "40/s"
SEED = 1


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    workdir = tmp_path_factory.mktemp("fuzz")
    with FakeOllamaServer() as ollama:  # chat models, so the chat routes are reached past "no model"
        env = {
            "MMSTUDIO_DATA_DIR": str(workdir / "data"),
            "MMSTUDIO_API_KEYS": KEY,
            "OLLAMA_HOST": ollama.url,
            "LMSTUDIO_BASE_URL": f"http://127.0.0.1:{closed_port()}",
        }
        with serve_process(env, workdir) as running:
            yield running


def test_schemathesis_with_every_check_finds_nothing(server: ServeProcess, tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("st")
    command = [
        str(st),
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        "all",
        "--max-time",
        str(MAX_SECONDS),
        "--seed",
        str(SEED),
        "--header",
        f"Authorization: Bearer {KEY}",
        "--rate-limit",
        RATE,
        "--generation-database",
        "none",
        "--no-color",
        "--report-dir",
        str(tmp_path),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=MAX_SECONDS + 240)
    report = done.stdout + done.stderr
    (tmp_path / "schemathesis.txt").write_text(report)  # the whole report, beside its other files
    assert "Configuration:    " in report and "schemathesis.toml" in report, report[-3000:]
    assert done.returncode == 0, f"{report[-12000:]}\n\nserver log:\n{server.log()[-3000:]}"
    selected = re.search(r"Selected: (\d+)/(\d+)", report)
    tested = re.search(r"Tested: (\d+)", report)
    assert selected and tested, report[-3000:]
    assert int(tested[1]) == int(selected[1]) == int(selected[2]) > 100, report[-3000:]  # every operation
