"""The gateway benchmark: what mmstudio's OpenAI-compatible API adds on top of a very fast upstream.

    ./scripts/bench gateway        (or: .venv/bin/python bench/gateway.py --help)

Starts bench/fast_upstream.py, then `mmstudio serve` (one process, default config: metrics on, a
fresh data directory) and, when installed, LiteLLM's proxy (one worker) on the same upstream, all on
loopback ports, and measures in the same run:

1. requests/s at concurrency 32 (wrk, plain completions) direct to the upstream, through mmstudio
   and through LiteLLM, with each server's CPU time per request;
2. latency p50/p99 at concurrency 1 (a lean keep-alive socket client), direct vs through each;
3. time to first token of streams at concurrency 1, the same way;
4. mmstudio's resident memory (VmRSS) every 10,000 requests over 100,000 at concurrency 32, and the
   growth trend (least-squares slope over the second half).

Prints one markdown table with targets and stops every process it started (also on Ctrl-C).
LiteLLM is looked for at $MMSTUDIO_BENCH_LITELLM, else /tmp/litellm-venv/bin/litellm (see
bench/README.md for the install line).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[1]
LITELLM_DEFAULT = "/tmp/litellm-venv/bin/litellm"
LITELLM_KEY = "sk-bench-" + os.urandom(16).hex()
UPSTREAM_MODEL = "bench-model"
ANSWER = b"Hello from the fast upstream."
FIRST_CONTENT = re.compile(rb'"content":\s*"[^"]')
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- processes -----------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    port: int
    model: str
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


class Processes:
    """Everything this run started, each in its own session so it is stopped by its own id."""

    def __init__(self) -> None:
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.started.append((name, proc))
        return proc

    def stop_all(self) -> None:
        for _name, proc in reversed(self.started):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)  # its own group: the server and any workers
        for _name, proc in reversed(self.started):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.started.clear()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path | None, lines: int = 30) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_until(server: Server, path: str, ok: bytes, timeout: float) -> None:
    """Poll `GET path` until the body contains `ok` (the process must stay alive meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc is not None and server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited while starting:\n{log_tail(server.log)}")
        with contextlib.suppress(OSError, ValueError):
            client = Client(server.port, server.extra_headers)
            try:
                result = client.request("GET", path)
            finally:
                client.close()
            if result.status == 200 and ok in result.body:
                return
        time.sleep(0.1)
    raise RuntimeError(
        f"{server.name} was not ready ({path}) within {timeout:.0f} s:\n{log_tail(server.log)}"
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pgid: int) -> float:
    """User + system CPU of every live process in the process group `pgid`."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:  # fields[0] is field 3 (state) of proc(5)
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


# --- a lean HTTP/1.1 keep-alive client (for concurrency 1) ---------------------------------------------


@dataclass
class Result:
    status: int
    body: bytes
    total: float  # seconds from sending to the last byte
    first_content: float | None  # seconds to the first non-empty `"content":"...` in the body


class Client:
    """One keep-alive connection; reads Content-Length and chunked bodies, timing the first token."""

    def __init__(self, port: int, headers: dict[str, str] | None = None) -> None:
        self.port = port
        self.headers = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock: socket.socket | None = None
        self.buf = b""

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _fill(self) -> None:
        assert self.sock is not None
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed mid-response")
        self.buf += data

    def request(self, method: str, path: str, body: bytes = b"") -> Result:
        if self.sock is None:
            self.sock = self._connect()
        head = (
            f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{self.port}\r\n{self.headers}"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode()
        start = time.perf_counter()
        self.sock.sendall(head + body)
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self._fill()
        status_line, *lines = self.buf[:end].decode("latin-1").split("\r\n")
        self.buf = self.buf[end + 4 :]
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        status = int(status_line.split()[1])
        out = b""
        first: float | None = None
        if headers.get("transfer-encoding") == "chunked":
            while True:
                while (eol := self.buf.find(b"\r\n")) < 0:
                    self._fill()
                size = int(self.buf[:eol].split(b";")[0], 16)
                while len(self.buf) < eol + 2 + size + 2:
                    self._fill()
                out += self.buf[eol + 2 : eol + 2 + size]
                self.buf = self.buf[eol + 2 + size + 2 :]
                if first is None and FIRST_CONTENT.search(out):
                    first = time.perf_counter() - start
                if size == 0:
                    break
        else:
            length = int(headers.get("content-length", "0"))
            while len(self.buf) < length:
                self._fill()
            out, self.buf = self.buf[:length], self.buf[length:]
            if FIRST_CONTENT.search(out):
                first = time.perf_counter() - start
        total = time.perf_counter() - start
        if headers.get("connection") == "close":
            self.close()
        return Result(status, out, total, first)


def chat_body(model: str, stream: bool) -> bytes:
    extra = ',"stream":true,"stream_options":{"include_usage":true}' if stream else ""
    return (
        f'{{"model":"{model}","messages":[{{"role":"system","content":"You are brief."}},'
        f'{{"role":"user","content":"Say hello"}}],"max_tokens":32{extra}}}'
    ).encode()


def check(server: Server) -> None:
    """One plain and one streamed answer, with the upstream's text in it, before measuring."""
    client = Client(server.port, server.extra_headers)
    try:
        for stream in (False, True):
            result = client.request("POST", "/v1/chat/completions", chat_body(server.model, stream))
            text = result.body
            words_ok = all(w in text for w in (b'"Hello"', b'" upstream"')) if stream else ANSWER in text
            if result.status != 200 or not words_ok or (stream and b"[DONE]" not in result.body):
                raise RuntimeError(
                    f"{server.name}: unexpected answer ({result.status}): {result.body[:400]!r}"
                )
    finally:
        client.close()


# --- measurements --------------------------------------------------------------------------------------


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def latencies(servers: list[Server], requests: int, stream: bool) -> dict[str, list[float]]:
    """Concurrency 1, interleaved in rounds so that machine noise hits every target alike. Plain:
    the whole response; streams: time to the first content token."""
    clients = {s.name: Client(s.port, s.extra_headers) for s in servers}
    out: dict[str, list[float]] = {s.name: [] for s in servers}
    rounds = 20
    try:
        for s in servers:  # warm-up: connections, caches, the gateway's lazy paths
            for _ in range(30):
                clients[s.name].request("POST", "/v1/chat/completions", chat_body(s.model, stream))
        for _ in range(rounds):
            for s in servers:
                body = chat_body(s.model, stream)
                for _ in range(requests // rounds):
                    result = clients[s.name].request("POST", "/v1/chat/completions", body)
                    if result.status != 200 or result.first_content is None:
                        raise RuntimeError(f"{s.name}: {result.status} {result.body[:300]!r}")
                    out[s.name].append(result.first_content if stream else result.total)
    finally:
        for client in clients.values():
            client.close()
    return out


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
{auth}
local seen = 0
local failed = 0
function response(status, headers, body)
  seen = seen + 1
  if status >= 300 then
    failed = failed + 1
    if failed <= 5 then
      io.stderr:write("E ", status, " ", string.sub(body, 1, 300), "\\n"); io.stderr:flush()
    end
  end
  if seen % {every} == 0 then io.stderr:write(seen, "\\n"); io.stderr:flush() end
end
"""


@dataclass
class WrkRun:
    requests: int
    seconds: float
    rps: float  # successful answers per second
    errors: int  # non-2xx responses + socket errors
    cpu_per_request_us: float | None = None
    marks: list[tuple[int, float]] = field(default_factory=list)  # (responses so far, RSS MB)
    idle_rss: float = 0.0  # RSS MB 5 s after the run
    failures: list[str] = field(default_factory=list)  # the first non-2xx answers


def wrk_script(tmp: Path, server: Server, every: int) -> Path:
    auth = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in server.extra_headers.items())
    path = tmp / f"wrk-{server.name.replace(' ', '_')}-{every}.lua"
    body = chat_body(server.model, False).decode()
    path.write_text(WRK_SCRIPT.format(body=body, auth=auth, every=every))
    return path


def parse_wrk(text: str) -> tuple[int, float, float, int]:
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)\b", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if done is None or rps is None:
        raise RuntimeError(f"could not read wrk's output:\n{text}")
    seconds = float(done.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[done.group(3)]
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", text))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return int(done.group(1)), seconds, float(rps.group(1)), errors


def wrk(
    procs: Processes,
    tmp: Path,
    server: Server,
    *,
    seconds: float,
    connections: int = 32,
    stop_after: int | None = None,
    every: int = 10_000,
    rss_pid: int | None = None,
    cpu_pgid: int | None = None,
) -> WrkRun:
    """Run wrk for `seconds` (or until `stop_after` responses: it is sent SIGINT, on which it prints
    its report); every `every` responses the RSS of `rss_pid` is sampled."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    argv += ["-s", str(wrk_script(tmp, server, every)), f"http://127.0.0.1:{server.port}/v1/chat/completions"]
    marks: list[tuple[int, float]] = []
    run_failures: list[str] = []
    other: list[str] = []  # anything else wrk says on stderr (a script error, say)
    if rss_pid is not None:
        marks.append((0, rss_mb(rss_pid)))
    cpu_before = cpu_seconds(cpu_pgid) if cpu_pgid is not None else 0.0
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    procs.started.append(("wrk", proc))
    try:
        assert proc.stderr is not None and proc.stdout is not None
        for line in proc.stderr:
            if line.startswith(b"E "):
                run_failures.append(line.decode(errors="replace").strip())
                continue
            if not line.strip().isdigit():
                other.append(line.decode(errors="replace").rstrip())
                continue
            count = int(line)
            if rss_pid is not None:
                marks.append((count, rss_mb(rss_pid)))
            if stop_after is not None and count >= stop_after:
                proc.send_signal(signal.SIGINT)
                break
        out = proc.stdout.read().decode()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        procs.started.remove(("wrk", proc))
    if other:
        raise RuntimeError(f"wrk complained: {' / '.join(other)[:2000]}")
    requests, elapsed, _, errors = parse_wrk(out)
    rps = max(0, requests - errors) / elapsed  # only successful answers count
    run = WrkRun(requests, elapsed, rps, errors, marks=marks, failures=run_failures)
    for failure in run_failures:
        say(f"  {server.name} answered {failure}")
    if cpu_pgid is not None and requests:
        run.cpu_per_request_us = (cpu_seconds(cpu_pgid) - cpu_before) / requests * 1e6
    return run


def trend(marks: list[tuple[int, float]]) -> tuple[float | None, str]:
    """Least-squares slope of RSS over the second half of the run, in MB per 10,000 requests (over
    everything after the first sample when the second half has fewer than 3)."""
    last = marks[-1][0]
    half = [(n / 10_000, mb) for n, mb in marks if n >= last / 2]
    where = "the second half"
    if len(half) < 3:
        half, where = [(n / 10_000, mb) for n, mb in marks[1:]], "all samples after the first"
    if len(half) < 3:
        return None, "too few samples"
    xs, ys = [x for x, _ in half], [y for _, y in half]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in half) / sum((x - mean_x) ** 2 for x in xs)
    return slope, f"{slope:+.2f} MB per 10k requests over {where}"


# --- the run -------------------------------------------------------------------------------------------


@dataclass
class Options:
    seconds: float
    latency_requests: int
    ttft_requests: int
    memory_requests: int
    memory_max_seconds: float
    token_delay_ms: float
    litellm: str | None
    keep_logs: Path | None = None


def find_litellm() -> str | None:
    candidate = os.environ.get("MMSTUDIO_BENCH_LITELLM") or LITELLM_DEFAULT
    return candidate if os.access(candidate, os.X_OK) else None


def clean_env() -> dict[str, str]:
    """This environment without mmstudio's own settings (a fresh, default-configured server)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MMSTUDIO_")}


def start_all(procs: Processes, tmp: Path, opts: Options) -> list[Server]:
    python = sys.executable
    up_port, mm_port = free_port(), free_port()
    upstream_args = ["--token-delay-ms", str(opts.token_delay_ms)]
    upstream = Server("direct", up_port, UPSTREAM_MODEL, log=tmp / "upstream.log")
    upstream.proc = procs.start(
        "upstream",
        [python, str(ROOT / "bench" / "fast_upstream.py"), "--port", str(up_port), *upstream_args],
        clean_env(),
        tmp / "upstream.log",
    )
    wait_until(upstream, "/v1/models", UPSTREAM_MODEL.encode(), 15)

    config = tmp / "mmstudio.yaml"
    config.write_text(
        "detect_local: false\n"
        "endpoints:\n"
        f"  - {{name: fast, platform: openai_compat, base_url: 'http://127.0.0.1:{up_port}/v1'}}\n"
    )
    env = {**clean_env(), "MMSTUDIO_DATA_DIR": str(tmp / "mmstudio-data"), "MMSTUDIO_CONFIG": str(config)}
    mmstudio = Server("mmstudio", mm_port, f"fast/{UPSTREAM_MODEL}", log=tmp / "mmstudio.log")
    mmstudio.extra_headers = {"Authorization": "Bearer sk-any"}  # what every OpenAI client sends
    mmstudio.proc = procs.start(
        "mmstudio",
        [python, "-m", "mmstudio", "serve", "--port", str(mm_port), "--log-level", "warning"],
        env,
        tmp / "mmstudio.log",
    )
    wait_until(mmstudio, "/healthz", b'"ready":true', 60)
    wait_until(mmstudio, "/v1/models", mmstudio.model.encode(), 60)  # detection runs in the background
    upstream.extra_headers = dict(mmstudio.extra_headers)
    servers = [upstream, mmstudio]

    if opts.litellm:
        ll_port = free_port()
        ll_config = tmp / "litellm.yaml"
        ll_config.write_text(
            "model_list:\n"
            f"  - model_name: {UPSTREAM_MODEL}\n"
            "    litellm_params:\n"
            f"      model: openai/{UPSTREAM_MODEL}\n"
            f"      api_base: http://127.0.0.1:{up_port}/v1\n"
            "      api_key: sk-upstream\n"
            "litellm_settings:\n"
            "  telemetry: false\n"
            "general_settings:\n"
            f"  master_key: {LITELLM_KEY}\n"
        )
        log_config = tmp / "litellm-logging.yaml"  # no access log, as mmstudio serves without one
        log_config.write_text(
            "version: 1\ndisable_existing_loggers: false\n"
            "loggers:\n  uvicorn.access: {level: WARNING}\n  uvicorn.error: {level: WARNING}\n"
        )
        ll_env = {**clean_env(), "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
        ll_args = ["--num_workers", "1", "--log_config", str(log_config)]
        litellm = Server("LiteLLM", ll_port, UPSTREAM_MODEL, log=tmp / "litellm.log")
        litellm.extra_headers = {"Authorization": f"Bearer {LITELLM_KEY}"}
        litellm.proc = procs.start(
            "LiteLLM",
            [
                opts.litellm,
                "--config",
                str(ll_config),
                "--host",
                "127.0.0.1",
                "--port",
                str(ll_port),
                *ll_args,
            ],
            ll_env,
            tmp / "litellm.log",
        )
        wait_until(litellm, "/health/liveliness", b"alive", 120)
        servers.append(litellm)
    for server in servers:
        check(server)
    return servers


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def fmt_num(value: float) -> str:
    return f"{value:,.0f}"


def yes(ok: bool) -> str:
    return "yes" if ok else "**NO**"


def run(opts: Options) -> str:
    procs = Processes()

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    started = time.monotonic()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mmstudio-bench-gw-") as name:
        tmp = Path(name)
        try:
            say("starting the upstream, mmstudio" + (" and LiteLLM" if opts.litellm else ""))
            servers = start_all(procs, tmp, opts)
            by = {s.name: s for s in servers}
            mm = by["mmstudio"]

            say(f"throughput: wrk -c32 for {opts.seconds:.0f} s each (after a 2 s warm-up)")
            rps: dict[str, WrkRun] = {}
            for s in servers:
                wrk(procs, tmp, s, seconds=2)
                rps[s.name] = wrk(procs, tmp, s, seconds=opts.seconds, cpu_pgid=s.pid)
                say(f"  {s.name}: {rps[s.name].rps:,.0f} req/s ({rps[s.name].errors} errors)")

            say(f"latency at c=1: {opts.latency_requests} plain requests each")
            plain = latencies(servers, opts.latency_requests, stream=False)
            say(f"time to first token at c=1: {opts.ttft_requests} streams each")
            ttft = latencies(servers, opts.ttft_requests, stream=True)

            cap = opts.memory_max_seconds or 3600.0
            say(f"memory: {opts.memory_requests:,} requests through mmstudio at c=32 (at most {cap:.0f} s)")
            memory = wrk(
                procs,
                tmp,
                mm,
                seconds=cap,
                stop_after=opts.memory_requests,
                every=max(1, opts.memory_requests // 10),
                rss_pid=mm.pid,
                cpu_pgid=mm.pid,
            )
            time.sleep(5)  # does memory come back once queued work (metrics, session counts) is done?
            memory.idle_rss = rss_mb(mm.pid)
            return report(servers, rps, plain, ttft, memory, opts, time.monotonic() - started, load)
        except Exception:
            for log in sorted(tmp.glob("*.log")):
                say(f"--- last lines of {log.name} ---\n{log_tail(log)}")
            raise
        finally:
            procs.stop_all()
            if opts.keep_logs is not None:
                opts.keep_logs.mkdir(parents=True, exist_ok=True)
                for log in tmp.glob("*.log"):
                    (opts.keep_logs / log.name).write_bytes(log.read_bytes())


def say(message: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def report(
    servers: list[Server],
    rps: dict[str, WrkRun],
    plain: dict[str, list[float]],
    ttft: dict[str, list[float]],
    memory: WrkRun,
    opts: Options,
    elapsed: float,
    load_before: float,
) -> str:
    have_ll = "LiteLLM" in rps
    na = "not installed"

    def cols(values: dict[str, str]) -> str:
        names = ("direct", "mmstudio", "LiteLLM")
        return " | ".join(values.get(n, na if n == "LiteLLM" else "-") for n in names)

    rows: list[str] = []
    mm_rps, direct_rps = rps["mmstudio"].rps, rps["direct"].rps
    rows.append(
        f"| requests/s, c=32 | {cols({n: fmt_num(r.rps) for n, r in rps.items()})} | "
        f"{mm_rps / direct_rps:.1%} of direct | ≥ 1,000 req/s | {yes(mm_rps >= 1000)} |"
    )
    if have_ll:
        ratio = mm_rps / rps["LiteLLM"].rps
        rows.append(f"| throughput vs LiteLLM | | | | {ratio:.1f}x LiteLLM | ≥ 10x | {yes(ratio >= 10)} |")
    else:
        rows.append("| throughput vs LiteLLM | | | not installed | - | ≥ 10x | n/a |")
    cpu = {n: f"{r.cpu_per_request_us:,.0f} µs" for n, r in rps.items() if r.cpu_per_request_us is not None}
    rows.append(f"| server CPU per request, c=32 | {cols(cpu)} | | - | |")
    for label, data, q, target in (
        ("latency p50, c=1", plain, 50, 1.0),
        ("latency p99, c=1", plain, 99, None),
        ("time to first token p50, c=1", ttft, 50, None),
        ("time to first token p99, c=1", ttft, 99, None),
    ):
        values = {n: percentile(v, q) for n, v in data.items()}
        added = (values["mmstudio"] - values["direct"]) * 1000
        ll_added = f"; LiteLLM +{(values['LiteLLM'] - values['direct']) * 1000:.2f} ms" if have_ll else ""
        goal = f"added ≤ {target:g} ms" if target is not None else "-"
        met = yes(added <= target) if target is not None else ""
        rows.append(
            f"| {label} | {cols({n: fmt_ms(v) for n, v in values.items()})} | "
            f"mmstudio +{added:.2f} ms{ll_added} | {goal} | {met} |"
        )
    slope, verdict = trend(memory.marks)
    first, last = memory.marks[0][1], memory.marks[-1][1]
    flat = slope is not None and slope <= 0.5
    complete = memory.marks[-1][0] >= opts.memory_requests
    if not complete:
        verdict += f"; only {memory.requests:,} of {opts.memory_requests:,} requests"
        verdict += f" in {memory.seconds:.0f} s"
    rows.append(
        f"| RSS after {memory.requests:,} requests, c=32 | | {last:.1f} MB (from {first:.1f}) | | "
        f"{verdict} | flat (≤ 0.5 MB/10k) | {yes(flat and complete)} |"
    )
    header = [
        "| measure | direct | mmstudio | LiteLLM | mmstudio vs direct | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    marks = ", ".join(f"{n / 1000:g}k: {mb:.1f}" for n, mb in memory.marks)
    errors = {n: r.errors for n, r in rps.items() if r.errors} | (
        {"mmstudio (memory run)": memory.errors} if memory.errors else {}
    )
    notes = [
        f"Gateway benchmark, {datetime.date.today()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.machine()}; total {elapsed:.0f} s; load average "
        f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after. "
        "Upstream, servers and load generator share the cores.",
        "",
        *header,
        *rows,
        "",
        f"mmstudio RSS (MB) by requests served: {marks}; {memory.idle_rss:.1f} MB after 5 s idle; "
        f"{memory.rps:,.0f} req/s over the memory run, "
        f"{memory.cpu_per_request_us or 0:,.0f} µs CPU per request.",
        f"c=1: {opts.latency_requests} plain requests and {opts.ttft_requests} streams per target "
        f"(upstream chunks {opts.token_delay_ms:g} ms apart); c=32: wrk, {opts.seconds:.0f} s per target.",
    ]
    if errors:
        notes.append(f"ERRORS (non-2xx or socket errors): {errors}")
    return "\n".join(notes)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10, help="wrk duration per target at c=32")
    parser.add_argument("--latency-requests", type=int, default=1000, help="plain requests per target, c=1")
    parser.add_argument("--ttft-requests", type=int, default=300, help="streams per target, c=1")
    parser.add_argument("--memory-requests", type=int, default=100_000)
    parser.add_argument(
        "--memory-max-seconds", type=float, default=200, help="cap on the memory run (0: one hour)"
    )
    parser.add_argument("--token-delay-ms", type=float, default=2, help="upstream pause between chunks")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM even when installed")
    parser.add_argument("--keep-logs", type=Path, help="copy the servers' logs to this directory")
    args = parser.parse_args()
    if subprocess.run(["which", "wrk"], capture_output=True).returncode != 0:
        sys.exit("wrk is not installed (apt-get install wrk; ./scripts/bench gateway does it)")
    opts = Options(
        seconds=args.seconds,
        latency_requests=args.latency_requests,
        ttft_requests=args.ttft_requests,
        memory_requests=args.memory_requests,
        memory_max_seconds=args.memory_max_seconds,
        token_delay_ms=args.token_delay_ms,
        litellm=None if args.no_litellm else find_litellm(),
        keep_logs=args.keep_logs,
    )
    if opts.litellm is None and not args.no_litellm:
        say(f"LiteLLM not found at $MMSTUDIO_BENCH_LITELLM or {LITELLM_DEFAULT}: its column is skipped")
    print(run(opts))


if __name__ == "__main__":
    main()
