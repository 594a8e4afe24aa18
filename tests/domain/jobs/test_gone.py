"""Telling a killed worker process of this machine from one that runs, or one elsewhere: the owner
string says host, PID namespace and PID, and only a process that is certainly gone is taken over."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from mmstudio.domain.jobs.worker import default_owner, gone


def _owner_with_pid(pid: int) -> str:
    host, rest = default_owner().split(":", 1)
    where, token = rest.split(":")
    namespace = where.split(".")[0]
    return f"{host}:{namespace}.{pid}:{token}"


def test_a_process_that_ended_is_gone_and_a_running_one_is_not() -> None:
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    assert gone(_owner_with_pid(ended.pid))
    assert not gone(_owner_with_pid(os.getppid()))  # our parent runs


def test_only_this_machine_and_namespace_and_never_ourselves() -> None:
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    mine = default_owner()
    assert mine.startswith(f"{socket.gethostname()}:")
    assert not gone(mine, mine) and not gone(_owner_with_pid(os.getpid()))  # another worker of ours
    elsewhere = _owner_with_pid(ended.pid).replace(socket.gethostname(), "another-host", 1)
    assert not gone(elsewhere)
    host, rest = _owner_with_pid(ended.pid).split(":", 1)
    assert not gone(f"{host}:1.{rest.split('.', 1)[1]}")  # another PID namespace (a container)
    assert not gone("worker-a") and not gone("") and not gone(f"{host}:x.y:z")
