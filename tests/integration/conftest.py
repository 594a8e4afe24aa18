"""Fixtures for integration tests against a real llama.cpp server serving a generated tiny GGUF."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.llamacpp_server import LlamaCppServer
from tests.integration.tiny_gguf import write_tiny_gguf

# llama_cpp.server needs these besides llama_cpp itself (the ``server`` extra).
_SERVER_MODULES = (
    "llama_cpp",
    "fastapi",
    "uvicorn",
    "sse_starlette",
    "starlette_context",
    "pydantic_settings",
)

INSTALL_HINT = (
    "llama-cpp-python's server is not installed in this environment. Install it with:\n"
    "  pip install 'llama-cpp-python[server]>=0.3.36,<0.4' gguf\n"
    "(this builds llama.cpp from source; the project's test command does it)."
)


def _require_llama_cpp_server() -> None:
    missing = [name for name in _SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        pytest.fail(f"missing modules {missing}. {INSTALL_HINT}", pytrace=False)


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight llama GGUF, written once per session."""
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="module")
def llamacpp(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppServer]:
    """A running llama.cpp server (model alias ``tiny``), shared by the tests of a module."""
    _require_llama_cpp_server()
    server = LlamaCppServer(tiny_gguf, alias="tiny", n_ctx=512, log_dir=tmp_path_factory.mktemp("llamacpp"))
    with server:
        yield server


@pytest.fixture
def llamacpp_own(tiny_gguf: Path, tmp_path: Path) -> Iterator[LlamaCppServer]:
    """A llama.cpp server for one test only (the test may stop it)."""
    _require_llama_cpp_server()
    server = LlamaCppServer(tiny_gguf, alias="tiny", n_ctx=512, log_dir=tmp_path)
    with server:
        yield server
