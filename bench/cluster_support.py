"""Cluster-mode benchmarks: reload under load, shared-socket throughput, the reference web app, runtime start.

Shared helpers of the cluster-mode benchmarks, one module each (bench_reload.py, bench_throughput.py,
bench_webapp.py, bench_runtime_start.py), registered with bench/run.py (its EXTENSIONS):

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
    now,
    pid_alive,
    proc_cmdline,
    proc_descendants,
    wait_until,
)
from run import Ctx, Row

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
            [VENV_PY, "-c", "import corral.daemon.runtime, corral.cli, corral.daemon.server"],
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

    With another ``name``, the production app and its one-shot ``migrate`` (which it
    depends on), both renamed (several deployments side by side).
    """
    apps = webapp_source()
    if name != "webapp":
        renamed = {"webapp": name, "migrate": f"{name}-migrate"}
        apps = [a for a in apps if a["name"] in renamed]
        for app in apps:
            deps = app.get("depends_on")
            if isinstance(deps, list):
                app["depends_on"] = [renamed.get(d, d) for d in deps]
            elif isinstance(deps, dict):
                app["depends_on"] = {renamed.get(d, d): c for d, c in deps.items()}
            if app["name"] == "migrate":
                app["name"] = renamed["migrate"]
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
