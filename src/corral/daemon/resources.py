"""Resource sampling of every instance, and restarts on ``max_memory_restart``.

A job on the daemon's scheduler (:mod:`corral.daemon.scheduler`) samples the
supervisor's current instances every second (with a memory limit) or every
5 s, and only while some instance runs, with the /proc sampler
(:mod:`corral.daemon.sampler`); it keeps each instance's latest usage for the
views, and asks the daemon to replace an instance over its memory limit (a
cluster instance is replaced without dropping capacity).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from corral.core.statemachine import Status
from corral.core.units import format_bytes
from corral.daemon import sampler

if TYPE_CHECKING:
    from corral.daemon.scheduler import Scheduler
    from corral.daemon.supervisor import Instance, Supervisor

FAST_INTERVAL = 1.0  # when some app has a memory limit
SLOW_INTERVAL = 5.0  # otherwise: cheaper, still fresh enough for `ls`
JOB = ("usage",)  # the sampling job's key on the daemon's scheduler

Replace = Callable[["Instance", str], Awaitable[None]]


class UsageMonitor:
    """Samples every instance's tree; restarts those over their memory limit."""

    def __init__(self, sup: Supervisor, replace_instance: Replace, interval: float | None = None) -> None:
        self.sup = sup
        self.replace_instance = replace_instance
        self.interval = interval
        self.trees = sampler.TreeSampler()
        self.pss = sampler.pss_available()
        self.children_files = sampler.children_files()
        self.scheduler: Scheduler | None = None
        self.pending: set[int] = set()  # pids already being restarted for memory

    def start(self, scheduler: Scheduler) -> None:
        """Sample on the scheduler while some instance runs (no wakeups otherwise)."""
        self.scheduler = scheduler
        scheduler.on_change(self.sync)
        self.sync()

    def current_interval(self) -> float:
        if self.interval:
            return self.interval
        if any(app.spec.max_memory_restart for app in self.sup.apps.values()):
            return FAST_INTERVAL
        return SLOW_INTERVAL

    def sync(self) -> None:
        """Sample every interval while an instance runs; forget deleted instances."""
        if self.scheduler is None:
            return
        everyone = self.sup.instances()
        if any(inst.child is not None for inst in everyone):
            self.scheduler.every(JOB, self.current_interval(), self.sample)
        else:
            self.scheduler.cancel(JOB)
            self._forget_deleted(everyone)

    def sample(self) -> None:
        try:
            self.tick()
        except Exception as e:  # never let sampling kill the daemon
            self.sup.log(f"[daemon] resource sampling failed: {e!r}")

    def _forget_deleted(self, everyone: list[Instance]) -> None:
        if len(self.trees.history) > len(everyone) or len(self.trees.last) > len(everyone):
            known = {id(inst) for inst in everyone}
            for key in [k for k in {*self.trees.history, *self.trees.last} if k not in known]:
                sampler.forget(self.trees, key)  # deleted instances: their history goes with them

    def tick(self, procs: dict[int, sampler.ProcStat] | None = None) -> None:
        now = time.monotonic()
        everyone = self.sup.instances()
        self._forget_deleted(everyone)
        running = [inst for inst in everyone if inst.child is not None]
        if not running:
            return
        if procs is not None:
            kids = sampler.children_map(procs)
        elif self.children_files:
            procs, kids = sampler.snapshot_trees(inst.child.pid for inst in running if inst.child is not None)
        else:
            procs = sampler.snapshot()
            kids = sampler.children_map(procs)
        for inst in running:
            child = inst.child
            if child is None:
                continue
            cfg = inst.app.spec
            limit = cfg.max_memory_restart
            mode = cfg.memory_limit_mode or "pss"
            usage = sampler.sample_tree(self.trees, id(inst), child.pid, procs, kids, now, want_pss=False, keep=False)
            if usage is not None and limit and mode == "pss" and self.pss and usage.rss > limit:
                # PSS is never above RSS: only a tree already over the limit by RSS needs the
                # (much dearer) smaps_rollup reads to see whether it is over it by PSS
                usage.pss = sampler.tree_pss(child.pid, kids)
            if usage is not None:
                sampler.record(self.trees, id(inst), usage)
            inst.usage = usage
            if usage is None or not limit or child.pid in self.pending:
                continue
            if inst.state.status is not Status.ONLINE:
                continue
            if usage.memory > limit:
                what = "pss" if usage.pss is not None else "rss"
                reason = f"memory {format_bytes(usage.memory)} > {format_bytes(limit)} ({what} of {usage.pids} processes)"
                self.pending.add(child.pid)
                inst.last_restart_reason = reason
                self.sup.announce(inst, "memory", f"restarting: {reason}")
                asyncio.get_running_loop().create_task(self._replace(inst, child.pid, reason))

    async def _replace(self, inst: Instance, pid: int, reason: str) -> None:
        try:
            await self.replace_instance(inst, reason)
        finally:
            self.pending.discard(pid)

    def history(self, inst: Instance, since: float | None = None) -> list[dict[str, Any]]:
        """Samples of the instance newer than since (daemon monotonic time; None: the last 120)."""
        hist = self.trees.history.get(id(inst))
        return hist.since(since) if hist is not None else []


# The former name, kept for callers that still use it.
