"""The OS process work the supervisor performs, behind one small protocol.

:class:`Spawner` is everything the runtime does to processes: start one from a
:class:`~corral.launch.LaunchPlan`, signal its group, hold its tree by pidfd
for later signals, reap.  :class:`OsSpawner` does it for real (through
:mod:`corral.osproc`); the unit tests drive the supervisor with a fake one on a
fake clock.
"""

from __future__ import annotations

import os
from typing import Protocol

from corral import osproc
from corral.launch import LaunchPlan


class Spawner(Protocol):
    def spawn(self, plan: LaunchPlan) -> osproc.Child:
        """Start the process; raises osproc.SpawnError or OSError."""
        ...

    def signal_group(self, pgid: int, sig: str) -> bool: ...

    def group_alive(self, pgid: int) -> bool: ...

    def track_tree(self, pid: int) -> list[osproc.Tracked]:
        """The descendants of pid now, held for later signals."""
        ...

    def track_group(self, pgid: int) -> list[osproc.Tracked]: ...

    def tracked_alive(self, t: osproc.Tracked) -> bool: ...

    def signal_tracked(self, tracked: list[osproc.Tracked], sig: str) -> None: ...

    def untrack(self, tracked: list[osproc.Tracked]) -> None: ...

    def in_tree(self, root: int, pid: int) -> bool:
        """Whether pid is root or one of its descendants."""
        ...

    def pidfd_open(self, pid: int) -> int | None: ...

    def reap(self, pid: int) -> int | None:
        """The wait status of child pid if it has exited, else None."""
        ...

    def reap_any(self) -> list[tuple[int, int]]: ...


class OsSpawner:
    """The real thing."""

    def spawn(self, plan: LaunchPlan) -> osproc.Child:
        return osproc.spawn(plan.argv, cwd=plan.cwd, env=plan.env, uid=plan.uid, gid=plan.gid, pass_fds=plan.pass_fds)

    def signal_group(self, pgid: int, sig: str) -> bool:
        return osproc.signal_group(pgid, sig)

    def group_alive(self, pgid: int) -> bool:
        return osproc.group_alive(pgid)

    def track_tree(self, pid: int) -> list[osproc.Tracked]:
        return osproc.track_tree(pid)

    def track_group(self, pgid: int) -> list[osproc.Tracked]:
        return osproc.track_group(pgid)

    def tracked_alive(self, t: osproc.Tracked) -> bool:
        return osproc.tracked_alive(t)

    def signal_tracked(self, tracked: list[osproc.Tracked], sig: str) -> None:
        osproc.signal_tracked(tracked, sig)

    def untrack(self, tracked: list[osproc.Tracked]) -> None:
        osproc.untrack(tracked)

    def in_tree(self, root: int, pid: int) -> bool:
        return pid == root or pid in osproc.descendants(root)

    def pidfd_open(self, pid: int) -> int | None:
        try:
            return os.pidfd_open(pid)
        except OSError:
            return None

    def reap(self, pid: int) -> int | None:
        return osproc.reap(pid)

    def reap_any(self) -> list[tuple[int, int]]:
        return osproc.reap_any()
