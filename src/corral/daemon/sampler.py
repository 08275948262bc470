"""Resource sampling for whole process trees, from /proc, once per tick for every app.

Each tick reads ``/proc/<pid>/stat`` of every process once, builds the parent
map, and sums CPU time and RSS over each instance's tree (the instance and all
its descendants, so a worker's own children count).  PSS (from
``smaps_rollup``) is read only for the trees that need it, so shared pages are
not counted N times against a memory limit.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")
HISTORY = 120


@dataclass
class ProcStat:
    pid: int
    ppid: int
    cpu_ticks: int
    rss: int


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
    history: dict[int, deque[Usage]] = field(default_factory=dict)


def read_stat(pid: int) -> ProcStat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # the command name may contain spaces and parentheses: split after the last ')'
    rest = data[data.rfind(b")") + 2 :].split()
    try:
        ppid = int(rest[1])
        utime, stime = int(rest[11]), int(rest[12])
        cutime, cstime = int(rest[13]), int(rest[14])
        rss_pages = int(rest[21])
    except (IndexError, ValueError):
        return None
    return ProcStat(pid, ppid, utime + stime + cutime + cstime, rss_pages * PAGE)


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
) -> Usage | None:
    if root not in procs:
        return None
    pids = tree(root, kids)
    ticks = 0
    rss = 0
    for pid in pids:
        st = procs.get(pid)
        if st is not None:
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
    hist = sampler.history.setdefault(key, deque(maxlen=HISTORY))
    hist.append(usage)
    return usage


def forget(sampler: TreeSampler, key: int) -> None:
    sampler.last.pop(key, None)
    sampler.history.pop(key, None)
