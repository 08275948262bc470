"""The runtime: performs the state machine's effects on real processes.

Each :class:`Instance` owns one ``ProcState``; :meth:`Supervisor.dispatch`
feeds it events through the pure ``step`` and performs the effects that come
back.  The supervisor decides nothing itself; it keeps the apps and instances
and wires the parts that do the work, each taking callbacks and plain values:

* :mod:`corral.core.launch` builds argv, environment and fds (pure);
* a :class:`~corral.daemon.spawner.Spawner` does all OS process work (a fake in
  the unit tests);
* :class:`~corral.daemon.reaper.Reaper` delivers exits (pidfds and SIGCHLD);
* :class:`~corral.daemon.applogs.AppLogs` and ``PipeReader`` carry output to
  the log files;
* :mod:`corral.daemon.sdnotify` turns sd_notify messages into events;
* :mod:`corral.daemon.cgroups` and :mod:`corral.daemon.pidfile` apply limits
  and write pid files.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from corral.config.keys import resolve_instances
from corral.core.appspec import AppSpec, policy_of, replace
from corral.core.events import Change, transition_events
from corral.core.statemachine import (
    READY_SETTLE,
    Adopt,
    Announce,
    ArmWatchdog,
    CancelTimer,
    Delete,
    DisarmWatchdog,
    Effect,
    Event,
    LeftoverTimeout,
    ProcState,
    Remove,
    ResetCounters,
    Restart,
    Signal,
    SignalLeftovers,
    Spawn,
    Start,
    StartLeftoverTimer,
    StartTimer,
    Stop,
    Timeout,
    UpdatePolicy,
    WatchdogTimeout,
    step,
)
from corral.daemon.applogs import AppLogs
from corral.daemon.instance import App, Instance
from corral.daemon.processes import InstanceProcesses
from corral.daemon.reaper import Reaper
from corral.daemon.spawner import OsSpawner, Spawner
from corral.logs.sink import LogFile, LogFiles
from corral.system import listeners as listen
from corral.system.paths import Home

__all__ = ["READY_SETTLE", "App", "Instance", "Supervisor"]


class Supervisor:
    def __init__(
        self,
        home: Home,
        loop: asyncio.AbstractEventLoop,
        log: Callable[[str], None],
        spawner: Spawner | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.home = home
        self.loop = loop
        self.log = log
        self.spawner: Spawner = spawner or OsSpawner()
        self.clock = clock or loop.time
        self.apps: dict[str, App] = {}
        self.next_id = 0
        self.changed = asyncio.Condition()
        self.log_listeners: list[Callable[[Instance, str, list[bytes], float], None]] = []
        self.event_listeners: list[Callable[[dict[str, Any]], None]] = []
        # (instance, corral.core.events.Change) for every state change a step means
        self.change_listeners: list[Callable[[Instance, Change], None]] = []
        # called after every step, with no arguments (the daemon's scheduler re-reads the apps)
        self.after_dispatch: list[Callable[[], None]] = []
        self.cpu_count = os.cpu_count() or 1
        self.logs = AppLogs(loop, lambda line: self.log(line), self._report_log_file)
        self.reaper = Reaper(loop, self.spawner, lambda line: self.log(line))
        self.procs = InstanceProcesses(
            loop,
            self.spawner,
            self.reaper,
            self.logs,
            home=str(home.root),
            cpu_count=self.cpu_count,
            dispatch=lambda inst, event: self.dispatch(inst, event),
            announce=lambda inst, kind, message: self.announce(inst, kind, message),
            log=lambda line: self.log(line),
            publish=self.publish_lines,
            following=lambda: bool(self.log_listeners),
        )

    # ------------------------------------------------------------ compatibility names

    @property
    def files(self) -> LogFiles:
        return self.logs.files

    @property
    def log_defaults(self) -> dict[str, Any]:
        return self.logs.defaults

    @log_defaults.setter
    def log_defaults(self, value: dict[str, Any]) -> None:
        self.logs.defaults = value

    def log_tick(self) -> None:
        self.logs.tick()

    def reap_children(self) -> None:
        self.reaper.reap_children()

    def watch_pid(self, pid: int, done: asyncio.Future[int]) -> None:
        """Deliver the wait status of a helper child (e.g. an exec probe) to a future."""
        self.reaper.watch_future(pid, done)

    def build_env(self, inst: Instance) -> dict[str, str]:
        return self.procs.build_env(inst)

    def child_exited(self, pid: int, status: int) -> None:
        self.procs.child_exited(pid, status)

    @property
    def by_pid(self) -> dict[int, Instance]:
        return self.procs.by_pid

    # ------------------------------------------------------------ queries

    def instances(self) -> list[Instance]:
        return [i for app in self.apps.values() for i in app.instances]

    def select(self, targets: Iterable[str]) -> list[Instance]:
        """Instances named by ids, app names, namespaces or 'all'; raises LookupError."""
        chosen: dict[int, Instance] = {}
        all_instances = self.instances()
        for raw in targets:
            t = str(raw).strip()
            found: list[Instance]
            if t == "all":
                found = all_instances
            elif t.isdigit():
                found = [i for i in all_instances if i.id == int(t)]
            else:
                found = [i for i in all_instances if i.name == t]
                if not found:
                    found = [i for i in all_instances if i.app.spec.namespace == t]
            if not found and t != "all":
                raise LookupError(f"no process or namespace named '{t}'")
            for i in found:
                chosen[i.id] = i
        return sorted(chosen.values(), key=lambda i: i.id)

    # ------------------------------------------------------------ state machine driver

    def dispatch(self, inst: Instance, event: Event) -> None:
        before = inst.state
        new, effects = step(before, event, self.clock())
        inst.state = new
        if self.change_listeners:  # before the effects: a spawn dispatches its own step inside them
            for change in transition_events(before, new, event):
                for listener in list(self.change_listeners):
                    listener(inst, change)
        for effect in effects:
            self.perform(inst, effect)
        self._notify()
        for hook in self.after_dispatch:
            hook()

    def _notify(self) -> None:
        async def notify() -> None:
            async with self.changed:
                self.changed.notify_all()

        self.loop.create_task(notify())

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = self.loop.time() + timeout
        async with self.changed:
            while not predicate():
                remaining = deadline - self.loop.time()
                if remaining <= 0:
                    return False
                try:
                    await asyncio.wait_for(self.changed.wait(), remaining)
                except TimeoutError:
                    return predicate()
        return True

    def perform(self, inst: Instance, effect: Effect) -> None:
        if isinstance(effect, Spawn):
            self.procs.spawn(inst)
        elif isinstance(effect, Signal):
            self.procs.signal(inst, effect.signal)
        elif isinstance(effect, StartTimer):
            if inst.timer:
                inst.timer.cancel()
            inst.timer = self.loop.call_later(effect.delay, self.dispatch, inst, Timeout(effect.token))
        elif isinstance(effect, CancelTimer):
            if inst.timer:
                inst.timer.cancel()
                inst.timer = None
        elif isinstance(effect, ArmWatchdog):
            if inst.watchdog:
                inst.watchdog.cancel()
            inst.watchdog = self.loop.call_later(effect.delay, self.dispatch, inst, WatchdogTimeout(effect.token))
        elif isinstance(effect, DisarmWatchdog):
            if inst.watchdog:
                inst.watchdog.cancel()
                inst.watchdog = None
        elif isinstance(effect, SignalLeftovers):
            self.procs.signal_leftovers(effect.pid, effect.signal)
        elif isinstance(effect, StartLeftoverTimer):
            self.loop.call_later(effect.delay, self.dispatch, inst, LeftoverTimeout(effect.pid))
        elif isinstance(effect, Remove):
            self._remove(inst)
        elif isinstance(effect, Announce):
            self.announce(inst, effect.kind, effect.message)

    def announce(self, inst: Instance | None, kind: str, message: str) -> None:
        who = f"{inst.name}:{inst.id}" if inst else "daemon"
        self.log(f"[{who}] {kind}: {message}")
        if self.event_listeners:
            ev = {
                "stream": "event",
                "time": time.time(),
                "kind": kind,
                "message": message,
                "name": inst.name if inst else None,
                "id": inst.id if inst else None,
                "status": str(inst.state.status) if inst else None,
            }
            for listener in list(self.event_listeners):
                listener(ev)

    def _remove(self, inst: Instance) -> None:
        app = inst.app
        if inst.timer:
            inst.timer.cancel()
        self.procs.release(inst)
        if inst in app.instances:
            app.instances.remove(inst)
        if not app.instances and self.apps.get(app.name) is app:
            del self.apps[app.name]
            app.close_listeners()
            self.logs.forget(app.name)

    # ------------------------------------------------------------ logs

    def _report_log_file(self, path: str, kind: str, message: str) -> None:
        owner = next((i for i in self.instances() if path in i.log_paths().values()), None)
        self.announce(owner, kind, message)

    def release_targets(self, targets: list[LogFile]) -> None:
        self.logs.release(targets)

    def publish_lines(self, inst: Instance, stream: str, lines: list[bytes], ts: float) -> None:
        for listener in list(self.log_listeners):
            listener(inst, stream, lines, ts)

    # ------------------------------------------------------------ app management

    def add_app(self, spec: AppSpec, base_env: dict[str, str], source: str | None = None) -> App:
        app = App(self, spec, base_env, source=source)
        app.bind_listeners()  # raises ListenError before anything is registered
        self.apps[app.name] = app
        count = resolve_instances(spec.instances, self.cpu_count)
        for index in range(count):
            self._new_instance(app, index)
        return app

    def _new_instance(self, app: App, index: int) -> Instance:
        inst = Instance(id=self.next_id, app=app, index=index, state=ProcState(policy=policy_of(app.spec)))
        self.next_id += 1
        app.instances.append(inst)
        return inst

    def set_spec(self, app: App, spec: AppSpec) -> None:
        """New definition without touching the running instances (reload applies it)."""
        old_sig = app.listen_signature()
        old_spec = app.spec
        app.spec = spec
        if app.listen_signature() != old_sig:
            try:
                app.bind_listeners()
            except listen.ListenError:
                app.spec = old_spec
                raise
        policy = policy_of(spec)
        for inst in app.instances:
            self.dispatch(inst, UpdatePolicy(policy))
            inst.refresh_format()

    def update_app(self, app: App, spec: AppSpec, base_env: dict[str, str] | None) -> list[Instance]:
        """Apply a new definition; returns instances that were added."""
        self.set_spec(app, spec)
        if base_env is not None:
            app.base_env = base_env
        want = resolve_instances(spec.instances, self.cpu_count)
        added = []
        live = sorted(app.instances, key=lambda i: i.index)
        for inst in live[want:]:
            self.dispatch(inst, Delete())
        for index in range(len(live), want):
            added.append(self._new_instance(app, index))
        return added

    def add_replacement(self, app: App, index: int) -> Instance:
        inst = self._new_instance(app, index)
        self.start(inst)
        return inst

    def adopt(self, new: Instance, old: Instance) -> None:
        """After a reload step: the replacement takes the old instance's id and counters."""
        new.id = old.id
        self.dispatch(new, Adopt(old.state.restarts))
        new.created_at = old.created_at
        new.last_restart_reason = old.last_restart_reason
        new.refresh_format()

    def reset(self, inst: Instance) -> None:
        """``corral reset``: restart counters back to zero."""
        self.dispatch(inst, ResetCounters())

    def scale(self, app: App, count: int) -> tuple[list[Instance], list[Instance]]:
        """Change the number of instances; returns (added, removed)."""
        app.spec = replace(app.spec, instances=count)
        live = sorted(app.instances, key=lambda i: i.index)
        added: list[Instance] = []
        removed = live[count:]
        for inst in removed:
            self.dispatch(inst, Delete())
        next_index = (max((i.index for i in live[:count]), default=-1)) + 1
        for _ in range(len(live), count):
            inst = self._new_instance(app, next_index)
            next_index += 1
            added.append(inst)
            self.start(inst)
        return added, removed

    def start(self, inst: Instance) -> None:
        self.dispatch(inst, Start())

    def stop(self, inst: Instance) -> None:
        self.dispatch(inst, Stop())

    def restart(self, inst: Instance) -> None:
        self.dispatch(inst, Restart())

    def delete(self, inst: Instance) -> None:
        self.dispatch(inst, Delete())
