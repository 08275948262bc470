"""Handlers of the commands that change processes: start, stop, restart, delete,
reset, signal, scale and reload.

Every reply carries ``processes`` (the processes the command acted on) and
``all`` (every process, as ``list`` returns it), so the CLI prints its table
from the one reply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from corral.core.deps import Graph, start_levels, with_dependents
from corral.core.deps import validate as validate_dependencies
from corral.core.errors import ConfigError
from corral.core.statemachine import Status
from corral.daemon.dispatch import RequestError
from corral.daemon.ordering import graph_of, stop_waves
from corral.daemon.registry import client_env
from corral.system import osproc

if TYPE_CHECKING:
    from corral.core.appspec import AppSpec
    from corral.daemon.context import DaemonContext
    from corral.daemon.instance import App, Instance

RESTARTABLE = (Status.STOPPED, Status.ERRORED, Status.WAITING_RESTART)
SPAWN_FAILED = "could not start"  # the reason statemachine.step gives a SpawnFailed (the CLI reads it too)


class ProcessCommands:
    def __init__(self, daemon: DaemonContext) -> None:
        self.d = daemon
        self.sup = daemon.sup

    def reply(self, instances: list[Instance], **extra: Any) -> dict[str, Any]:
        views = self.d.views
        return {"processes": views.processes(instances), "all": views.everyone(), **extra}

    # ------------------------------------------------------------ start

    async def start(self, args: dict[str, Any]) -> Any:
        specs = self.d.registry.validate(args["apps"])
        env = client_env(args.get("client_env"))
        graph = self._graph(specs)
        # register every new app first (binding its sockets), so a socket that cannot be
        # bound starts nothing at all
        added, _ = self.d.registry.bind_all(specs, env, args.get("source"), redefine=False)
        touched: list[Instance] = []
        launches: dict[str, Callable[[], None]] = {}
        for spec in specs:
            app = self.sup.apps[spec.name]
            if app in added:
                if spec.autostart:

                    def start_all(app: App = app) -> None:
                        for inst in app.instances:
                            self.sup.start(inst)

                    launches[app.name] = start_all
                touched.extend(app.instances)
                continue
            changed = app.spec != spec
            new = self.sup.update_app(app, spec, env if changed else None)

            def relaunch(app: App = app, new: list[Instance] = new, changed: bool = changed) -> None:
                for inst in app.instances:
                    if inst in new or inst.state.status in RESTARTABLE:
                        self.sup.start(inst)
                    elif changed and inst.state.status is not Status.STOPPING:
                        self.sup.restart(inst)

            launches[app.name] = relaunch
            touched.extend(app.instances)
        finished = None
        if any(graph.needs.get(n) for n in launches):
            runner = self.d.start_in_order(graph, specs, launches)
            if args.get("wait", True):
                finished = await runner.wait()
        else:
            for action in launches.values():
                action()
        if args.get("wait", True):
            await self.d.rollout.await_settled(touched)
        else:
            await self._await_spawned(touched)
        self.d.notify_systemd()
        if finished is not None and not finished.ok:
            raise RequestError("dependency_failed", "; ".join(f"{a}: {why}" for a, why in finished.failures))
        return self.reply([i for i in touched if i in i.app.instances])

    async def _await_spawned(self, instances: list[Instance]) -> None:
        """``start`` without waiting: until each launched instance has a pid or its spawn
        failed (so the reply shows pids and exec errors), and none is still stopping
        (a redefined app restarts); not until it is ready."""

        def issued(inst: Instance) -> bool:
            s = inst.state
            if inst not in inst.app.instances:
                return True
            if s.status is Status.STOPPING:
                return False
            # a failed spawn left `launching`, or is tried again with the reason kept
            return s.status is not Status.LAUNCHING or s.pid is not None or s.reason.startswith(SPAWN_FAILED)

        if instances:
            timeout = max(i.state.policy.kill_timeout for i in instances) + 5.0
            await self.sup.wait_for(lambda: all(issued(i) for i in instances), timeout)

    def _graph(self, specs: list[AppSpec]) -> Graph:
        """The request's apps' depends_on, checked against them and the registered apps."""
        try:
            return validate_dependencies(specs, file="request", known=list(self.sup.apps))
        except ConfigError as e:
            raise RequestError("bad_config", e.render())

    # ------------------------------------------------------------ simple actions

    async def _apply(self, args: dict[str, Any], action: Callable[[Instance], None]) -> Any:
        instances = self.sup.select(args["target"])
        for inst in instances:
            action(inst)
        await self.d.rollout.await_settled(instances)
        return self.reply(instances)

    async def stop(self, args: dict[str, Any]) -> Any:
        instances = self.sup.select(args["target"])
        for wave in stop_waves(self.sup, instances):  # dependents first, then what they need
            for inst in wave:
                self.sup.stop(inst)
            await self.d.rollout.await_settled(wave)
        return self.reply(instances)

    def _with_dependents(self, instances: list[Instance]) -> list[list[Instance]]:
        """The targets, then the apps that depend on them, wave by wave in start order."""
        graph = graph_of(self.sup.apps.values())
        names = with_dependents(graph, {i.app.name for i in instances})
        chosen = {i.id for i in instances}
        waves = []
        for level in start_levels(graph, names):
            wave = [i for i in self.sup.instances() if i.app.name in level and (i.id in chosen or i.app.name not in {x.app.name for x in instances})]
            if wave:
                waves.append(wave)
        return waves

    async def restart(self, args: dict[str, Any]) -> Any:
        if args.get("with_dependents"):
            done: list[Instance] = []
            for wave in self._with_dependents(self.sup.select(args["target"])):
                planned = {inst.id: inst.state.restarts + 1 for inst in wave}
                for inst in wave:
                    self.sup.restart(inst)
                for inst in wave:  # the next wave once this one is ready again
                    await self.d.rollout.wait_ready(inst, restarts=planned[inst.id])
                done.extend(wave)
            return self.reply(done)
        instances = self.sup.select(args["target"])
        if args.get("update_env"):
            env = client_env(args.get("client_env"))
            for app in {id(i.app): i.app for i in instances}.values():
                app.base_env = env
        for inst in instances:
            self.sup.restart(inst)
        await self.d.rollout.await_settled(instances)
        return self.reply(instances)

    async def delete(self, args: dict[str, Any]) -> Any:
        instances = self.sup.select(args["target"])
        views = self.d.views.processes(instances)
        for inst in instances:
            self.sup.delete(inst)
        await self.d.rollout.await_all_gone(instances)
        for v in views:
            v["status"] = "deleted"
        return {"processes": views, "all": self.d.views.everyone()}

    async def reset(self, args: dict[str, Any]) -> Any:
        instances = self.sup.select(args["target"])
        for inst in instances:
            inst.state = replace(inst.state, restarts=0, unstable_restarts=0)
        return self.reply(instances)

    async def signal(self, args: dict[str, Any]) -> Any:
        from corral.config.keys import p_signal

        try:
            sig = p_signal(args["signal"])
        except ValueError as e:
            raise RequestError("bad_args", f"field 'args.signal': {e}")
        instances = self.sup.select(args["target"])
        for inst in instances:
            if inst.child is not None:
                osproc.signal_group(inst.child.pgid, sig)
        return self.reply(instances, signal=sig)

    # ------------------------------------------------------------ scale and reload

    async def scale(self, args: dict[str, Any]) -> Any:
        app = self.sup.apps.get(args["name"])
        if app is None:
            raise LookupError(f"no app named '{args['name']}'")
        text = str(args["count"]).strip()
        current = len(app.instances)
        try:
            count = current + int(text) if text[:1] in "+-" else int(text)
        except ValueError:
            raise RequestError("bad_args", f"field 'args.count': expected N, +N or -N, got {text[:40]!r}")
        if count < 1:
            raise RequestError("bad_args", f"field 'args.count': {app.name} would have {count} instances; use stop or delete instead")
        self.d.registry.check_ceiling({app.name: count}, field="args.count")
        if app.reloading:
            raise RequestError("busy", f"a reload of '{app.name}' is running; scale after it ends")
        added, removed = self.sup.scale(app, count)
        await self.d.rollout.await_settled(added)
        await self.d.rollout.await_all_gone(removed)
        return self.reply(sorted(app.instances, key=lambda i: i.index), added=len(added), removed=len(removed))

    async def reload(self, args: dict[str, Any]) -> Any:
        started: list[str] = []
        deleted: list[str] = []
        if args.get("apps") is not None:
            targets = self._apply_file(args, started, deleted)
        else:
            seen: dict[int, App] = {}
            selected = self.sup.select(args["target"])
            waves = self._with_dependents(selected) if args.get("with_dependents") else [selected]
            for inst in (i for wave in waves for i in wave):
                seen.setdefault(id(inst.app), inst.app)
            targets = list(seen.values())
        results = []
        for app in targets:
            results.append(await self.d.rollout.reload_app(app))
        return {"apps": results, "started": started, "deleted": deleted, "all": self.d.views.everyone()}

    def _apply_file(self, args: dict[str, Any], started: list[str], deleted: list[str]) -> list[App]:
        """``reload FILE``: apply the file's definitions (all or nothing), start the apps new
        in it, delete the apps of the same file that are gone; returns the apps to reload."""
        from corral.config.keys import resolve_instances

        specs = self.d.registry.validate(args["apps"])
        source = args.get("source")
        env = client_env(args.get("client_env"))
        for spec in specs:
            existing = self.sup.apps.get(spec.name)
            if existing is not None and existing.reloading:
                raise RequestError("busy", f"a reload of '{existing.name}' is already running; try again when it ends")
        added, changed = self.d.registry.bind_all(specs, env, source, redefine=True)
        for app in added:
            if app.spec.autostart:
                for inst in app.instances:
                    self.sup.start(inst)
            started.append(app.name)
        targets: list[App] = []
        for existing, previous in changed:
            existing.base_env = env
            existing.source = source or existing.source
            if previous.instances != existing.spec.instances:
                self.sup.scale(existing, resolve_instances(existing.spec.instances, self.sup.cpu_count))
            targets.append(existing)
        names = {spec.name for spec in specs}
        if source:
            for app in list(self.sup.apps.values()):
                if app.source == source and app.name not in names:
                    for inst in list(app.instances):
                        self.sup.delete(inst)
                    deleted.append(app.name)
        return targets
