"""Cluster-mode benchmarks: reload under load, shared-socket throughput, the reference web app, runtime start.

Registered with bench/run.py (imported from its EXTENSIONS). Four benchmarks:

- ``reload``: Corral reloading 2 and 4 uvicorn instances (``python -m corral.contrib.uvicorn``,
  ``wait_ready``) vs PM2 reloading 2 and 4 Node cluster workers (``pm2 reload``), under (a) a
  closed-loop Python client that opens a new connection per request and (b) ``wrk`` on
  keep-alive connections.
- ``throughput``: a hello-world ASGI app, 1/2/4 instances behind Corral's shared socket vs
  plain ``uvicorn --workers N``.
- ``webapp``: examples/webapp's ``/api/health`` and ``/api/notes`` with 1 and 4 instances under
  Corral (cluster mode), PM2 (fork mode: 4 instances told to bind one port, and 1 instance) and
  plain ``uvicorn --workers 4``.
- ``runtime_start``: ``corral-runtime`` vs ``pm2-runtime`` starting the web app's production
  configuration (4 instances) until all 4 answer ``/api/health``.

Run: ``.venv/bin/python bench/run.py --only reload,throughput,webapp,runtime_start [--quick]``
(about 6 minutes in full on 2 cores, 4 with --quick; needs ``wrk``: ``apt-get install wrk``).
``BENCH_CLUSTER_UVICORN=nodelay|keepalive`` makes ``reload`` run Corral's instances under
bench/apps/cluster_uvicorn_nodelay.py or cluster_uvicorn_keepalive.py instead of the shipped
``corral.contrib.uvicorn`` (see bench/analysis/cluster.md).

Everything listens on 127.0.0.1; every load loop has a time and a count bound; every process
started here is ended in a ``finally`` (``corral kill`` / ``pm2 kill`` through the harness
sessions, SIGTERM then SIGKILL by pid for the foreground processes).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    APPS,
    PM2_DIR,
    REPO,
    WORK,
    BenchError,
    Corral,
    Tool,
    median,
    now,
    pid_alive,
    proc_cmdline,
    proc_descendants,
    proc_stat_cpu,
    wait_until,
)
from run import Ctx, Row, benchmark, progress

sys.path.insert(0, str(REPO))
from tests.support import httpload  # noqa: E402  (the shared load client)

HOST = "127.0.0.1"
WEBAPP = REPO / "examples" / "webapp"
# Apps that need packages (uvicorn, starlette...) run with the venv's python under every tool
# (not the bare interpreter behind it, which has no site-packages of the venv).
VENV_PY = sys.executable
APP_NAME = "hello"
PM2_RUNTIME = PM2_DIR / "node_modules" / ".bin" / "pm2-runtime"
# The Python apps' environment under every tool (and plain uvicorn): a bytecode cache, as an
# installed deployment has, in bench/.work like Corral's own (harness.Corral.python_env). Without
# this, apps under Corral would inherit Corral's cache while apps under PM2 would inherit this
# machine's PYTHONDONTWRITEBYTECODE=1 and compile the web app's sources at every start.
APP_PY_ENV = {"PYTHONPYCACHEPREFIX": str(WORK / "pycache"), "PYTHONDONTWRITEBYTECODE": ""}

# ---------------------------------------------------------------- small helpers


def free_port(count: int = 1) -> int:
    """A port (the first of ``count`` consecutive ones) free on 127.0.0.1, below the ephemeral range."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32000 - count)
        socks: list[socket.socket] = []
        try:
            for p in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind((HOST, p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise BenchError("no free port found")


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def dump_apps_toml(apps: list[dict[str, Any]]) -> str:
    """``[[apps]]`` tables with scalar keys first and nested tables as ``[apps.NAME]``."""
    out: list[str] = []
    for app in apps:
        out.append("[[apps]]")
        tables = {k: v for k, v in app.items() if isinstance(v, dict)}
        for k, v in app.items():
            if not isinstance(v, dict):
                out.append(f"{k} = {toml_value(v)}")
        for name, table in tables.items():
            out.append(f"\n[apps.{name}]")
            for k, v in table.items():
                out.append(f"{json.dumps(k)} = {toml_value(v)}")
        out.append("")
    return "\n".join(out) + "\n"


def corral_runtime_argv() -> list[str]:
    if Corral.src is not None:
        return [
            VENV_PY,
            "-c",
            "import sys; from corral.cli import runtime_main; sys.exit(runtime_main())",
        ]
    exe = Path(VENV_PY).parent / "corral-runtime"
    if exe.exists():
        return [str(exe)]
    return [
        VENV_PY,
        "-c",
        "import sys; from corral.cli import runtime_main; sys.exit(runtime_main())",
    ]


# ---------------------------------------------------------------- HTTP, one request per connection


def http_request(
    port: int,
    path: str = "/",
    timeout: float = 5.0,
    send_delay: float = 0.0,
    method: str = "GET",
    body: bytes = b"",
    content_type: str = "application/json",
) -> tuple[int, bytes]:
    """One request on a new connection: (status, body); status 0 for an empty or garbled reply."""
    reply = httpload.http_request(
        (HOST, port), path, timeout=timeout, send_delay=send_delay, method=method, body=body, content_type=content_type, host=f"{HOST}:{port}"
    )
    return reply.status, reply.body


def any_body(body: bytes) -> int:
    """Every 200 answer counts (the benchmark does not check who answered)."""
    return 0


def Load(port: int, path: str = "/", fast: int = 6, slow: int = 2, send_delay: float = 0.02, max_seconds: float = 300.0) -> httpload.Load:
    """The shared closed-loop client: ``fast`` threads send at once, ``slow`` ones ``send_delay`` after connecting."""
    return httpload.Load(
        port, path, send_delays=[0.0] * fast + [send_delay] * slow, pid_of=any_body, timeout=5.0,
        max_seconds=max_seconds, max_requests=500_000, served=0, keep_failures=5,
    )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


# ---------------------------------------------------------------- wrk


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        return float("nan")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass
class WrkResult:
    requests: int = 0
    rps: float = float("nan")
    latency_avg: float = float("nan")
    latency_max: float = float("nan")
    connect: int = 0
    read: int = 0
    write: int = 0
    timeout: int = 0
    non2xx: int = 0
    raw: str = ""

    @property
    def failures(self) -> int:
        return self.connect + self.read + self.write + self.timeout + self.non2xx


def parse_wrk(text: str) -> WrkResult:
    r = WrkResult(raw=text)
    m = re.search(r"^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)", text, re.M)
    if m:
        r.latency_avg = _seconds(m.group(1))
        r.latency_max = _seconds(m.group(3))
    m = re.search(r"(\d+) requests in", text)
    if m:
        r.requests = int(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        r.rps = float(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        r.connect, r.read, r.write, r.timeout = (int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        r.non2xx = int(m.group(1))
    if not m and "Requests/sec" not in text:
        raise BenchError(f"wrk printed no figures: {text[-400:]!r}")
    return r


def wrk_argv(
    port: int, path: str, connections: int, seconds: float, close: bool = False
) -> list[str]:
    return [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, int(round(seconds)))}s",
        "--timeout",
        "5s",
        *(["-H", "Connection: close"] if close else []),
        f"http://{HOST}:{port}{path}",
    ]


def run_wrk(
    port: int, path: str, connections: int, seconds: float, close: bool = False
) -> WrkResult:
    """wrk for a fixed duration (its own -d, plus a deadline here)."""
    proc = subprocess.Popen(
        wrk_argv(port, path, connections, seconds, close),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=seconds + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    return parse_wrk(out)


def connections_per_process(port: int) -> list[int]:
    """Established connections on a local listening port, counted per serving process (``ss -tnp``)."""
    if shutil.which("ss") is None:
        return []
    res = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    counts = Counter(re.findall(r"pid=(\d+)", res.stdout))
    return sorted(counts.values(), reverse=True)


def run_wrk_spread(
    port: int, path: str, connections: int, seconds: float
) -> tuple[WrkResult, list[int]]:
    """wrk for a fixed duration; halfway, how its connections are spread over the serving processes."""
    proc = subprocess.Popen(
        wrk_argv(port, path, connections, seconds),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        time.sleep(seconds / 2)
        conns = connections_per_process(port)
        out, _ = proc.communicate(timeout=seconds + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    return parse_wrk(out), conns


@contextlib.contextmanager
def wrk_running(port: int, path: str, connections: int, limit: float) -> Iterator[list[WrkResult]]:
    """wrk in the background (at most ``limit`` seconds); on leaving, SIGINT makes it print its figures."""
    proc = subprocess.Popen(
        wrk_argv(port, path, connections, limit),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    box: list[WrkResult] = []
    try:
        yield box
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
        box.append(parse_wrk(out))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


# ---------------------------------------------------------------- processes started here


class Foreground:
    """A process started here (plain uvicorn, corral-runtime, pm2-runtime) in its own session.

    On stop: SIGTERM to it, wait, then SIGKILL by pid to it and to every descendant seen
    (only those whose environment carries this run's tag).
    """

    def __init__(
        self, argv: list[str], env: dict[str, str], cwd: Path, log: Path | None = None
    ) -> None:
        self.tag = f"bench-cluster-{os.getpid()}-{id(self)}-{time.time_ns()}"
        self.argv = argv
        self.env = dict(env, BENCH_CLUSTER_TAG=self.tag)
        self.cwd = cwd
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen: set[int] = set()
        self.t_launch = 0.0

    def __enter__(self) -> Foreground:
        out: Any = open(self.log, "wb") if self.log else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.t_launch = now()
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=str(self.cwd),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if self.log:
                out.close()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def remember(self) -> None:
        if self.proc is not None:
            self.seen.update(proc_descendants(self.proc.pid))

    def _ours(self, pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                return self.tag.encode() in f.read()
        except OSError:
            return False

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None:
            return
        self.remember()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait(5)
        deadline = now() + 5
        while now() < deadline and any(pid_alive(p) for p in self.seen):
            time.sleep(0.05)
        for p in sorted(self.seen):
            if pid_alive(p) and self._ours(p):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(p, signal.SIGKILL)
                sys.stderr.write(
                    f"bench: pid {p} ({' '.join(proc_cmdline(p))[:80]}) outlived its parent; sent SIGKILL\n"
                )
        self.proc = None


# ---------------------------------------------------------------- finding the instances that answer


@dataclass
class Answers:
    t_first: float | None = None
    t_all: float | None = None
    pids: dict[int, float] = field(default_factory=dict)
    ports: dict[int, float] = field(default_factory=dict)


def wait_answers(
    ports: list[int],
    want_pids: int,
    t0: float,
    timeout: float,
    path: str = "/api/health",
    pollers: int = 8,
    alive: Any = None,
) -> Answers:
    """Poll ``path`` (JSON with a ``pid``) with concurrent clients until ``want_pids`` distinct pids and
    every port have answered 200; times relative to ``t0``. BenchError after ``timeout``."""
    res = Answers()
    lock = threading.Lock()
    done = threading.Event()
    deadline = now() + timeout

    def poll(i: int) -> None:
        k = i
        while not done.is_set() and now() < deadline:
            with lock:
                missing = [p for p in ports if p not in res.ports] or ports
            port = missing[k % len(missing)]
            k += 1
            try:
                status, body = http_request(port, path, timeout=2.0)
            except OSError:
                time.sleep(0.01)
                continue
            t = now() - t0
            if status != 200:
                time.sleep(0.01)
                continue
            try:
                pid = int(json.loads(body)["pid"])
            except (ValueError, KeyError, TypeError):
                pid = -port
            with lock:
                if res.t_first is None:
                    res.t_first = t
                res.ports.setdefault(port, t)
                new_pid = pid not in res.pids
                res.pids.setdefault(pid, t)
                if (
                    len(res.pids) >= want_pids
                    and len(res.ports) == len(ports)
                    and not done.is_set()
                ):
                    res.t_all = t
                    done.set()
            # An instance that answered again is not news: don't keep it busy (on a shared socket every
            # poll is served, and its CPU would be taken from the instances still starting).
            time.sleep(0.005 if new_pid else 0.05)

    threads = [threading.Thread(target=poll, args=(i,), daemon=True) for i in range(pollers)]
    for t in threads:
        t.start()
    while not done.is_set() and now() < deadline:
        if alive is not None and not alive():
            done.set()
            break
        done.wait(0.05)
    done.set()
    for t in threads:
        t.join(5)
    if res.t_all is None:
        raise BenchError(
            f"after {timeout:g}s only {len(res.pids)} of {want_pids} instances had answered {path} "
            f"(ports answering: {sorted(res.ports)} of {ports})"
        )
    return res


def answering_pids(port: int, path: str, tries: int = 40) -> set[int]:
    """The pids that answer ``path`` on a port, from a few concurrent rounds of requests."""
    pids: set[int] = set()
    lock = threading.Lock()

    def one() -> None:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            status, body = http_request(port, path, timeout=2.0)
            if status == 200:
                with lock:
                    pids.add(int(json.loads(body)["pid"]))

    for _ in range(tries // 8):
        threads = [threading.Thread(target=one, daemon=True) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
    return pids


# ---------------------------------------------------------------- the hello apps under each tool


# How Corral's instances serve the hello app: the shipped recipe (docs/cluster.md), or one of
# the bench/apps/cluster_uvicorn_*.py variants that show what a change to it would give.
SERVERS = {
    "contrib": ["-m", "corral.contrib.uvicorn"],
    "nodelay": [str(APPS / "cluster_uvicorn_nodelay.py")],
    "keepalive": [str(APPS / "cluster_uvicorn_keepalive.py")],
}


def reload_server() -> str:
    """BENCH_CLUSTER_UVICORN picks the server `reload` runs under Corral (default: the shipped recipe)."""
    name = os.environ.get("BENCH_CLUSTER_UVICORN", "contrib")
    if name not in SERVERS:
        raise BenchError(f"BENCH_CLUSTER_UVICORN={name!r}: one of {', '.join(SERVERS)}")
    return name


def corral_hello_app(
    port: int, instances: int, name: str = APP_NAME, server: str = "contrib"
) -> dict[str, Any]:
    """The reload-safe uvicorn recipe of docs/cluster.md, serving bench/apps/cluster_app.py."""
    return {
        "name": name,
        "script": VENV_PY,
        "args": [*SERVERS[server], "cluster_app:app", "--fd", "{fd}", "--no-access-log"],
        "cwd": str(APPS),
        "exec_mode": "cluster",
        "instances": instances,
        "listen": f"{HOST}:{port}",
        "wait_ready": True,
        "listen_timeout": 15000,
        "kill_signal": "SIGTERM",
        "kill_timeout": 5000,
        "env": dict(APP_PY_ENV),
    }


def pm2_hello_app(port: int, instances: int) -> dict[str, Any]:
    """A Node http server in PM2's cluster mode (graceful SIGINT handler, as PM2's docs show)."""
    return {
        "name": APP_NAME,
        "script": str(APPS / "cluster_hello.js"),
        "exec_mode": "cluster",
        "instances": instances,
        "env": {"PORT": str(port)},
    }


def start_file(tool: Tool, apps: list[dict[str, Any]], stem: str, *extra: str) -> None:
    assert tool.home is not None
    if isinstance(tool, Corral):
        path = tool.home / f"{stem}.toml"
        path.write_text(dump_apps_toml(apps))
    else:
        path = tool.home / f"{stem}.json"
        path.write_text(json.dumps({"apps": apps}, indent=2))
    tool.cli("start", str(path), *extra, stdout=subprocess.DEVNULL, timeout=90)


def delete_app(tool: Tool, name: str) -> None:
    tool.cli("delete", name, stdout=subprocess.DEVNULL, check=False, timeout=60)
    wait_until(lambda: not any(p.name == name for p in tool.jlist()), 30, what=f"{name} deleted")


def wait_http(port: int, path: str = "/", timeout: float = 30.0) -> None:
    def ok() -> bool:
        try:
            return http_request(port, path, timeout=2.0)[0] == 200
        except OSError:
            return False

    wait_until(ok, timeout, interval=0.05, what=f"an answer on port {port}")


def point_to_analysis(ctx: Ctx, name: str, rows: list[Row]) -> list[Row]:
    """run.py prints bench/analysis/<name>.md under a missed target; these four share cluster.md."""
    if any(row.met is False for row in rows):
        ctx.note(
            name,
            f"Missed target: why, and what to do, in bench/analysis/cluster.md, section `{name}`.",
        )
    return rows


_warmed = False


def warm_apps() -> None:
    """Start each Python server once (bytecode cache filled), so that no measured start compiles."""
    global _warmed
    if _warmed:
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-warm-", dir="/tmp"))
    try:
        env = dict(os.environ, **APP_PY_ENV)
        db_url = f"sqlite:///{tmp / 'webapp.db'}"
        subprocess.run(
            [VENV_PY, "-c", "import corral.runtime, corral.cli, corral.daemon.server"],
            env={**os.environ, **Corral.python_env()},
            check=False,
            timeout=120,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port = free_port()
        with Foreground(
            [VENV_PY, "serve.py"],
            dict(env, PORT=str(port), DATABASE_URL=db_url),
            WEBAPP,
            tmp / "serve.log",
        ):
            wait_http(port, "/api/health", 120)
            seed_notes(port, 1)
            http_request(port, "/api/notes")
        for argv in (
            [VENV_PY, "-m", "corral.contrib.uvicorn", "cluster_app:app", "--port", "{port}"],
            [VENV_PY, "-m", "uvicorn", "cluster_app:app", "--port", "{port}", "--workers", "2"],
            [VENV_PY, "-m", "uvicorn", "webapp.app:app", "--port", "{port}", "--workers", "2"],
        ):
            port = free_port()
            cwd = WEBAPP if "webapp.app:app" in argv else APPS
            argv = [a.replace("{port}", str(port)) for a in argv]
            with Foreground(argv, dict(env, DATABASE_URL=db_url), cwd, tmp / "uv.log") as fg:
                wait_http(port, "/api/health" if cwd == WEBAPP else "/", 120)
                time.sleep(0.5)
                fg.remember()
        _warmed = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- 1. reload under load


@benchmark(
    "reload",
    "Reload under load (cluster mode)",
    "Corral reloads 2 and 4 instances of a hello-world ASGI app served by `python -m corral.contrib.uvicorn "
    "cluster_app:app --fd {fd}` (cluster mode, one shared socket, `wait_ready = true`, `kill_signal = "
    '"SIGTERM"`); PM2 reloads 2 and 4 workers of a minimal Node http server in its cluster mode '
    "(`pm2 start cluster_hello.js -i N`, with PM2's documented graceful `SIGINT` handler: `server.close()`, "
    "then exit). (a) A closed-loop client in Python opens a new connection per request (`Connection: close`): "
    "6 threads send at once, 2 send 20 ms after connecting (a real network, TLS); a refused or reset "
    "connection, no reply within 5 s, an empty reply or a non-200 is a failed request. `<tool> reload hello` "
    "is issued back to back (0.3 s apart) while the load runs, in blocks Corral, PM2, PM2, Corral: half the "
    "reloads with 2 instances, half with 4. (b) The same with `wrk -t1 -c16` on keep-alive connections; "
    "failures = `Non-2xx or 3xx responses` + `Socket errors` (connect, read, write, timeout). Reload duration "
    "= wall time of the `reload` command (both return once every instance is replaced); median. Max "
    "latency: the slowest request of the run.",
)
def bench_reload(ctx: Ctx) -> list[Row]:
    warm_apps()
    reloads = ctx.pick(10, 2)  # per tool and instance count, for (a): 20 per tool in all
    wrk_reloads = ctx.pick(2, 2)  # per tool and instance count, for (b)
    blocks = 2
    labels = ("Corral", "PM2")
    server = reload_server()
    rows: list[Row] = []
    wrk_ok = have_wrk()
    if not wrk_ok:
        ctx.note(
            "reload",
            "wrk is not installed (`apt-get install wrk`): the keep-alive part (b) was skipped.",
        )
    if server != "contrib":
        ctx.note(
            "reload",
            f"**Corral's instances ran bench/apps/cluster_uvicorn_{server}.py** (BENCH_CLUSTER_UVICORN={server}), "
            "not the shipped `corral.contrib.uvicorn`.",
        )
    total_a = {k: 0 for k in labels}
    total_b = {k: 0 for k in labels}
    count_a = {k: 0 for k in labels}
    count_b = {k: 0 for k in labels}
    with ctx.both() as tools:
        for n in (2, 4):
            a: dict[str, dict[str, Any]] = {
                k: {
                    "fail": Counter(),
                    "ok": 0,
                    "lat": [],
                    "dur": [],
                    "reloads": 0,
                    "first": [],
                    "secs": 0.0,
                }
                for k in labels
            }
            b: dict[str, dict[str, Any]] = {
                k: {"fail": 0, "detail": Counter(), "max": [], "rps": [], "dur": [], "reloads": 0}
                for k in labels
            }
            ports: dict[str, int] = {}
            try:
                for tool in tools:
                    port = free_port()
                    ports[tool.label] = port
                    if isinstance(tool, Corral):
                        start_file(tool, [corral_hello_app(port, n, server=server)], f"hello{n}")
                    else:
                        start_file(tool, [pm2_hello_app(port, n)], f"hello{n}")
                    tool.wait_online(n, 60, name=APP_NAME)
                    wait_http(port)
                progress(f"reload: {n} instances, (a) {reloads} reloads per tool")
                for blk in range(blocks):
                    for tool in tools if blk % 2 == 0 else tools[::-1]:
                        k = reloads // blocks + (reloads % blocks if blk == 0 else 0)
                        _reload_block_a(tool, ports[tool.label], n, k, a[tool.label])
                if wrk_ok:
                    progress(f"reload: {n} instances, (b) wrk, {wrk_reloads} reloads per tool")
                    for blk in range(blocks):
                        for tool in tools if blk % 2 == 0 else tools[::-1]:
                            k = wrk_reloads // blocks + (wrk_reloads % blocks if blk == 0 else 0)
                            _reload_block_b(tool, ports[tool.label], n, k, b[tool.label])
            finally:
                for tool in tools:
                    with contextlib.suppress(BenchError):
                        delete_app(tool, APP_NAME)
            c, p = a["Corral"], a["PM2"]
            for label, s in a.items():
                failed = sum(s["fail"].values())
                total_a[label] += failed
                count_a[label] += s["reloads"]
                ctx.note(
                    "reload",
                    f"(a) {label}, {n} instances: {s['reloads']} reloads, {s['ok']:,} requests served in "
                    f"{s['secs']:.0f} s ({s['ok'] / max(s['secs'], 1e-9):,.0f}/s), {failed} failed "
                    f"({dict(s['fail']) or 'none'}){'; first: ' + ', '.join(s['first'][:3]) if s['first'] else ''}; "
                    f"reload durations (s): {', '.join(f'{d:.2f}' for d in s['dur'])}",
                )
            rows += [
                Row(
                    f"(a) failed requests per reload, {n} instances",
                    "req",
                    sum(c["fail"].values()) / max(c["reloads"], 1),
                    sum(p["fail"].values()) / max(p["reloads"], 1),
                    note=f"{c['reloads']} reloads each",
                ),
                Row(
                    f"(a) max latency, {n} instances",
                    "ms",
                    max(c["lat"], default=float("nan")) * 1000,
                    max(p["lat"], default=float("nan")) * 1000,
                ),
                Row(
                    f"(a) p99 latency, {n} instances",
                    "ms",
                    percentile(c["lat"], 0.99) * 1000,
                    percentile(p["lat"], 0.99) * 1000,
                ),
                Row(
                    f"reload duration (median), {n} instances",
                    "s",
                    median(c["dur"]),
                    median(p["dur"]),
                ),
            ]
            if wrk_ok:
                cb, pb = b["Corral"], b["PM2"]
                for label, s in b.items():
                    total_b[label] += s["fail"]
                    count_b[label] += s["reloads"]
                    ctx.note(
                        "reload",
                        f"(b) {label}, {n} instances: {s['reloads']} reloads under wrk -c16, failures "
                        f"{s['fail']} ({dict(s['detail']) or 'none'}), requests/s during each run "
                        f"{', '.join(f'{r:,.0f}' for r in s['rps'])}; reload durations (s): "
                        f"{', '.join(f'{d:.2f}' for d in s['dur'])}",
                    )
                rows += [
                    Row(
                        f"(b) keep-alive: failed requests per reload, {n} instances",
                        "req",
                        cb["fail"] / max(cb["reloads"], 1),
                        pb["fail"] / max(pb["reloads"], 1),
                        note=f"{cb['reloads']} reloads each",
                    ),
                    Row(
                        f"(b) max latency, {n} instances",
                        "ms",
                        max(cb["max"], default=float("nan")) * 1000,
                        max(pb["max"], default=float("nan")) * 1000,
                    ),
                    Row(
                        f"(b) requests/s during the reloads, {n} instances",
                        "req/s",
                        median(cb["rps"]),
                        median(pb["rps"]),
                        better="higher",
                    ),
                ]
    summary = [
        Row(
            f"(a) new connection per request: failed requests in {count_a['Corral']} reloads",
            "req",
            total_a["Corral"],
            total_a["PM2"],
            corral_target=0,
        )
    ]
    if wrk_ok:
        summary.append(
            Row(
                f"(b) keep-alive (wrk -c16): failed requests per reload ({count_b['Corral']} reloads)",
                "req",
                total_b["Corral"] / max(count_b["Corral"], 1),
                total_b["PM2"] / max(count_b["PM2"], 1),
                target=1.0,
                note="fewer than PM2",
            )
        )
    ctx.note(
        "reload",
        "The two tools serve different runtimes (uvicorn on Python's asyncio vs Node): the failed requests compare "
        "the managers and their reload recipes; latency and throughput also reflect the servers (and, for "
        "Corral's keep-alive figures, uvicorn's lost TCP_NODELAY on `--fd` sockets: see the `throughput` "
        "benchmark). A Node app without a SIGINT handler dies at once on `pm2 reload`, failing the requests it "
        'holds: the PM2 app here has the handler PM2\'s documentation recommends. "timeout" = no reply within 5 s.',
    )
    return point_to_analysis(ctx, "reload", summary + rows)


def _online_pids(tool: Tool, name: str) -> set[int]:
    return {p.pid for p in tool.jlist() if p.name == name and p.status == "online" and p.pid}


def _reload_block_a(tool: Tool, port: int, n: int, k: int, acc: dict[str, Any]) -> None:
    before = _online_pids(tool, APP_NAME)
    with Load(port, "/", max_seconds=240) as load:
        time.sleep(0.5)
        for _ in range(k):
            t0 = now()
            tool.cli("reload", APP_NAME, stdout=subprocess.DEVNULL, timeout=120)
            acc["dur"].append(now() - t0)
            time.sleep(0.3)
        time.sleep(0.5)
        load.stop()
    acc["fail"].update(load.kinds)
    acc["ok"] += load.ok
    acc["lat"].extend(load.latencies)
    acc["reloads"] += k
    acc["first"].extend(load.failures)
    acc["secs"] += load.t1 - load.t0
    after = tool.wait_online(n, 30, name=APP_NAME)
    if k and before & {p.pid for p in after}:
        raise BenchError(f"{tool.label}: some instances kept their pid across {k} reloads")


def _reload_block_b(tool: Tool, port: int, n: int, k: int, acc: dict[str, Any]) -> None:
    with wrk_running(port, "/", 16, limit=240) as box:
        time.sleep(1.0)
        for _ in range(k):
            t0 = now()
            tool.cli("reload", APP_NAME, stdout=subprocess.DEVNULL, timeout=120)
            acc["dur"].append(now() - t0)
            time.sleep(0.3)
        time.sleep(1.0)
    r = box[0]
    acc["fail"] += r.failures
    acc["detail"].update(
        {
            k2: v
            for k2, v in (
                ("non-2xx", r.non2xx),
                ("connect", r.connect),
                ("read", r.read),
                ("write", r.write),
                ("timeout", r.timeout),
            )
            if v
        }
    )
    acc["max"].append(r.latency_max)
    acc["rps"].append(r.rps)
    acc["reloads"] += k
    tool.wait_online(n, 30, name=APP_NAME)


# ---------------------------------------------------------------- 2. throughput: shared socket vs uvicorn --workers


@benchmark(
    "throughput",
    "Shared-socket throughput vs plain uvicorn",
    "The same hello-world ASGI app (bench/apps/cluster_app.py, uvicorn with h11 on asyncio, no access log) with "
    "1, 2 and 4 instances behind Corral's shared socket (cluster mode, the shipped recipe `python -m "
    "corral.contrib.uvicorn cluster_app:app --fd {fd}`) vs plain `uvicorn cluster_app:app --workers N` "
    "(uvicorn's own supervisor, which also shares one socket between its workers), both with the venv's "
    "python. **The PM2 column is plain uvicorn here.** Requests/s from `wrk -t1 -c32` after a 1 s warm-up: on "
    "keep-alive connections (wrk's default; 5 s, two rounds, median), then once, for 2 s each: "
    "with `Connection: close` (a new connection per request, which Nagle's algorithm does not delay: the "
    "manager's own per-request cost, if any), and with Corral's instances running "
    "bench/apps/cluster_uvicorn_nodelay.py (the recipe with TCP_NODELAY restored). All deployments of one N "
    "run at once (idle while another is measured); measurements alternate between them.",
)
def bench_throughput(ctx: Ctx) -> list[Row]:
    if not have_wrk():
        raise BenchError("wrk is not installed (apt-get install wrk)")
    warm_apps()
    seconds = ctx.pick(5, 2)
    extra_seconds = ctx.pick(2, 2)
    rounds = ctx.pick(2, 1)
    keys = ("Corral", "uvicorn", "Corral close", "uvicorn close", "Corral nodelay")
    rows: list[Row] = []
    extra_rows: list[Row] = []
    corral = Corral()
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-tp-", dir="/tmp"))
    try:
        with corral.session():
            corral.start_daemon()
            for n in (1, 2, 4):
                rps: dict[str, list[float]] = {k: [] for k in keys}
                cport, nport, uport = _distinct_ports(3)
                name, nd_name = f"tp{n}", f"tp{n}-nodelay"
                progress(f"throughput: {n} instance(s)")
                try:
                    start_file(
                        corral,
                        [
                            corral_hello_app(cport, n, name),
                            corral_hello_app(nport, n, nd_name, "nodelay"),
                        ],
                        name,
                    )
                    corral.wait_online(2 * n, 60)
                    argv = [
                        VENV_PY,
                        "-m",
                        "uvicorn",
                        "cluster_app:app",
                        "--host",
                        HOST,
                        "--port",
                        str(uport),
                        "--workers",
                        str(n),
                        "--no-access-log",
                    ]
                    env = dict(os.environ, **APP_PY_ENV)
                    with Foreground(argv, env, APPS, tmp / f"uvicorn{n}.log") as uv:
                        for port in (uport, cport, nport):
                            wait_http(port)
                        time.sleep(1.0)  # uvicorn's other workers: no readiness signal to wait for
                        uv.remember()
                        for port in (cport, uport, nport):
                            run_wrk(port, "/", 32, 1.0)
                        for r in range(rounds):
                            plan = [
                                ("Corral", cport, False, seconds),
                                ("uvicorn", uport, False, seconds),
                            ]
                            if (r + n) % 2:
                                plan.reverse()
                            if r == 0:
                                extra = [
                                    ("Corral close", cport, True, extra_seconds),
                                    ("uvicorn close", uport, True, extra_seconds),
                                    ("Corral nodelay", nport, False, extra_seconds),
                                ]
                                plan += extra if n % 2 else extra[1::-1] + extra[2:]
                            for key, port, close, secs in plan:
                                res = run_wrk(port, "/", 32, secs, close=close)
                                if res.failures:
                                    ctx.note(
                                        "throughput",
                                        f"{key}, {n} instance(s): {res.failures} failed requests",
                                    )
                                rps[key].append(res.rps)
                finally:
                    for app in (name, nd_name):
                        with contextlib.suppress(BenchError):
                            delete_app(corral, app)
                ctx.note(
                    "throughput",
                    f"{n} instance(s), requests/s: "
                    + "; ".join(
                        f"{k} " + ", ".join(f"{x:,.0f}" for x in v) for k, v in rps.items()
                    ),
                )
                s = "s" if n > 1 else ""
                rows.append(
                    Row(
                        f"keep-alive requests/s, {n} instance{s}",
                        "req/s",
                        median(rps["Corral"]),
                        median(rps["uvicorn"]),
                        better="higher",
                        target=0.9,
                        note=f"PM2 column: `uvicorn --workers {n}`",
                    )
                )
                extra_rows += [
                    Row(
                        f"`Connection: close` requests/s, {n} instance{s}",
                        "req/s",
                        median(rps["Corral close"]),
                        median(rps["uvicorn close"]),
                        better="higher",
                        target=0.9,
                        note=f"PM2 column: `uvicorn --workers {n}`",
                    ),
                    Row(
                        f"keep-alive requests/s, {n} instance{s}, Corral with TCP_NODELAY restored",
                        "req/s",
                        median(rps["Corral nodelay"]),
                        median(rps["uvicorn"]),
                        better="higher",
                        note=f"cluster_uvicorn_nodelay.py; PM2 column: `uvicorn --workers {n}`",
                    ),
                ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ctx.note(
        "throughput",
        f"wrk -t1 -c32, {seconds} s per keep-alive measurement ({rounds} round(s)), {extra_seconds} s for the "
        "others (one each). On 2 cores, more than 2 instances cannot add throughput (and wrk takes part of a "
        "core): the point is the ratio, not the scaling. uvicorn `--workers 1` serves in one process from a "
        "host and port; `--workers 2` and up bind the socket in a supervisor and hand it down, like Corral.",
    )
    return point_to_analysis(ctx, "throughput", rows + extra_rows)


def _distinct_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


# ---------------------------------------------------------------- 3. the reference web app


def webapp_source() -> list[dict[str, Any]]:
    with open(WEBAPP / "ecosystem.toml", "rb") as f:
        apps: list[dict[str, Any]] = tomllib.load(f)["apps"]
    return apps


def corral_webapp(
    port: int,
    instances: int,
    db_url: str,
    logs: Path,
    reuse_port: bool = False,
    name: str = "webapp",
) -> list[dict[str, Any]]:
    """The web app's own ecosystem.toml, with a free port, its folder as cwd, logs and database in a temp dir.

    With another ``name``, only the production app, renamed (several deployments side by side).
    """
    apps = webapp_source()
    if name != "webapp":
        apps = [a for a in apps if a["name"] == "webapp"]
    for app in apps:
        app["cwd"] = str(WEBAPP)
        app.setdefault("env", {}).update(APP_PY_ENV, DATABASE_URL=db_url)
        if app["name"] == "webapp":
            app["name"] = name
            app["instances"] = instances
            app["listen"] = f"{HOST}:{port}"
            if reuse_port:
                app["reuse_port"] = True
            app["out_file"] = str(logs / f"{name}-out.log")
            app["error_file"] = str(logs / f"{name}-error.log")
            app["log_file"] = str(logs / f"{name}-combined.log")
    return apps


def pm2_webapp(
    port: int,
    instances: int,
    db_url: str,
    logs: Path,
    increment: bool = False,
    name: str = "webapp",
) -> dict[str, Any]:
    """The production app as a PM2 user would write it for Python: fork mode, PORT in the environment."""
    src = next(a for a in webapp_source() if a["name"] == "webapp")
    app: dict[str, Any] = {
        "name": name,
        "script": "serve.py",
        "cwd": str(WEBAPP),
        "interpreter": VENV_PY,
        "interpreter_args": " ".join(src.get("interpreter_args", [])),
        "exec_mode": "fork",
        "instances": instances,
        "max_memory_restart": src["max_memory_restart"],
        "kill_timeout": 10000,
        "autorestart": True,
        "min_uptime": "2s",
        "max_restarts": src["max_restarts"],
        "exp_backoff_restart_delay": src["exp_backoff_restart_delay"],
        "log_type": "json",
        "out_file": str(logs / f"{name}-out.log"),
        "error_file": str(logs / f"{name}-error.log"),
        "log_file": str(logs / f"{name}-combined.log"),
        "merge_logs": True,
        "env": {
            **src["env"],
            **APP_PY_ENV,
            "HOST": HOST,
            "PORT": str(port),
            "DATABASE_URL": db_url,
        },
        "env_production": dict(src["env_production"]),
    }
    if increment:
        app["increment_var"] = "PORT"
    return app


def seed_notes(port: int, count: int = 20) -> None:
    status, body = http_request(port, "/api/notes?limit=500")
    if status != 200:
        raise BenchError(f"GET /api/notes answered {status}: {body[:200]!r}")
    have = len(json.loads(body)["notes"])
    for i in range(have, count):
        note = {"title": f"note {i}", "body": "benchmark note " * 8, "done": i % 3 == 0}
        status, body = http_request(
            port, "/api/notes", method="POST", body=json.dumps(note).encode()
        )
        if status != 201:
            raise BenchError(f"POST /api/notes answered {status}: {body[:200]!r}")


def init_db(db_url: str, tmp: Path) -> None:
    """Create the tables once, so that no measured run pays for it."""
    code = (
        "import os; from webapp.settings import Settings; from webapp.db import Database; "
        "Database(Settings.from_env()).create_all()"
    )
    env = dict(os.environ, **APP_PY_ENV, DATABASE_URL=db_url, LOG_LEVEL="warning")
    subprocess.run(
        [VENV_PY, "-c", code],
        cwd=str(WEBAPP),
        env=env,
        check=True,
        timeout=120,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@benchmark(
    "webapp",
    "The reference web app: requests/s",
    "examples/webapp (Starlette + SQLAlchemy, SQLite in a temporary folder, 20 notes; `LOG_LEVEL=info`: "
    "one JSON access-log line per request, written through each tool's log pipes) served by `serve.py`: "
    "**Corral** with the app's own ecosystem.toml (`--env production`; cluster mode, one shared socket, "
    "`wait_ready`), 4 instances and 1; **PM2** the way a PM2 user runs a Python server with 4 instances: "
    "fork mode (PM2's cluster mode is Node-only), each instance told to bind the same `PORT` (one binds, the "
    'others exit with "address already in use" and crash-loop), and 1 instance for a fair single-process '
    "figure; **plain `uvicorn webapp.app:app --workers 4`** from examples/webapp, for reference. "
    "`wrk -t1 -c32` for 3 s on `GET /api/health` (runs `SELECT 1`) and on `GET /api/notes` (20 notes, "
    "DB-backed) after a 1 s warm-up, keep-alive; for Corral and plain uvicorn with 4 instances also `/api/health` with "
    "`Connection: close`. All deployments run side by side, idle while another is measured, except PM2's 4 "
    "crash-looping instances, started and deleted in their turn; order: Corral 4, PM2 4, uvicorn 4, Corral 4 "
    "with `reuse_port = true`, PM2 1, Corral 1, then (full runs) Corral 1, PM2 1, PM2 4, Corral 4 again; "
    "median of the two. "
    "Daemon CPU: utime+stime of the daemon over the keep-alive measurements, per 1,000 requests (each one an "
    "access-log line to carry). The instances that answered and the restart counters are read after the load.",
)
def bench_webapp(ctx: Ctx) -> list[Row]:
    warm_apps()
    if not have_wrk():
        raise BenchError("wrk is not installed (apt-get install wrk)")
    seconds = ctx.pick(3, 2)
    close_seconds = ctx.pick(3, 2)
    paths = ("/api/health", "/api/notes")
    # Every deployment but PM2's 4 crash-looping instances runs from the start, idle while another is
    # measured, so that measurements of Corral and PM2 interleave in time (load from other work on the
    # machine drifts); PM2's 4 instances run alone, started and deleted in their turn. Full runs go back
    # over the Corral/PM2 pairs in the reverse order; the references (uvicorn, reuse_port) run once.
    plan = ["corral4", "pm2_4", "uvicorn4", "corral4_reuse_port", "pm2_1", "corral1"]
    if not ctx.quick:
        plan += ["corral1", "pm2_1", "pm2_4", "corral4"]
    instances = {
        "corral4": 4,
        "pm2_4": 4,
        "uvicorn4": 4,
        "corral4_reuse_port": 4,
        "pm2_1": 1,
        "corral1": 1,
    }
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-webapp-", dir="/tmp"))
    db_url = f"sqlite:///{tmp / 'webapp.db'}"
    logs = tmp / "logs"
    logs.mkdir()
    ports = dict(zip(instances, _distinct_ports(len(instances)), strict=True))
    rps: dict[str, dict[str, list[float]]] = {}
    serving: dict[str, int] = {}
    restarts: dict[str, int] = {}
    states: dict[str, str] = {}
    dcpu: dict[str, list[float]] = {}
    spread: dict[str, list[list[int]]] = {}

    def measure(key: str, daemon: int | None) -> None:
        port = ports[key]
        run_wrk(port, "/api/notes", 32, 1.0)
        first = key not in rps
        got = rps.setdefault(key, {})
        cpu0 = proc_stat_cpu(daemon) if daemon else 0.0
        served = 0
        for path in paths:
            res, conns = run_wrk_spread(port, path, 32, seconds)
            got.setdefault(path, []).append(res.rps)
            served += res.requests
            if conns:
                spread.setdefault(key, []).append(conns)
            if res.failures:
                ctx.note(
                    "webapp",
                    f"{key} {path}: {res.failures} failed requests (non-2xx {res.non2xx}, socket errors "
                    f"{res.connect + res.read + res.write + res.timeout})",
                )
        if daemon:
            # ms per 1,000 requests
            dcpu.setdefault(key, []).append((proc_stat_cpu(daemon) - cpu0) / max(served, 1) * 1e6)
        if first and key in ("corral4", "uvicorn4"):
            got["close"] = [run_wrk(port, "/api/health", 32, close_seconds, close=True).rps]
        serving[key] = min(serving.get(key, 99), len(answering_pids(port, "/api/health")))

    def app_state(tool: Tool, key: str) -> None:
        procs = [p for p in tool.jlist() if p.name == key]
        restarts[key] = max(restarts.get(key, 0), sum(p.restarts for p in procs))
        states[key] = ", ".join(f"{s} ×{c}" for s, c in Counter(p.status for p in procs).items())

    try:
        init_db(db_url, tmp)
        with ctx.both() as tools:
            corral, pm2 = tools
            daemons = {t.label: t.daemon_pid() for t in tools}
            progress(
                "webapp: starting Corral 4, Corral 4 reuse_port, Corral 1, PM2 1, uvicorn --workers 4"
            )
            corral_apps = [
                app
                for key in ("corral4", "corral4_reuse_port", "corral1")
                for app in corral_webapp(
                    ports[key],
                    instances[key],
                    db_url,
                    logs,
                    reuse_port=key.endswith("reuse_port"),
                    name=key,
                )
            ]
            start_file(corral, corral_apps, "webapps", "--env", "production")
            start_file(
                pm2,
                [pm2_webapp(ports["pm2_1"], 1, db_url, logs, name="pm2_1")],
                "webapp1",
                "--env",
                "production",
            )
            argv = [
                VENV_PY,
                "-m",
                "uvicorn",
                "webapp.app:app",
                "--host",
                HOST,
                "--port",
                str(ports["uvicorn4"]),
                "--workers",
                "4",
                "--no-access-log",
            ]
            env = dict(
                os.environ,
                **APP_PY_ENV,
                DATABASE_URL=db_url,
                APP_ENV="production",
                LOG_LEVEL="info",
                SHUTDOWN_TIMEOUT="8",
            )
            with Foreground(argv, env, WEBAPP, logs / "uvicorn.log") as uv:
                corral.wait_online(9, 120)
                for key in ("corral4", "corral4_reuse_port", "corral1", "pm2_1", "uvicorn4"):
                    wait_answers([ports[key]], instances[key], now(), 90)
                uv.remember()
                seed_notes(ports["corral1"])
                for key in plan:
                    progress(f"webapp: {key}")
                    if key == "pm2_4":
                        try:
                            start_file(
                                pm2,
                                [pm2_webapp(ports[key], 4, db_url, logs, name=key)],
                                "webapp4",
                                "--env",
                                "production",
                            )
                            wait_answers([ports[key]], 1, now(), 90)
                            # PM2 has no readiness for Python: let the others start (or fail)
                            time.sleep(2.0)
                            measure(key, daemons["PM2"])
                            app_state(pm2, key)
                        finally:
                            with contextlib.suppress(BenchError):
                                delete_app(pm2, key)
                    elif key.startswith("pm2"):
                        measure(key, daemons["PM2"])
                        app_state(pm2, key)
                    elif key.startswith("corral"):
                        measure(key, daemons["Corral"])
                        app_state(corral, key)
                    else:
                        measure(key, None)
                        restarts[key] = 0
        if "pm2_4" in states:
            err_log = logs / "pm2_4-error.log"
            err = err_log.read_text(errors="replace") if err_log.exists() else ""
            inuse = err.count("address already in use")
            ctx.note(
                "webapp",
                f"PM2, 4 fork instances on one port: {serving.get('pm2_4', 0)} instance answered; after each run the "
                f"processes were {states['pm2_4']} (a crash-looping process shows `online` between its crashes) with "
                f'up to {restarts.get("pm2_4", 0)} restarts ("address already in use" {inuse} times in the error '
                "log). Each failed start imports the app again, which takes CPU from the one instance that serves. "
                f"Corral, 4 instances: {states.get('corral4', '?')}, {restarts.get('corral4', '?')} restarts.",
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def r(key: str, path: str) -> float | None:
        values = rps.get(key, {}).get(path)
        return median(values) if values else None

    def d(key: str) -> float | None:
        return median(dcpu[key]) if dcpu.get(key) else None

    rows: list[Row] = []
    for path in paths:
        rows += [
            Row(
                f"`{path}` requests/s, 4 instances",
                "req/s",
                r("corral4", path),
                r("pm2_4", path),
                better="higher",
                target=1.3,
                note="PM2: 4 fork instances told to bind one port",
            ),
            Row(
                f"`{path}` requests/s, 1 instance",
                "req/s",
                r("corral1", path),
                r("pm2_1", path),
                better="higher",
                target=0.9,
            ),
        ]
    rows += [
        Row(
            "`/api/health` with `Connection: close`, 4 instances vs plain uvicorn",
            "req/s",
            r("corral4", "close"),
            r("uvicorn4", "close"),
            better="higher",
            note="PM2 column: `uvicorn --workers 4`; Corral's access log goes through the daemon, uvicorn's "
            "straight to a file",
        ),
        Row("instances answering, 4 configured", "", serving.get("corral4"), serving.get("pm2_4")),
        Row(
            "restarts during the 4-instance run", "", restarts.get("corral4"), restarts.get("pm2_4")
        ),
        Row(
            "daemon CPU per 1,000 requests, 4 instances",
            "ms",
            d("corral4"),
            d("pm2_4"),
            note="PM2: 1 instance serving",
        ),
        Row(
            "daemon CPU per 1,000 requests, 1 instance",
            "ms",
            d("corral1"),
            d("pm2_1"),
        ),
    ]
    for path in paths:
        rows.append(
            Row(
                f"`{path}` requests/s, 4 instances, Corral with `reuse_port = true`",
                "req/s",
                r("corral4_reuse_port", path),
                r("pm2_4", path),
                better="higher",
                note="one SO_REUSEPORT socket per instance; PM2: 4 fork instances, one port",
            )
        )
    for path in paths:
        rows.append(
            Row(
                f"`{path}` keep-alive requests/s, 4 instances vs plain uvicorn",
                "req/s",
                r("corral4", path),
                r("uvicorn4", path),
                better="higher",
                note="PM2 column: `uvicorn --workers 4`, which loses TCP_NODELAY (see below)",
            )
        )
    if spread:
        ctx.note(
            "webapp",
            "How wrk's 32 keep-alive connections were spread over the serving processes (`ss -tnp` halfway "
            "through each measurement; /api/health, /api/notes, per round): "
            + "; ".join(f"{k} {' '.join(str(c) for c in v)}" for k, v in spread.items())
            + ". A keep-alive connection stays with the instance that accepted it, and on a shared socket "
            "an instance that wakes up accepts every pending connection at once (asyncio's accept loop): a burst "
            "of new connections can land on one or two instances (see bench/analysis/cluster.md).",
        )
    for key in ("corral4", "corral4_reuse_port", "corral1", "pm2_4", "pm2_1", "uvicorn4"):
        if key in rps:
            ctx.note(
                "webapp",
                f"{key}: "
                + ", ".join(
                    f"{'`/api/health` Connection: close' if p == 'close' else p} "
                    + " and ".join(f"{x:,.0f}/s" for x in v)
                    for p, v in rps[key].items()
                ),
            )
    ctx.note(
        "webapp",
        "Plain `uvicorn --workers 4` binds the socket in its supervisor without `IPPROTO_TCP`, so asyncio leaves "
        "Nagle's algorithm on for every connection and each keep-alive response after the first waits ~40 ms for "
        "the client's delayed ACK (Kludex/uvicorn#3149): its keep-alive figures measure that, not the app. "
        "`serve.py` builds the inherited socket with `socket.socket(fileno=fd)` and is not affected; the "
        "`Connection: close` row compares the two without it.",
    )
    return point_to_analysis(ctx, "webapp", rows)


# ---------------------------------------------------------------- 4. runtime start


@benchmark(
    "runtime_start",
    "Container start: runtime until 4 instances answer",
    "`corral-runtime ecosystem.toml --only webapp --env production` (a temporary copy of examples/webapp's "
    "ecosystem.toml: free port, cwd examples/webapp, logs and a fresh SQLite database in a temporary folder; "
    "cluster mode, 4 instances on one shared socket, `wait_ready`) vs `pm2-runtime ecosystem.json --env "
    'production` with the same Python app as PM2 runs it: fork mode, 4 instances, `increment_var = "PORT"` '
    "(4 ports), same interpreter and settings. From launching the runtime until `GET /api/health` has "
    "answered 200 from 4 different pids (8 concurrent pollers, new connection per request; for PM2, from each "
    "of the 4 ports). Trials alternate between the tools (Corral, PM2, PM2, Corral); median. Also: the first "
    "200; the CPU time (utime+stime) of the runtime process itself at that moment, which does not move with "
    "other load on the machine; and, in the first Corral trial, when `corral healthcheck` (polled from then "
    "on) first exits 0. A poller whose answer came from an instance already seen waits 50 ms before the next "
    "request (5 ms otherwise, 10 ms after a refusal), so that polling the shared socket does not load the "
    "instances still starting.",
)
def bench_runtime_start(ctx: Ctx) -> list[Row]:
    warm_apps()
    trials = ctx.pick(4, 1)
    keys = ("all", "first", "rcpu")
    res: dict[str, dict[str, list[float]]] = {
        lbl: {k: [] for k in keys} for lbl in ("Corral", "PM2")
    }
    t_hc: list[float] = []
    for i in range(trials):
        order = ["Corral", "PM2"] if i % 2 == 0 else ["PM2", "Corral"]
        for label in order:
            out = _runtime_trial(label, healthcheck=label == "Corral" and not t_hc)
            for k in keys:
                res[label][k].append(out[k])
            if out.get("hc") is not None:
                t_hc.append(out["hc"])
    for label in ("Corral", "PM2"):
        r = res[label]
        ctx.note(
            "runtime_start",
            f"{label}: launch → 4 answered (s): "
            + ", ".join(f"{t:.2f}" for t in r["all"])
            + "; first answer (s): "
            + ", ".join(f"{t:.2f}" for t in r["first"])
            + "; runtime CPU (s): "
            + ", ".join(f"{t:.2f}" for t in r["rcpu"]),
        )
    if t_hc:
        ctx.note(
            "runtime_start",
            f'Corral: launch → `corral healthcheck` exits 0: {t_hc[0]:.2f} s. Until then it answers "health '
            'starting": the app\'s `[apps.health]` probe (`interval = "10s"`, `start_period = "10s"`) has '
            "not run yet.",
        )
    c, p = res["Corral"], res["PM2"]
    rows = [
        Row(
            "launch → all 4 instances answered `/api/health`",
            "s",
            median(c["all"]),
            median(p["all"]),
            target=1.0,
        ),
        Row("launch → first answer", "s", median(c["first"]), median(p["first"])),
        Row(
            "CPU of the runtime process until all 4 answered",
            "s",
            median(c["rcpu"]),
            median(p["rcpu"]),
        ),
        Row(
            "launch → `corral healthcheck` exits 0",
            "s",
            t_hc[0] if t_hc else None,
            None,
            note="first trial; PM2 has no equivalent",
        ),
    ]
    return point_to_analysis(ctx, "runtime_start", rows)


def _runtime_trial(label: str, healthcheck: bool = False) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-cluster-rt-{label.lower()}-", dir="/tmp"))
    try:
        logs = tmp / "logs"
        logs.mkdir()
        home = tmp / "home"
        home.mkdir()
        db_url = f"sqlite:///{tmp / 'webapp.db'}"
        init_db(db_url, tmp)
        env = {k: v for k, v in os.environ.items() if k not in ("CORRAL_HOME", "PM2_HOME")}
        env["NO_COLOR"] = "1"
        if label == "Corral":
            port = free_port()
            eco = tmp / "ecosystem.toml"
            eco.write_text(dump_apps_toml(corral_webapp(port, 4, db_url, logs)))
            env["CORRAL_HOME"] = str(home)
            env.update(Corral.python_env())
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            argv = [*corral_runtime_argv(), str(eco), "--only", "webapp", "--env", "production"]
            ports = [port]
        else:
            port = free_port(4)
            eco = tmp / "ecosystem.json"
            eco.write_text(
                json.dumps({"apps": [pm2_webapp(port, 4, db_url, logs, increment=True)]}, indent=2)
            )
            env["PM2_HOME"] = str(home)
            argv = [str(PM2_RUNTIME), str(eco), "--env", "production"]
            ports = [port + k for k in range(4)]
        out: dict[str, Any] = {}
        with Foreground(argv, env, tmp, tmp / "runtime.log") as fg:
            try:
                ans = wait_answers(
                    ports,
                    4,
                    fg.t_launch,
                    90,
                    alive=lambda: fg.proc is not None and fg.proc.poll() is None,
                )
            except BenchError as e:
                tail = (tmp / "runtime.log").read_text(errors="replace")[-800:]
                raise BenchError(f"{label}: {e}; runtime output: {tail}") from e
            out["rcpu"] = proc_stat_cpu(fg.pid)
            out["all"] = ans.t_all
            out["first"] = ans.t_first
            fg.remember()
            if healthcheck:
                cli = [*Corral().argv(), "healthcheck"]
                deadline = now() + 30
                while now() < deadline:
                    rc = subprocess.run(
                        cli,
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        timeout=30,
                        check=False,
                    ).returncode
                    if rc == 0:
                        out["hc"] = now() - fg.t_launch
                        break
                    time.sleep(0.05)
            fg.remember()
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
