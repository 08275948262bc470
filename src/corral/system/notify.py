"""The sd_notify protocol, daemon side: one datagram socket per instance.

Each instance gets its own ``NOTIFY_SOCKET`` (an abstract Unix datagram
socket, so any uid can reach it and no file is left behind), which lets apps
and libraries that already speak systemd's protocol work unchanged:
``READY=1``, ``STATUS=...``, ``STOPPING=1``, ``WATCHDOG=1``, ``MAINPID=``.

Abstract sockets are visible to every local user (``/proc/net/unix``), so
foreign traffic is rejected cheaply, in order:

1. the sender's uid (from the kernel, SO_PASSCRED) must be one the instance
   can run as: no ``/proc`` work at all for anyone else;
2. the sender must descend from the daemon: its parent chain is walked
   (``/proc/<pid>/stat``, a few reads), never a scan of every process;
3. only then does the owner check that it is in the instance's own tree.

Rejected datagrams are counted; the report of them (``on_ignored``) is rate
limited to one line per interval, with the count of the ones not reported.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable, Collection

MAX_DATAGRAM = 4096
MAX_DEPTH = 64  # parent chain walked at most this far (pid 1 is reached long before)
REPORT_INTERVAL = 60.0
_CRED = struct.Struct("3i")


class RateLimit:
    """At most one report per ``interval`` seconds; counts what it held back (fake-clock testable)."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.next_at = float("-inf")
        self.held = 0

    def allow(self) -> tuple[bool, int]:
        """(may report now, how many were held back since the last report)."""
        now = self.clock()
        if now >= self.next_at:
            self.next_at = now + self.interval
            held, self.held = self.held, 0
            return True, held
        self.held += 1
        return False, 0


def parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return int(fields[1])
    except (IndexError, ValueError):
        return None


def descends_from(pid: int, ancestor: int, max_depth: int = MAX_DEPTH) -> bool:
    """Is ``ancestor`` the process itself or on its parent chain?  A few /proc reads."""
    current: int | None = pid
    for _ in range(max_depth):
        if current is None or current <= 0:
            return False
        if current == ancestor:
            return True
        if current == 1:
            return False
        current = parent_of(current)
    return False


def log_to_stdout(message: str) -> None:
    """The default report of ignored datagrams: a line in the daemon's log (its stdout)."""
    import sys

    try:
        sys.stdout.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} [notify] {message}\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass


def default_uids() -> frozenset[int] | None:
    """Who may send: a daemon that is not root runs every app as itself; a root daemon's
    apps may run as anyone (the supervisor narrows it with the app's uid)."""
    return None if os.geteuid() == 0 else frozenset({os.getuid()})


class NotifySocket:
    def __init__(
        self,
        address: str,
        on_message: Callable[[int, dict[str, str]], None],
        *,
        uids: Collection[int] | None = None,
        on_ignored: Callable[[str], None] | None = log_to_stdout,
        ancestor: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """address: '@name' for the abstract namespace, or a path.  uids: the uids a
        sender may have (default: see default_uids).  ancestor: every sender must
        descend from it (default: this process, the daemon)."""
        self.address = address
        self.on_message = on_message
        self.on_ignored = on_ignored
        self.uids = frozenset(uids) if uids is not None else default_uids()
        self.ancestor = os.getpid() if ancestor is None else ancestor
        self.ignored = 0
        self.limit = RateLimit(REPORT_INTERVAL, clock)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        bind_to = "\0" + address[1:] if address.startswith("@") else address
        sock.bind(bind_to)
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def on_readable(self) -> None:
        for _ in range(64):
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(MAX_DATAGRAM, socket.CMSG_SPACE(_CRED.size))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            pid = uid = None
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(payload) >= _CRED.size:
                    pid, uid, _gid = _CRED.unpack(payload[: _CRED.size])
            if pid is None or uid is None:
                continue
            if self.uids is not None and uid not in self.uids:
                self._ignore(pid, uid, "from a uid the app does not run as")
                continue
            if not descends_from(pid, self.ancestor):
                self._ignore(pid, uid, "from outside the daemon's process tree")
                continue
            self.on_message(pid, parse(data))

    def _ignore(self, pid: int, uid: int, why: str) -> None:
        self.ignored += 1
        ok, held = self.limit.allow()
        if ok and self.on_ignored is not None:
            more = f" ({held} more ignored since the last report)" if held else ""
            self.on_ignored(f"ignored a notify datagram from pid {pid} (uid {uid}), {why}{more}")

    def close(self) -> None:
        self.sock.close()
        if not self.address.startswith("@"):
            try:
                os.unlink(self.address)
            except OSError:
                pass


def parse(data: bytes) -> dict[str, str]:
    """``KEY=value`` lines; unknown keys are kept for the caller to ignore."""
    out: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").split("\n"):
        key, sep, value = line.partition("=")
        if sep and key:
            out[key.strip()] = value
    return out
