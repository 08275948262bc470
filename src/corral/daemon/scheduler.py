"""The daemon's one timer for its timed jobs, over the pure :mod:`corral.core.schedule`.

Health probes, resource samples, the log-file check and cron restarts are
jobs of one :class:`Scheduler`: a single asyncio timer (``loop.call_at``) is
armed at the schedule's next wake and re-armed after each change, so the
daemon sleeps until something is due. Jobs due within ``slack`` of each other
run in one wakeup, and periodic jobs sit on the grid of their period (a 1 s
sample, a 1 s log check and a 5 s probe wake the daemon once). With nothing
scheduled there is no timer at all.

The parts that schedule jobs follow the apps: each registers a ``sync``
callback (:meth:`Scheduler.on_change`), called shortly after the supervisor
changed anything (:meth:`Scheduler.changed`, debounced), never on a tick.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable

from corral.core.schedule import DEFAULT_SLACK, Schedule, align

SYNC_DELAY = 0.05  # after a change, the parts re-read the apps this much later (one pass for a burst)

Action = Callable[[], None]


class Scheduler:
    """Runs timed jobs when they are due, from one timer."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        log: Callable[[str], None],
        slack: float = DEFAULT_SLACK,
        sync_delay: float = SYNC_DELAY,
    ) -> None:
        self.loop = loop
        self.log = log
        self.sync_delay = sync_delay
        self.schedule: Schedule[Hashable] = Schedule(slack)
        self.jobs: dict[Hashable, Action] = {}
        self.syncs: list[Action] = []
        self.wakeups = 0  # timer callbacks run (for tests and profiling)
        self._timer: asyncio.TimerHandle | None = None
        self._armed: float | None = None
        self._sync_handle: asyncio.TimerHandle | None = None
        self._closed = False

    # ------------------------------------------------------------ jobs

    def every(self, key: Hashable, period: float, action: Action, first: float | None = None) -> None:
        """Run ``action`` every ``period`` seconds, from ``first`` (loop time; default: the next
        point on the period's grid). A job already there with this period and action is kept."""
        entry = self.schedule.entry(key)
        if entry is not None and entry.every == period and self.jobs.get(key) == action:
            return
        self.jobs[key] = action
        self.schedule.add(key, align(self.loop.time(), period) if first is None else first, period)
        self._arm()

    def at(self, key: Hashable, when: float, action: Action) -> None:
        """Run ``action`` once at ``when`` (loop time); replaces the key's job."""
        self.jobs[key] = action
        self.schedule.add(key, when, None)
        self._arm()

    def cancel(self, key: Hashable) -> None:
        if self.schedule.cancel(key):
            self.jobs.pop(key, None)
            self._arm()

    def __contains__(self, key: object) -> bool:
        return key in self.schedule

    def when(self, key: Hashable) -> float | None:
        return self.schedule.when(key)

    # ------------------------------------------------------------ following the apps

    def on_change(self, sync: Action) -> None:
        """Call ``sync`` after changes (see :meth:`changed`)."""
        self.syncs.append(sync)

    def changed(self) -> None:
        """Something changed (a step, a new config): every sync runs once, ``sync_delay`` later."""
        if self._sync_handle is None and not self._closed:
            self._sync_handle = self.loop.call_later(self.sync_delay, self.sync_now)

    def sync_now(self) -> None:
        if self._sync_handle is not None:
            self._sync_handle.cancel()
            self._sync_handle = None
        for sync in list(self.syncs):
            try:
                sync()
            except Exception as e:  # a part failing must not stop the others
                self.log(f"[daemon] scheduler: {sync!r} failed: {e!r}")

    # ------------------------------------------------------------ the timer

    def _arm(self) -> None:
        wake = None if self._closed else self.schedule.next_wake()
        if wake == self._armed and (self._timer is not None or wake is None):
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._armed = wake
        if wake is not None:
            self._timer = self.loop.call_at(wake, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.wakeups += 1
        # asyncio may run a timer up to its clock resolution early: count it as on time
        now = max(self.loop.time(), self._armed or 0.0)
        self._armed = None
        for key in self.schedule.due(now):
            action = self.jobs.get(key)
            if key not in self.schedule:
                self.jobs.pop(key, None)  # a one-off job is done
            if action is None:
                continue
            try:
                action()
            except Exception as e:  # never let a job kill the daemon or stop the timer
                self.log(f"[daemon] scheduled job {key!r} failed: {e!r}")
        self._arm()

    def close(self) -> None:
        self._closed = True
        for handle in (self._timer, self._sync_handle):
            if handle is not None:
                handle.cancel()
        self._timer = self._sync_handle = None
        self._armed = None
        self.jobs.clear()
        self.syncs.clear()
