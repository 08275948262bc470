"""Instances left running by a daemon that died (SIGKILL, OOM): found and stopped.

Every instance is started with ``CORRAL_HOME`` and ``CORRAL_ID`` in its
environment.  A daemon starting on a home looks, once, for processes that
carry this home's ``CORRAL_HOME`` and a ``CORRAL_ID`` but do not descend from
any live daemon of that home: the previous daemon's instances (and their
children).  Resurrecting without stopping them would run every app twice.

Reading other processes' environments needs the same uid (or root), which is
exactly the set of processes a daemon can have started.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Leftover:
    pid: int
    pgid: int
    corral_id: str


def _environ(pid: int) -> dict[bytes, bytes]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read(1 << 20)
    except OSError:
        return {}
    out: dict[bytes, bytes] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key] = value
    return out


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == b"Z":
        return None
    return int(fields[1])


def find(home: str, daemon_pid: int | None = None) -> list[Leftover]:
    """Processes of this home's apps that no live daemon (``daemon_pid``, default this
    process) is the ancestor of."""
    me = os.getpid() if daemon_pid is None else daemon_pid
    home_b = os.fsencode(os.path.abspath(home))
    parents: dict[int, int] = {}
    candidates: list[Leftover] = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        ppid = _ppid(pid)
        if ppid is None:
            continue
        parents[pid] = ppid
        if pid == me:
            continue
        env = _environ(pid)
        if env.get(b"CORRAL_HOME") != home_b or b"CORRAL_ID" not in env:
            continue
        try:
            pgid = os.getpgid(pid)
        except OSError:
            continue
        candidates.append(Leftover(pid, pgid, env[b"CORRAL_ID"].decode(errors="replace")))

    def under_daemon(pid: int) -> bool:
        for _ in range(256):
            if pid == me:
                return True
            parent = parents.get(pid)
            if parent is None or parent <= 1:
                return False
            pid = parent
        return False

    return [c for c in candidates if not under_daemon(c.pid)]


def stop(found: list[Leftover], grace: float = 5.0, log: Callable[[str], None] | None = None) -> int:
    """SIGTERM each leftover's process group (and the process), SIGKILL what is left after
    ``grace`` seconds.  Returns how many processes were signalled."""
    if not found:
        return 0
    if log is not None:
        ids = sorted({f.corral_id for f in found})
        log(f"[daemon] stopping {len(found)} processes left running by a previous daemon (instances {', '.join(ids)})")
    own_group = os.getpgid(0)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for f in found:
            if f.pgid == own_group:
                continue
            for kill, target in ((os.killpg, f.pgid), (os.kill, f.pid)):
                if target > 1:  # never 0 or 1 (our own group, init)
                    try:
                        kill(target, sig)
                    except (ProcessLookupError, PermissionError):
                        pass
        if sig == signal.SIGKILL:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(f.pid) for f in found):
            time.sleep(0.05)
    return len(found)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _ppid(pid) is not None
