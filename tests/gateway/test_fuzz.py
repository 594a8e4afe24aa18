"""Property-based fuzzing of every documented route (schemathesis over /openapi.json, valid and
invalid inputs) against a real `mmstudio serve` process: no request gets a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.fakes.base import closed_port
from tests.fakes.ollama_server import FakeOllamaServer
from tests.gateway.process import ServeProcess, serve_process

EXAMPLES = 15  # per route and mode (about 130 operations: the suite's time budget)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    workdir = tmp_path_factory.mktemp("fuzz")
    with FakeOllamaServer() as ollama:
        env = {
            "MMSTUDIO_DATA_DIR": str(workdir / "data"),
            "OLLAMA_HOST": ollama.url,
            "LMSTUDIO_BASE_URL": f"http://127.0.0.1:{closed_port()}",
        }
        with serve_process(env, workdir) as running:
            yield running


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_route_answers_with_a_server_error(server: ServeProcess, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    failures: list[str] = []
    tested = 0
    operations = [result.ok() for result in schema.get_all_operations()]
    assert any(op.path == "/v1/chat/completions" for op in operations)
    for operation in operations:

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def run(case: Any) -> None:
            response = case.call(base_url=server.url, timeout=30)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} body={case.body!r:.200} -> "
                    f"{response.status_code} {response.text[:300]}"
                )

        try:
            run()
        except Unsatisfiable:  # a route without inputs has no invalid variant
            assert mode is GenerationMode.NEGATIVE
            continue
        tested += 1
    # A route without inputs (no parameters, no body) has no invalid variant to send.
    with_inputs = [op for op in operations if any(True for _ in op.iter_parameters())]
    expected = len(operations) if mode is GenerationMode.POSITIVE else len(with_inputs)
    assert tested >= expected // 2, (tested, expected)
    assert not failures, "\n".join(failures[:20]) + f"\n\nserver log:\n{server.log()[-3000:]}"
