"""`mmstudio serve` as a real process on a loopback port (for tests that need a separate process:
fuzzing with a synchronous client, two processes sharing Redis, reading the server's log)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.servers import free_port


@dataclass(frozen=True)
class ServeProcess:
    url: str
    pid: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def serve_process(
    env: dict[str, str], workdir: Path, name: str = "serve", args: tuple[str, ...] = ()
) -> Iterator[ServeProcess]:
    port = free_port()
    # Deprecations are errors in the server process too, as in the suite: a dependency's next release
    # that removes what we use is found by `scripts/test --latest`, not by a user.
    full_env = {
        **os.environ,
        "MMSTUDIO_CONFIG": "",
        "PYTHONWARNINGS": "error::DeprecationWarning,error::PendingDeprecationWarning",
        **env,
    }
    log_path = workdir / f"{name}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mmstudio", "serve", "--port", str(port), *args],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        running = ServeProcess(f"http://127.0.0.1:{port}", proc.pid, log_path)
        try:
            _wait_ready(running, proc)
            yield running
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _wait_ready(running: ServeProcess, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"mmstudio serve exited with {proc.returncode}:\n{running.log()}")
        try:
            if httpx.get(f"{running.url}/healthz", timeout=1).json().get("ready"):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"mmstudio serve did not become ready:\n{running.log()}")
