"""One closed-loop HTTP load client for the tests and the benchmarks.

Each client thread connects, sends one request (optionally ``send_delay`` after
connecting, as over a real network or after a TLS handshake), reads the whole
reply, closes, and starts again: a new connection per request, so every request
can land on any instance behind a shared listening socket. Bounded in time and
count whatever happens to ``stop()``.

Every failure counts: refused or reset connections, timeouts, empty replies,
non-200 answers and bodies the ``pid_of`` check rejects. Successes are counted
by the pid that answered.

Standard library only, so ``bench/`` imports it as well (it puts the repository
root on ``sys.path``).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Address = tuple[str, int] | str  # TCP (host, port) or a unix socket path
MAX_REPLY = 4 << 20


@dataclass
class Reply:
    status: int  # 0 for an empty or garbled reply
    headers: dict[str, str]
    body: bytes


def http_request(
    address: Address | int,
    path: str = "/",
    *,
    timeout: float = 5.0,
    send_delay: float = 0.0,
    method: str = "GET",
    body: bytes = b"",
    content_type: str = "application/json",
    host: str = "localhost",
) -> Reply:
    """One request on a new connection (``Connection: close``).

    ``address`` is ``(host, port)``, a port on 127.0.0.1 or a unix socket path.
    Raises OSError (refused, reset, timeout) as the socket does.
    """
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
    if body:
        head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    with connect(address, timeout) as s:
        if send_delay:
            time.sleep(send_delay)
        s.sendall(head.encode() + b"\r\n" + body)
        chunks: list[bytes] = []
        size = 0
        while size < MAX_REPLY:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    return parse_reply(b"".join(chunks))


def connect(address: Address | int, timeout: float) -> socket.socket:
    """A connected stream socket to (host, port), a port on 127.0.0.1, or a unix socket path."""
    if isinstance(address, int):
        address = ("127.0.0.1", address)
    if isinstance(address, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(address)
        except OSError:
            s.close()
            raise
        return s
    return socket.create_connection(address, timeout=timeout)


def parse_reply(data: bytes) -> Reply:
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        rest = dechunk(rest)
    return Reply(status, headers, rest)


def dechunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return bytes(out)


def json_pid(body: bytes) -> int:
    """The answering pid from a JSON body ``{"pid": N, ...}``; ValueError otherwise."""
    try:
        return int(json.loads(body)["pid"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"no pid in {body[:200]!r}") from e


def classify(exc: BaseException) -> str:
    """A short kind for a failed request: refused, reset, timeout, error N."""
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "reset"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError):
        return f"error {exc.errno}"
    return type(exc).__name__


@dataclass
class ClientStats:
    """What one client thread saw (only that thread writes it)."""

    ok: int = 0
    pids: Counter[int] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


class Load:
    """Closed-loop clients, one thread each, until stopped (bounded).

    ``send_delays`` has one entry per client thread (0.0: send at once).
    ``pid_of(body)`` returns the answering pid or raises ValueError for a bad body.
    Used as a context manager it waits until ``served`` requests succeeded and
    fails if any failed before that (``served=0``: do not wait).
    """

    def __init__(
        self,
        address: Address | int,
        path: str = "/",
        *,
        send_delays: Sequence[float] = (0.0,),
        pid_of: Callable[[bytes], int] = json_pid,
        timeout: float = 10.0,
        max_seconds: float = 120.0,
        max_requests: int = 100_000,
        served: int = 5,
        keep_failures: int = 50,
    ) -> None:
        self.address: Address = ("127.0.0.1", address) if isinstance(address, int) else address
        self.path = path
        self.pid_of = pid_of
        self.timeout = timeout
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.served = served
        self.keep_failures = keep_failures
        self.t0 = 0.0
        self.t1 = 0.0
        self._delays = list(send_delays)
        self._stats = [ClientStats() for _ in self._delays]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(len(self._delays))]

    # ---------------------------------------------------------------- the figures

    @property
    def ok(self) -> int:
        return sum(s.ok for s in self._stats)

    @property
    def pids(self) -> Counter[int]:
        out: Counter[int] = Counter()
        for s in self._stats:
            out.update(s.pids)
        return out

    @property
    def kinds(self) -> Counter[str]:
        """Failures by kind (refused, reset, timeout, HTTP 503, bad body...)."""
        out: Counter[str] = Counter()
        for s in self._stats:
            out.update(s.kinds)
        return out

    @property
    def failures(self) -> list[str]:
        """The first failures of each client, with their time since the start."""
        return [f for s in self._stats for f in s.failures]

    @property
    def failed(self) -> int:
        return sum(self.kinds.values())

    @property
    def latencies(self) -> list[float]:
        return [x for s in self._stats for x in s.latencies]

    # ---------------------------------------------------------------- running

    def start(self) -> None:
        self.t0 = time.monotonic()
        for t in self._threads:
            t.start()

    def wait_served(self, timeout: float = 10.0) -> None:
        """Wait until ``served`` requests succeeded; fail if one failed first."""
        deadline = time.monotonic() + timeout
        while self.ok < self.served and not self.failed:
            if time.monotonic() > deadline:
                raise AssertionError(f"the client was not served within {timeout} s")
            time.sleep(0.01)
        assert not self.failed, self.failures[:5]

    def more(self, n: int = 10, timeout: float = 10.0) -> None:
        """Wait until n more requests succeeded (or one failed)."""
        target = self.ok + n
        failed = self.failed
        deadline = time.monotonic() + timeout
        while self.ok < target and self.failed == failed:
            if time.monotonic() > deadline:
                raise AssertionError(f"{n} more answers did not come within {timeout} s")
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(20)
        if not self.t1:
            self.t1 = time.monotonic()
        assert not any(t.is_alive() for t in self._threads), "a client thread did not end"

    def __enter__(self) -> Load:
        self.start()
        if self.served:
            try:
                self.wait_served()
            except BaseException:
                self.stop()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _fail(self, st: ClientStats, kind: str, detail: str, t0: float) -> None:
        st.kinds[kind] += 1
        if len(st.failures) < self.keep_failures:
            st.failures.append(f"{kind} at +{t0 - self.t0:.2f}s: {detail}")

    def _run(self, i: int) -> None:
        st = self._stats[i]
        delay = self._delays[i]
        deadline = time.monotonic() + self.max_seconds
        for _ in range(self.max_requests):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            t0 = time.monotonic()
            try:
                reply = http_request(self.address, self.path, timeout=self.timeout, send_delay=delay)
            except OSError as e:
                self._fail(st, classify(e), f"{type(e).__name__}: {e}", t0)
                time.sleep(0.005)
                continue
            st.latencies.append(time.monotonic() - t0)
            if reply.status != 200:
                kind = "empty reply" if reply.status == 0 else f"HTTP {reply.status}"
                self._fail(st, kind, repr(reply.body[:200]), t0)
                continue
            try:
                pid = self.pid_of(reply.body)
            except ValueError as e:
                self._fail(st, "bad body", str(e), t0)
                continue
            st.ok += 1
            st.pids[pid] += 1
