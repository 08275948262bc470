"""The daemon's optional HTTP endpoint: /healthz, /readyz and /metrics.

Off unless configured (``CORRAL_HTTP=127.0.0.1:9615``, ``[http] listen`` in
``$CORRAL_HOME/corral.toml``, or ``corral-runtime --health-port``); binds to
127.0.0.1 unless told otherwise.  Every endpoint is read-only.  A tiny HTTP/1.1
server on asyncio streams: no web framework is loaded for three GET routes.

Hardening (see docs/security.md): the ``Host`` header must name the bound
address, localhost or an IP literal (or a name in ``[http] allowed_hosts``),
so a web page cannot read ``/metrics`` through DNS rebinding; at most
MAX_CONNECTIONS connections are served at once (more are closed at once) and
a request head must arrive within HEAD_TIMEOUT; a failing ``accept()`` (out of
file descriptors) is reported once a minute with a count, never as one
traceback per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import time
from collections.abc import Callable
from typing import Any, Protocol


class Daemon(Protocol):
    """What the endpoint reads of the daemon (a protocol: no import of daemon.server)."""

    sup: Any
    monitor: Any
    home: Any
    events: Any
    started: float

    def log(self, message: str) -> None: ...

    def health_report(self, names: list[str]) -> dict[str, Any]: ...

MAX_CONNECTIONS = 64
HEAD_TIMEOUT = 5.0
MAX_HEAD = 16 * 1024
ACCEPT_REPORT_INTERVAL = 60.0
STATES = ("launching", "online", "stopping", "stopped", "errored", "waiting restart")


def parse_listen(value: str) -> tuple[str, int]:
    value = value.strip()
    if value.isdigit():
        return "127.0.0.1", int(value)
    host, _, port = value.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"expected PORT or HOST:PORT for the HTTP endpoint, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def settings(home_root: str, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The [http] settings: env CORRAL_HTTP wins over corral.toml."""
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    path = os.path.join(home_root, "corral.toml")
    if os.path.exists(path):
        import tomllib

        with open(path, "rb") as f:
            data = tomllib.load(f)
        http = data.get("http") or {}
        if http.get("listen"):
            out["listen"] = str(http["listen"])
        out["metrics"] = bool(http.get("metrics", True))
        if http.get("allowed_hosts"):
            out["allowed_hosts"] = [str(h) for h in http["allowed_hosts"]]
    if env.get("CORRAL_HTTP"):
        out["listen"] = env["CORRAL_HTTP"]
    return out


def _esc(v: object) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics(daemon: Daemon) -> str:
    out: list[str] = []

    def family(name: str, kind: str, doc: str) -> None:
        out.append(f"# HELP {name} {doc}")
        out.append(f"# TYPE {name} {kind}")

    instances = sorted(daemon.sup.instances(), key=lambda i: i.id)
    now = time.time()

    def labels(inst: Any, **extra: object) -> str:
        base = {"app": inst.name, "id": inst.id, "instance": inst.index, "namespace": inst.app.spec.namespace, **extra}
        return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in base.items()) + "}"

    family("corral_process_status", "gauge", "1 for the state the process is in (launching, online, stopping, stopped, errored, waiting restart).")
    for inst in instances:
        for st in STATES:
            out.append(f"corral_process_status{labels(inst, state=st)} {1 if str(inst.state.status) == st else 0}")
    family("corral_process_up", "gauge", "1 when the process is online.")
    for inst in instances:
        out.append(f"corral_process_up{labels(inst)} {1 if str(inst.state.status) == 'online' else 0}")
    family("corral_process_restarts_total", "counter", "Restarts of the process since it was started or reset.")
    for inst in instances:
        out.append(f"corral_process_restarts_total{labels(inst)} {inst.state.restarts}")
    family("corral_process_uptime_seconds", "gauge", "Seconds since the current process started.")
    for inst in instances:
        up = now - inst.started_wall if inst.child is not None and inst.started_wall else 0
        out.append(f"corral_process_uptime_seconds{labels(inst)} {up:.3f}")
    family("corral_process_cpu_seconds_total", "counter", "CPU seconds of the process tree (the process and its descendants).")
    for inst in instances:
        if inst.usage is not None and inst.child is not None:
            out.append(f"corral_process_cpu_seconds_total{labels(inst)} {inst.usage.cpu_seconds:.3f}")
    family("corral_process_memory_bytes", "gauge", "Memory of the process tree: rss, and pss where the kernel provides it.")
    for inst in instances:
        u = inst.usage
        if u is not None and inst.child is not None:
            out.append(f"corral_process_memory_bytes{labels(inst, kind='rss')} {u.rss}")
            if u.pss is not None:
                out.append(f"corral_process_memory_bytes{labels(inst, kind='pss')} {u.pss}")
    family("corral_health_status", "gauge", "1 when the app's (or instance's) health probe passes, 0 when not.")
    lat: list[str] = []
    for app in daemon.sup.apps.values():
        if not app.spec.health:
            continue
        holders: list[Any] = [app] if app.listeners else list(app.instances)
        for h in holders:
            st = h.health
            if st is None:
                continue
            who = f'app="{_esc(app.name)}"' + ("" if h is app else f',id="{h.id}"')
            out.append(f"corral_health_status{{{who}}} {1 if st.status == 'healthy' else 0}")
            if st.last_latency_ms is not None:
                lat.append(f"corral_probe_latency_seconds{{{who}}} {st.last_latency_ms / 1000:.6f}")
    family("corral_probe_latency_seconds", "gauge", "Duration of the latest health probe.")
    out.extend(lat)
    family("corral_daemon_memory_bytes", "gauge", "RSS of the Corral daemon itself.")
    from corral.daemon.sampler import read_stat

    me = read_stat(os.getpid())
    out.append(f"corral_daemon_memory_bytes {me.rss if me else 0}")
    family("corral_daemon_uptime_seconds", "gauge", "Seconds since the daemon started.")
    out.append(f"corral_daemon_uptime_seconds {now - daemon.started:.3f}")
    counters: str = daemon.events.counters.prometheus()
    return "\n".join(out) + "\n" + counters


def host_name(value: str) -> str:
    """The host part of a Host header, lower case, without port or IPv6 brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def host_allowed(header: str | None, bound: str, extra: list[str] | tuple[str, ...] = ()) -> bool:
    """May a request with this Host header be answered?  The bound address, localhost,
    any IP literal (DNS rebinding needs a name), or a name the operator listed."""
    if header is None:
        return True  # HTTP/1.0 tools send none; browsers always do
    name = host_name(header)
    if name in ("localhost", host_name(bound)) or name in {host_name(h) for h in extra}:
        return True
    if name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def header(head: bytes, name: bytes) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip().decode("latin-1")
    return None


class AcceptErrors:
    """A loop exception handler that reports failing accept() calls (EMFILE...) once per
    interval with a count, and passes every other error on to the previous handler."""

    MESSAGE = "socket.accept() out of system resource"

    def __init__(self, loop: asyncio.AbstractEventLoop, report: Callable[[str], None], interval: float = ACCEPT_REPORT_INTERVAL) -> None:
        self.loop = loop
        self.report = report
        self.interval = interval
        self.previous = loop.get_exception_handler()
        self.count = 0
        self.held = 0
        self.next_at = float("-inf")
        loop.set_exception_handler(self)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != self.MESSAGE:
            if self.previous is not None:
                self.previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        self.count += 1
        now = loop.time()
        if now < self.next_at:
            self.held += 1
            return
        self.next_at = now + self.interval
        exc = context.get("exception")
        more = f" ({self.held} more since the last report)" if self.held else ""
        self.held = 0
        self.report(f"[daemon] cannot accept a connection: {getattr(exc, 'strerror', None) or exc}{more}; retrying")


class HttpEndpoint:
    def __init__(self, daemon: Daemon, host: str, port: int, *, with_metrics: bool = True) -> None:
        self.daemon = daemon
        self.host = host
        self.port = port
        self.with_metrics = with_metrics
        self.server: asyncio.AbstractServer | None = None
        self.allowed_hosts: list[str] = []
        self.active = 0
        self.refused = 0
        self.accept_errors: AcceptErrors | None = None

    async def start(self) -> None:
        with contextlib.suppress(Exception):
            self.allowed_hosts = settings(str(self.daemon.home.root)).get("allowed_hosts", [])
        loop = asyncio.get_running_loop()
        if not isinstance(loop.get_exception_handler(), AcceptErrors):
            self.accept_errors = AcceptErrors(loop, self.daemon.log)
        self.server = await asyncio.start_server(self.handle, self.host, self.port, limit=MAX_HEAD)
        sock = self.server.sockets[0]
        self.port = sock.getsockname()[1]
        self.daemon.log(f"[daemon] HTTP endpoint on http://{self.host}:{self.port} (/healthz /readyz{' /metrics' if self.with_metrics else ''})")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.active >= MAX_CONNECTIONS:
            self.refused += 1
            writer.transport.abort()  # over the cap: the fd is freed at once
            return
        self.active += 1
        try:
            await self._serve(reader, writer)
        finally:
            self.active -= 1

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split()
            method, path = (parts[0], parts[1]) if len(parts) >= 2 else ("", "")
            path = path.split("?", 1)[0]
            if not host_allowed(header(head, b"host"), self.host, self.allowed_hosts):
                status, ctype, body = 403, "application/json", b'{"error": "Host not allowed: use the address the endpoint is bound to, or list the name in [http] allowed_hosts"}'
            else:
                status, ctype, body = await self.route(method, path)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, TimeoutError, ConnectionError):
            writer.transport.abort()
            return
        except Exception as e:
            status, ctype, body = 500, "application/json", json.dumps({"error": str(e)}).encode()
        reason = {200: "OK", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable", 500: "Internal Server Error"}.get(status, "")
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        try:
            await asyncio.wait_for(writer.drain(), HEAD_TIMEOUT)
        except (ConnectionError, TimeoutError):
            writer.transport.abort()  # a reader that does not read: let it go
            return
        writer.close()

    async def route(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "application/json", b'{"error": "read-only endpoint: GET only"}'
        d = self.daemon
        if path == "/healthz":
            # liveness of the manager and its apps: nothing errored
            apps = []
            ok = True
            for app in d.sup.apps.values():
                errored = [i.id for i in app.instances if str(i.state.status) == "errored"]
                apps.append({"name": app.name, "errored": errored, "statuses": [str(i.state.status) for i in app.instances]})
                ok = ok and not errored
            body = {"status": "ok" if ok else "error", "daemon": {"pid": os.getpid(), "uptime": time.time() - d.started}, "apps": apps}
            return (200 if ok else 503), "application/json", json.dumps(body).encode()
        if path == "/readyz":
            result = d.health_report([])
            ready = bool(result["healthy"] and result["apps"])
            body = {"status": "ready" if ready else "not ready", **result}
            return (200 if ready else 503), "application/json", json.dumps(body).encode()
        if path == "/metrics" and self.with_metrics:
            d.monitor.tick()
            return 200, "text/plain; version=0.0.4; charset=utf-8", metrics(d).encode()
        return 404, "application/json", b'{"error": "not found: try /healthz, /readyz or /metrics"}'

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.accept_errors is not None and self.accept_errors.loop.get_exception_handler() is self.accept_errors:
            self.accept_errors.loop.set_exception_handler(self.accept_errors.previous)
