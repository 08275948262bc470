"""Optional hard limits through cgroup v2: ``memory_max`` and ``cpu_max`` per app.

Used only when the machine gives Corral a delegated, writable cgroup v2 tree
with the memory and cpu controllers.  Each instance gets its own cgroup under
the daemon's (``corral-<app>-<id>``), its limits written before the process is
moved in.  Elsewhere (cgroup v1, read-only, no delegation) the daemon says once
that only the sampled ``max_memory_restart`` applies, and runs the app anyway.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

ROOT = "/sys/fs/cgroup"


@dataclass
class CgroupSupport:
    base: str | None
    reason: str


def detect(root: str = ROOT) -> CgroupSupport:
    controllers_file = os.path.join(root, "cgroup.controllers")
    if not os.path.exists(controllers_file):
        return CgroupSupport(None, "cgroup v2 is not mounted at /sys/fs/cgroup (cgroup v1 or none)")
    try:
        with open("/proc/self/cgroup") as f:
            line = next((ln for ln in f if ln.startswith("0::")), "")
    except OSError:
        line = ""
    own = line.strip()[3:] or "/"
    base = os.path.normpath(os.path.join(root, own.lstrip("/")))
    try:
        with open(os.path.join(base, "cgroup.controllers")) as f:
            available = set(f.read().split())
    except OSError:
        available = set()
    missing = {"memory", "cpu"} - available
    if missing:
        return CgroupSupport(None, f"the cgroup {base} lacks the {', '.join(sorted(missing))} controller(s)")
    if not os.access(base, os.W_OK):
        return CgroupSupport(None, f"the cgroup {base} is not writable (not delegated to this user)")
    return CgroupSupport(base, "ok")


def cpu_max_value(cpus: float, period_us: int = 100_000) -> str:
    return f"{int(cpus * period_us)} {period_us}"


def create(support: CgroupSupport, name: str, memory_max: int | None, cpu_max: float | None) -> str:
    """Make the instance's cgroup with its limits; returns its path. Raises OSError."""
    assert support.base is not None
    path = os.path.join(support.base, name)
    os.makedirs(path, exist_ok=True)
    if memory_max:
        with open(os.path.join(path, "memory.max"), "w") as f:
            f.write(str(memory_max))
    if cpu_max:
        with open(os.path.join(path, "cpu.max"), "w") as f:
            f.write(cpu_max_value(cpu_max))
    return path


def move(path: str, pid: int) -> None:
    with open(os.path.join(path, "cgroup.procs"), "w") as f:
        f.write(str(pid))


def remove(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass


class HardLimits:
    """Applies memory_max/cpu_max to instances; detects support once, says once per app
    that limits are not applied where cgroups cannot be used."""

    def __init__(self) -> None:
        self.support: CgroupSupport | None = None
        self.noticed: set[str] = set()

    def apply(self, app: str, name: str, pid: int, memory_max: int | None, cpu_max: float | None) -> tuple[str | None, str | None]:
        """(the cgroup path the process was moved into, or None; a notice to report, or None)."""
        if self.support is None:
            self.support = detect()
        support = self.support
        if support.base is None:
            if app in self.noticed:
                return None, None
            self.noticed.add(app)
            return None, f"memory_max/cpu_max not applied: {support.reason}; only the sampled max_memory_restart applies"
        try:
            path = create(support, name, memory_max, cpu_max)
            move(path, pid)
        except OSError as e:
            return None, f"memory_max/cpu_max not applied: {e}"
        return path, None
