"""Start and stop in dependency order (``depends_on``), for the daemon's handlers.

:meth:`StartOrder.start` runs a :class:`corral.core.startplan.StartPlanRunner` over the
apps of one ``start``: it launches an app once what it needs is met, shows
``waiting``/``blocked`` statuses, emits those as events, and feeds the planner what the
supervisor's instances show (folded per app by :func:`corral.core.startplan.app_observation`)
every time something changes. :func:`stop_waves` orders instances for ``stop``/``kill``:
dependents first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from corral.core.depplan import new_plan
from corral.core.deps import Graph, stop_levels
from corral.core.events import BLOCKED, WAITING
from corral.core.startplan import StartPlanRunner, app_observation
from corral.core.statemachine import Status

if TYPE_CHECKING:
    from corral.core.appspec import AppSpec
    from corral.daemon.supervisor import App, Instance, Supervisor

POLL = 0.1  # seconds: health changes do not always pass through the state machine


def observations(app: App) -> list[tuple[str, int | None]]:
    insts = list(app.instances)
    statuses = [str(i.state.status) for i in insts]
    healthy: list[bool | None] = []
    if app.spec.health is not None:
        holders: list[Any] = [app] if app.listeners else insts
        healthy = [h.health is not None and h.health.status == "healthy" for h in holders]
    codes = [i.state.exit_code if i.state.status is Status.STOPPED and i.state.exit_signal is None else (-1 if i.state.exit_signal else None) for i in insts]
    return app_observation(statuses, healthy, codes)


class StartOrder:
    def __init__(self, daemon: Any) -> None:  # the Daemon (its events, log and supervisor)
        self.d = daemon
        self.sup = daemon.sup
        self.tasks: set[asyncio.Task[None]] = set()

    def start(self, graph: Graph, specs: list[AppSpec], launches: dict[str, Callable[[], None]]) -> StartPlanRunner:
        by_name = {c.name: c for c in specs}
        apps = [by_name.get(n) or self.sup.apps[n].spec for n in graph.order if n in by_name or n in self.sup.apps]

        def launch(name: str) -> None:
            app = self.sup.apps.get(name)
            if app is not None:
                app.plan_status = None
            action = launches.get(name)
            if action is not None:
                action()
            elif app is not None:  # a registered dependency outside the request: start it if it is not running
                for inst in app.instances:
                    self.sup.start(inst)

        def status(name: str, text: str) -> None:
            app = self.sup.apps.get(name)
            kind = BLOCKED if text.startswith("not started") else WAITING
            if app is not None:
                app.plan_status = (kind, text)
            self.d.events.emit(kind, name, reason=text, message=text)

        runner = StartPlanRunner(new_plan(graph, apps, list(launches)), launch=launch, status=status, loop=self.sup.loop)
        runner.begin()
        task = self.sup.loop.create_task(self._watch(runner))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return runner

    async def _watch(self, runner: StartPlanRunner) -> None:
        try:
            while not runner.finished.done():
                for name in runner.state.order:
                    app = self.sup.apps.get(name)
                    if app is None or name not in runner.state.launched:
                        continue
                    for what, code in observations(app):
                        runner.observe(name, what, code)
                if runner.finished.done():
                    break
                async with self.sup.changed:
                    try:
                        await asyncio.wait_for(self.sup.changed.wait(), POLL)
                    except TimeoutError:
                        pass
        except Exception as e:  # never leave a start hanging on a bug here
            self.d.log(f"[daemon] start order: {type(e).__name__}: {e}")
            runner.cancel()


def graph_of(apps: Iterable[App]) -> Graph:
    """The registered apps' dependencies, leniently (an app deleted since is ignored)."""
    from corral.core.deps import COMPLETED_OK, READY, Dependency, is_one_shot

    by_name = {a.name: a for a in apps}
    needs: dict[str, tuple[Dependency, ...]] = {}
    for name, app in by_name.items():
        items = []
        for d in app.spec.depends_on:
            target = by_name.get(d.name)
            if target is None:
                continue
            cond = d.condition
            if cond == "default":
                cond = COMPLETED_OK if is_one_shot(target.spec) else READY
            items.append(Dependency(d.name, cond))
        needs[name] = tuple(items)
    return Graph(order=tuple(by_name), needs=needs)


def stop_waves(sup: Supervisor, instances: list[Instance]) -> list[list[Instance]]:
    """The instances grouped so that dependents stop before what they need."""
    graph = graph_of(sup.apps.values())
    if not any(graph.needs.values()):
        return [instances] if instances else []
    names = {i.app.name for i in instances}
    waves = []
    for level in stop_levels(graph, names):
        wave = [i for i in instances if i.app.name in level]
        if wave:
            waves.append(wave)
    return waves
