"""Resource sampling for whole process trees, from /proc, once per tick for every app.

Each tick walks only the instances' own trees: ``/proc/<pid>/stat`` of each
member and its ``task/<tid>/children`` (every thread's, so a child forked from
a worker thread counts), then sums CPU time and RSS over each instance's tree
(the instance and all its descendants).  Where the kernel has no ``children``
files (CONFIG_PROC_CHILDREN) it falls back to reading every process's stat.
Files are read with ``os.open``/``os.read``: no file objects per read.  PSS
(from ``smaps_rollup``) is read only for the trees that need it, so shared
pages are not counted N times against a memory limit.

Each sample also goes into the instance's :class:`~corral.daemon.usage_history.UsageHistory`
(the last 120 samples, and one point per 10 s for an hour).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from corral.daemon.usage_history import FINE, UsageHistory

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")
HISTORY = FINE


@dataclass
class ProcStat:
    pid: int
    ppid: int
    cpu_ticks: int
    rss: int
    threads: int = 1


@dataclass
class Usage:
    time: float
    cpu_percent: float
    rss: int
    pss: int | None
    pids: int
    cpu_seconds: float = 0.0

    @property
    def memory(self) -> int:
        return self.pss if self.pss is not None else self.rss


@dataclass
class TreeSampler:
    """Keeps the previous CPU total per instance to turn ticks into a percentage."""

    last: dict[int, tuple[float, int]] = field(default_factory=dict)
    history: dict[int, UsageHistory] = field(default_factory=dict)


def _read(path: str, size: int = 4096) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, size)
        if len(data) == size:  # rare: a long children list
            chunks = [data]
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            data = b"".join(chunks)
        return data
    except OSError:
        return None
    finally:
        os.close(fd)


def read_stat(pid: int) -> ProcStat | None:
    data = _read(f"/proc/{pid}/stat", 1024)
    if not data:
        return None
    # the command name may contain spaces and parentheses: split after the last ')'
    rest = data[data.rfind(b")") + 2 :].split()
    try:
        ppid = int(rest[1])
        utime, stime = int(rest[11]), int(rest[12])
        cutime, cstime = int(rest[13]), int(rest[14])
        threads = int(rest[17])
        rss_pages = int(rest[21])
    except (IndexError, ValueError):
        return None
    return ProcStat(pid, ppid, utime + stime + cutime + cstime, rss_pages * PAGE, threads)


def children_files() -> bool:
    """Whether the kernel lists a task's children (/proc/<pid>/task/<tid>/children)."""
    me = os.getpid()
    return os.path.exists(f"/proc/{me}/task/{me}/children")


def read_children(pid: int, threads: int = 1) -> list[int]:
    """The children of every thread of pid."""
    tids: Iterable[str]
    if threads <= 1:
        tids = (str(pid),)
    else:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return []
    out: list[int] = []
    for tid in tids:
        data = _read(f"/proc/{pid}/task/{tid}/children")
        if data:
            out.extend(int(x) for x in data.split())
    return out


def snapshot_trees(roots: Iterable[int]) -> tuple[dict[int, ProcStat], dict[int, list[int]]]:
    """The stats and the children map of the trees under roots only (no scan of every process)."""
    procs: dict[int, ProcStat] = {}
    kids: dict[int, list[int]] = {}
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid in procs:
            continue
        st = read_stat(pid)
        if st is None:
            continue
        procs[pid] = st
        below = read_children(pid, st.threads)
        if below:
            kids[pid] = below
            stack.extend(below)
    return procs, kids


def snapshot() -> dict[int, ProcStat]:
    procs: dict[int, ProcStat] = {}
    try:
        entries = os.scandir("/proc")
    except OSError:
        return procs
    with entries:
        for entry in entries:
            name = entry.name
            if name.isdigit():
                st = read_stat(int(name))
                if st is not None:
                    procs[st.pid] = st
    return procs


def children_map(procs: dict[int, ProcStat]) -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for st in procs.values():
        kids.setdefault(st.ppid, []).append(st.pid)
    return kids


def tree(root: int, kids: dict[int, list[int]]) -> list[int]:
    out = [root]
    i = 0
    while i < len(out):
        out.extend(kids.get(out[i], ()))
        i += 1
    return out


def read_pss(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def tree_pss(root: int, kids: dict[int, list[int]]) -> int | None:
    """PSS of a whole tree, or None if a member's smaps_rollup cannot be read."""
    total = 0
    for pid in tree(root, kids):
        value = read_pss(pid)
        if value is None:
            return None
        total += value
    return total


def pss_available() -> bool:
    return os.path.exists(f"/proc/{os.getpid()}/smaps_rollup")


def sample_tree(
    sampler: TreeSampler,
    key: int,
    root: int,
    procs: dict[int, ProcStat],
    kids: dict[int, list[int]],
    now: float,
    *,
    want_pss: bool,
    keep: bool = True,
) -> Usage | None:
    """The tree's usage now; kept in its history unless keep is False (the caller
    then calls :func:`record` once it has filled in what it reads later, e.g. PSS)."""
    if root not in procs:
        return None
    pids = [pid for pid in tree(root, kids) if pid in procs]  # a listed child may be gone since
    ticks = 0
    rss = 0
    for pid in pids:
        st = procs[pid]
        ticks += st.cpu_ticks
        rss += st.rss
    pss: int | None = None
    if want_pss:
        total = 0
        for pid in pids:
            value = read_pss(pid)
            if value is None:
                total = -1
                break
            total += value
        pss = total if total >= 0 else None
    prev = sampler.last.get(key)
    cpu = 0.0
    if prev is not None and now > prev[0]:
        cpu = max(0.0, (ticks - prev[1]) / TICKS / (now - prev[0]) * 100.0)
    sampler.last[key] = (now, ticks)
    usage = Usage(now, cpu, rss, pss, len(pids), ticks / TICKS)
    if keep:
        record(sampler, key, usage)
    return usage


def record(sampler: TreeSampler, key: int, usage: Usage) -> None:
    """Into the instance's history (the memory compared with a limit: PSS where read)."""
    hist = sampler.history.get(key)
    if hist is None:
        hist = sampler.history[key] = UsageHistory()
    hist.add(usage.time, usage.cpu_percent, usage.memory)


def forget(sampler: TreeSampler, key: int) -> None:
    sampler.last.pop(key, None)
    sampler.history.pop(key, None)
