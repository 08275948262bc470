"""The OS process work the supervisor performs, behind one small protocol.

:class:`Spawner` is everything the runtime does to processes: start one from a
:class:`~corral.core.launch.LaunchPlan`, signal its group, hold its tree by pidfd
for later signals, reap.  :class:`OsSpawner` does it for real (through
:mod:`corral.system.osproc`); the unit tests drive the supervisor with a fake one on a
fake clock.

Spawning is off the event loop: ``subprocess.Popen`` returns only once the
child has called ``exec`` (vfork), and on a busy machine that wait, not the
daemon's own work, is what bounds ``corral start -i 20``.  :meth:`OsSpawner.submit`
runs it on a small thread pool, so several spawns wait for their ``exec`` at
once while the loop keeps serving, and hands each result back on the loop.

Reaping while spawns are in flight: a child that exits before it is handed
over must not be reaped as an orphan (its exit would be lost).  So while a
spawn is in flight :meth:`OsSpawner.reap_any` reaps nothing (zombies keep
their pid, so the pidfd opened right after ``Popen`` is always valid); when
the last one is handed over, a SIGCHLD that came meanwhile is raised again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from corral.core.launch import LaunchPlan
from corral.system import osproc

SPAWN_THREADS = 4  # exec waits that overlap; more only adds GIL contention on small machines

SpawnResult = osproc.Child | Exception
SpawnDone = Callable[[SpawnResult], None]


class Spawner(Protocol):
    def spawn(self, plan: LaunchPlan) -> osproc.Child:
        """Start the process; raises osproc.SpawnError or OSError."""
        ...

    def submit(self, plan: LaunchPlan, done: SpawnDone) -> None:
        """Start the process without blocking the caller; ``done(child or error)`` is
        called later, on the event loop (errors: osproc.SpawnError or OSError)."""
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

    def __init__(self, threads: int = SPAWN_THREADS) -> None:
        self.threads = threads
        self.pool: ThreadPoolExecutor | None = None  # started on the first spawn
        self.in_flight = 0  # spawns submitted and not yet handed over (touched on the loop only)
        self.reap_deferred = False

    def spawn(self, plan: LaunchPlan) -> osproc.Child:
        return osproc.spawn(plan.argv, cwd=plan.cwd, env=plan.env, uid=plan.uid, gid=plan.gid, pass_fds=plan.pass_fds)

    def submit(self, plan: LaunchPlan, done: SpawnDone) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or self.threads <= 0:
            done(self._spawn_catching(plan))
            return
        if self.pool is None:
            self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="corral-spawn")
        self.in_flight += 1
        self.pool.submit(self._spawn_in_thread, loop, plan, done)

    def _spawn_catching(self, plan: LaunchPlan) -> SpawnResult:
        try:
            return self.spawn(plan)
        except (osproc.SpawnError, OSError) as e:
            return e
        except Exception as e:  # never lose a spawn: the state machine must hear of it
            return osproc.SpawnError(f"{plan.argv[0] if plan.argv else '?'}: {e!r}")

    def _spawn_in_thread(self, loop: asyncio.AbstractEventLoop, plan: LaunchPlan, done: SpawnDone) -> None:
        result = self._spawn_catching(plan)
        try:
            loop.call_soon_threadsafe(self._hand_over, result, done)
        except RuntimeError:  # the loop is closed: the daemon is gone, and so is the caller
            if isinstance(result, osproc.Child):
                osproc.signal_group(result.pgid, "SIGKILL")

    def _hand_over(self, result: SpawnResult, done: SpawnDone) -> None:
        self.in_flight -= 1
        try:
            done(result)
        finally:
            if self.in_flight == 0 and self.reap_deferred:
                self.reap_deferred = False
                # the SIGCHLD that came while spawns were in flight: deliver it now
                if threading.current_thread() is threading.main_thread():
                    signal.raise_signal(signal.SIGCHLD)

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None

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
        if self.in_flight:
            # a child not yet handed over would be reaped as an orphan: wait for the hand-over
            self.reap_deferred = True
            return []
        return osproc.reap_any()
