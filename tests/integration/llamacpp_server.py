"""Start and stop llama-cpp-python's OpenAI-compatible server as a subprocess for integration tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LlamaCppServerError(RuntimeError):
    """The server did not start (or died); the message carries the tail of its log."""


class LlamaCppServer:
    """`python -m llama_cpp.server` serving one GGUF file under an alias, on a free local port.

    Use as a context manager, or call `start()` and `stop()`. `base_url` ends in ``/v1``.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        alias: str = "tiny",
        n_ctx: int = 512,
        startup_timeout: float = 60.0,
        log_dir: Path | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.model_path = Path(model_path)
        self.alias = alias
        self.n_ctx = n_ctx
        self.startup_timeout = startup_timeout
        self.extra_args = extra_args
        self._log_dir = log_dir
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self.port = 0
        self.log_path: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # --- properties -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise LlamaCppServerError("server not started")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model_path),
            "--model_alias",
            self.alias,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
            *self.extra_args,
        ]

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> LlamaCppServer:
        if self._process is not None:
            raise LlamaCppServerError("server already started")
        if self._log_dir is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="llamacpp-")
            log_dir = Path(self._tmpdir.name)
        else:
            log_dir = self._log_dir
            log_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log_path = log_dir / f"llamacpp-{self.port}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
            self._process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.cleanup()  # __exit__ does not run when __enter__ raises
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        url = f"{self.base_url}/models"
        with httpx.Client(timeout=httpx.Timeout(2.0, connect=0.5)) as client:
            while True:
                assert self._process is not None
                code = self._process.poll()
                if code is not None:
                    raise LlamaCppServerError(
                        f"llama_cpp.server exited with code {code} before answering; "
                        f"log {self.log_path}:\n{self.log_tail()}"
                    )
                try:
                    response = client.get(url)
                    if response.status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise LlamaCppServerError(
                        f"llama_cpp.server did not answer GET {url} within {self.startup_timeout:.0f}s; "
                        f"log {self.log_path}:\n{self.log_tail()}"
                    )
                time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server by its PID; kill it if it does not exit within `timeout`."""
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=timeout)
        elif process is not None:
            process.wait()

    def cleanup(self) -> None:
        self.stop()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> LlamaCppServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
