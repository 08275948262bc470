"""Runs a start plan (:mod:`corral.core.depplan`) on the event loop: performs the planner's
effects and feeds it what the supervisor observes.

The daemon creates one :class:`StartPlanRunner` per ``start`` of a file: ``launch``
starts an app's instances, ``status`` shows what an app waits for (or why it was not
started) in ``ls``/``describe``/jlist, and :meth:`observe` is called with every app-level
change (``started``, ``online``, ``healthy``, ``unhealthy``, ``exited`` with its code,
``errored``, ``stopped``). :func:`app_observation` turns an app's instances into the
one observation the planner reads. All decisions stay in :func:`corral.core.depplan.plan_step`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from corral.core.depplan import (
    ArmWait,
    Begin,
    Blocked,
    Finished,
    Launch,
    Observed,
    PlanEvent,
    PlanState,
    Waiting,
    WaitTimeout,
    plan_step,
)


class StartPlanRunner:
    def __init__(
        self,
        state: PlanState,
        *,
        launch: Callable[[str], None],
        status: Callable[[str, str], None],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.state = state
        self.launch = launch
        self.status = status
        self.loop = loop or asyncio.get_running_loop()
        self.finished: asyncio.Future[Finished] = self.loop.create_future()
        self.timers: list[asyncio.TimerHandle] = []
        self.launch_times: dict[str, float] = {}

    def begin(self) -> None:
        self._feed(Begin())

    def observe(self, app: str, what: str, code: int | None = None, reason: str = "") -> None:
        self._feed(Observed(app, what, code, reason))

    async def wait(self, timeout: float | None = None) -> Finished:
        return await asyncio.wait_for(asyncio.shield(self.finished), timeout)

    def cancel(self) -> None:
        for t in self.timers:
            t.cancel()
        self.timers.clear()
        if not self.finished.done():
            self.finished.cancel()

    def _feed(self, event: PlanEvent) -> None:
        if self.finished.done():
            return
        self.state, effects = plan_step(self.state, event, self.loop.time())
        for e in effects:
            if isinstance(e, Launch):
                self.launch_times[e.app] = self.loop.time()
                self.launch(e.app)
            elif isinstance(e, ArmWait):
                self.timers.append(self.loop.call_later(e.delay, self._feed, WaitTimeout(e.app, e.token)))
            elif isinstance(e, Waiting | Blocked):
                self.status(e.app, e.reason)
            elif isinstance(e, Finished):
                for t in self.timers:
                    t.cancel()
                self.timers.clear()
                self.finished.set_result(e)


def app_observation(statuses: Sequence[str], healthy: Sequence[bool | None], exit_codes: Sequence[int | None]) -> list[tuple[str, int | None]]:
    """An app's instances as the planner's observations, in order: ``started`` once one
    instance runs, ``online`` once all are online, ``healthy`` once all pass their probe,
    ``exited`` (with the first non-zero code, else 0) once all have ended, ``errored``
    once one is errored."""
    out: list[tuple[str, int | None]] = []
    if not statuses:
        return out
    if any(s == "errored" for s in statuses):
        return [("errored", None)]
    if any(s in ("launching", "online") for s in statuses) or any(c is not None for c in exit_codes):
        out.append(("started", None))
    if all(s == "online" for s in statuses):
        out.append(("online", None))
    if healthy and all(h is True for h in healthy):
        out.append(("healthy", None))
    if all(s == "stopped" for s in statuses) and all(c is not None for c in exit_codes):
        codes = [c for c in exit_codes if c is not None]
        out.append(("exited", next((c for c in codes if c != 0), 0)))
    return out
