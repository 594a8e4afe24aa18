"""`mmstudio serve` as a real process: up on embedded defaults while the local engines do not answer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.fakes.base import BlackHole, closed_port
from tests.servers import free_port


def test_serve_answers_healthz_with_engines_black_holed_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    with BlackHole() as hole:
        env = {
            **os.environ,
            "MMSTUDIO_DATA_DIR": str(tmp_path / "data"),
            "OLLAMA_HOST": f"127.0.0.1:{hole.port}",
            "LMSTUDIO_BASE_URL": f"http://127.0.0.1:{closed_port()}",
            "A1111_URL": f"127.0.0.1:{hole.port}",  # an image engine that hangs must not delay start-up
            "MMSTUDIO_CONFIG": "",
            # Deprecations fail the server process as they fail the suite (see tests/gateway/process.py).
            "PYTHONWARNINGS": "error::DeprecationWarning,error::PendingDeprecationWarning",
        }
        log = (tmp_path / "serve.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "mmstudio", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            status = None
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    status = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            assert status == 200, (tmp_path / "serve.log").read_text()
            models = httpx.get(f"http://127.0.0.1:{port}/api/models/health", timeout=5).json()["endpoints"]
            assert {e["id"]: e["health"]["status"] for e in models}["ollama"] == "checking"  # still waiting
            assert (tmp_path / "data" / "mmstudio.db").exists()
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)
            log.close()
        # uvicorn re-raises the signal it handled after a graceful shutdown.
        assert code in (0, -signal.SIGTERM), (tmp_path / "serve.log").read_text()
        assert "Application shutdown complete" in (tmp_path / "serve.log").read_text()
