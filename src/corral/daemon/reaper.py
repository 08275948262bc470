"""Reaping children: one registry for every child the daemon waits for.

Instances' processes and helper children (exec probes) are watched the same
way: a pidfd on the event loop where the kernel has them, and SIGCHLD (the
daemon is a child subreaper) for everything, including orphaned grandchildren
re-parented to the daemon.  Whichever path reaps a watched pid first delivers
its wait status, once; an unwatched pid is an orphan, logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from corral.daemon.spawner import Spawner
from corral.system import osproc


@dataclass
class _Watch:
    on_exit: Callable[[int], None]
    pidfd: int | None


class Reaper:
    def __init__(self, loop: asyncio.AbstractEventLoop, spawner: Spawner, log: Callable[[str], None]) -> None:
        self.loop = loop
        self.spawner = spawner
        self.log = log
        self.watched: dict[int, _Watch] = {}

    def watch(self, pid: int, on_exit: Callable[[int], None], pidfd: int | None = None) -> None:
        """Call on_exit(wait status) once pid has exited and been reaped. The pidfd, if
        given, becomes the reaper's (closed when the pid is delivered)."""
        self.watched[pid] = _Watch(on_exit, pidfd)
        if pidfd is not None:
            self.loop.add_reader(pidfd, self._on_pidfd, pid)

    def watch_future(self, pid: int, done: asyncio.Future[int]) -> None:
        """Deliver the wait status of a helper child (e.g. an exec probe) to a future."""

        def deliver(status: int) -> None:
            if not done.done():
                done.set_result(status)

        self.watch(pid, deliver, self.spawner.pidfd_open(pid))
        done.add_done_callback(lambda _f: self.forget(pid))

    def forget(self, pid: int) -> None:
        w = self.watched.pop(pid, None)
        if w is not None:
            self._close(w)

    def _close(self, w: _Watch) -> None:
        if w.pidfd is not None:
            self.loop.remove_reader(w.pidfd)
            osproc.close_fd(w.pidfd)
            w.pidfd = None

    def _on_pidfd(self, pid: int) -> None:
        w = self.watched.get(pid)
        if w is None:
            return
        status = self.spawner.reap(pid)
        if status is None:
            # not ours to reap after all (a readable pidfd means it exited): stop polling
            # the pidfd, SIGCHLD delivers it if it ever comes
            self._close(w)
            return
        self._deliver(pid, status)

    def _deliver(self, pid: int, status: int) -> None:
        w = self.watched.pop(pid, None)
        if w is None:
            return
        self._close(w)
        w.on_exit(status)

    def reap_children(self) -> None:
        """SIGCHLD: reap everything that exited, including re-parented orphans."""
        for pid, status in self.spawner.reap_any():
            if pid in self.watched:
                self._deliver(pid, status)
            else:
                code, sig = osproc.decode_status(status)
                self.log(f"[daemon] reaped orphan pid {pid} ({sig or f'code {code}'})")
