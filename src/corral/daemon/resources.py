"""Resource sampling of every instance, and restarts on ``max_memory_restart``.

One asyncio task samples the supervisor's current instances on every tick
(so instances coming and going need no bookkeeping) with the /proc sampler
(:mod:`corral.daemon.sampler`), keeps each instance's latest usage for the
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
    from corral.daemon.supervisor import Instance, Supervisor

FAST_INTERVAL = 1.0  # when some app has a memory limit
SLOW_INTERVAL = 5.0  # otherwise: cheaper, still fresh enough for `ls`

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
        self.task: asyncio.Task[None] | None = None
        self.pending: set[int] = set()  # pids already being restarted for memory

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run())

    def current_interval(self) -> float:
        if self.interval:
            return self.interval
        if any(app.spec.max_memory_restart for app in self.sup.apps.values()):
            return FAST_INTERVAL
        return SLOW_INTERVAL

    async def run(self) -> None:
        last_sample = 0.0
        while True:
            now = time.monotonic()
            if now - last_sample >= self.current_interval() - 0.01:
                last_sample = now
                try:
                    self.tick()
                except Exception as e:  # never let sampling kill the daemon
                    self.sup.log(f"[daemon] resource sampling failed: {e!r}")
            try:
                self.sup.log_tick()
            except Exception as e:
                self.sup.log(f"[daemon] log file check failed: {e!r}")
            await asyncio.sleep(1.0)

    def tick(self, procs: dict[int, sampler.ProcStat] | None = None) -> None:
        now = time.monotonic()
        everyone = self.sup.instances()
        if len(self.trees.history) > len(everyone) or len(self.trees.last) > len(everyone):
            known = {id(inst) for inst in everyone}
            for key in [k for k in {*self.trees.history, *self.trees.last} if k not in known]:
                sampler.forget(self.trees, key)  # deleted instances: their history goes with them
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
