"""Real servers the tests start themselves (PostgreSQL, Redis) on loopback ports, stopped by PID."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def postgres_bin(name: str) -> str | None:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else shutil.which(name)


def stop_pid(pid: int, timeout: float = 30.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """initdb into a temp dir, pg_ctl start on a free loopback port; yields an asyncpg URL."""
    initdb, pg_ctl = postgres_bin("initdb"), postgres_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise RuntimeError(
            "PostgreSQL is not installed: the test command installs Debian's 'postgresql' package"
        )
    base = Path(tempfile.mkdtemp(prefix="mmstudio-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(base, "postgres", "postgres")
        base.chmod(0o755)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, log = base / "data", base / "server.log"
    port = free_port()
    subprocess.run(
        [*prefix, initdb, "-D", str(data), "-U", "mmstudio", "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    started = subprocess.run(
        [*prefix, pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start"],
        capture_output=True,
        text=True,
    )
    if started.returncode != 0:
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {started.stderr}\n{tail}")
    pid = int((data / "postmaster.pid").read_text().split()[0])
    try:
        yield f"postgresql+asyncpg://mmstudio@127.0.0.1:{port}/postgres"
    finally:
        stop_pid(pid)
        shutil.rmtree(base, ignore_errors=True)


def redis_answers(port: int) -> bool:
    """True when a Redis on this loopback port replies +PONG to PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Debian's redis-server on a free loopback port, nothing persisted; yields a redis:// URL."""
    import pytest

    binary = "/usr/bin/redis-server"
    if not os.path.exists(binary):
        pytest.skip("redis-server is not installed: scripts/test installs Debian's 'redis-server' package")
    base = Path(tempfile.mkdtemp(prefix="mmstudio-redis-"))
    log = base / "server.log"
    port = free_port()
    options = ["--save", "", "--appendonly", "no", "--port", str(port), "--bind", "127.0.0.1"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, *options, "--daemonize", "no", "--dir", str(base)], stdout=out, stderr=out
        )
    # redis-server is our child: reap it as soon as it exits, or stop_pid would wait on a zombie.
    reaper = threading.Thread(target=process.wait, name="redis-reaper", daemon=True)
    reaper.start()
    try:
        deadline = time.monotonic() + 30
        while not redis_answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {port}:\n{log.read_text()[-2000:]}")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_pid(process.pid)
        reaper.join(timeout=5)
        shutil.rmtree(base, ignore_errors=True)
