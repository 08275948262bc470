"""The daemon: the parts that make it, wired together.

:class:`Daemon` owns the supervisor and its watchers, and hands them to the
parts that each do one job:

* :mod:`.control` serves the control socket (framing, peer uid, limits);
* :mod:`.dispatch` turns a request into a reply through the handler table;
* :mod:`.handlers` holds the command handlers, registered by :class:`Command`;
* :mod:`.views` builds the process objects replies carry;
* :mod:`.rollout` replaces instances without dropping capacity;
* :mod:`.registry` validates and registers app definitions from requests;
* :mod:`.logstream` streams logs and events to followers;
* :mod:`.dump` reads and writes the dump file;
* :mod:`.lifecycle` runs the background daemon (signals, HTTP endpoint, pid file);
* :mod:`.systemd` says READY=1 under systemd.

``corral-runtime`` runs the same :class:`Daemon` in the foreground through the
public methods below.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from corral import __version__
from corral.core.appspec import AppSpec
from corral.core.errors import ConfigError
from corral.core.statemachine import Status
from corral.daemon.control import ControlServer
from corral.daemon.dispatch import Dispatcher
from corral.daemon.eventhub import EventHub
from corral.daemon.instance import App
from corral.daemon.logstream import LogStream
from corral.daemon.ordering import StartOrder, stop_waves
from corral.daemon.registry import Registry
from corral.daemon.rollout import Rollout
from corral.daemon.supervisor import Supervisor
from corral.daemon.systemd import SystemdNotifier
from corral.daemon.views import Views, health_report
from corral.system.paths import Home


def _stdout_log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    try:
        sys.stdout.write(f"{stamp} {message}\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass


class Daemon:
    def __init__(self, home: Home, *, log: Callable[[str], None] = _stdout_log) -> None:
        from corral.daemon import settings
        from corral.daemon.handlers import handler_tables
        from corral.daemon.health import HealthManager
        from corral.daemon.resources import UsageMonitor
        from corral.daemon.scheduler import Scheduler
        from corral.daemon.triggers import Triggers

        self.home = home
        self.log = log
        self.loop = asyncio.get_running_loop()
        self.started = time.time()
        self.stopping = asyncio.Event()
        self.sup = Supervisor(home, self.loop, log)
        self.rollout = Rollout(self.sup)
        self.scheduler = Scheduler(self.loop, log)  # the one timer of the watchers below
        self.monitor = UsageMonitor(self.sup, self.rollout.replace_instance)
        self.health = HealthManager(self.sup, self.rollout.replace_instance, self.rollout.reload_for, self.sup.watch_pid)
        self.triggers = Triggers(self.sup, self.rollout.restart_for)
        self.views = Views(self.sup, self.monitor)
        self.registry = Registry(self.sup, lambda: settings.max_instances(str(home.root)))
        self.logstream = LogStream(self.sup, self.stopping)
        self.systemd = SystemdNotifier()
        self.events = EventHub(self.sup, log, str(home.root))
        self.order = StartOrder(self)
        handlers, streams = handler_tables(self)
        self.dispatcher = Dispatcher(handlers, streams, log)
        self.control = ControlServer(str(home.socket), self.dispatcher.handle_line, log)
        self.http: Any = None
        if self.systemd.wanted():  # READY=1 may come after a start that did not wait
            self.sup.event_listeners.append(self._on_event_for_systemd)

    # ------------------------------------------------------------ serving

    async def serve(self) -> None:
        await self.control.start()
        self.log(f"[daemon] corral {__version__} listening on {self.control.path} (pid {os.getpid()})")

    def start_watchers(self) -> None:
        from corral.daemon import settings

        try:
            self.sup.log_defaults = settings.log_defaults(str(self.home.root))
        except ConfigError as e:
            self.log(f"[daemon] settings ignored: {e.render()}")
        self.sup.after_dispatch.append(self.scheduler.changed)
        self.monitor.start(self.scheduler)
        self.health.start(self.scheduler)
        self.triggers.start(self.scheduler)
        self.sup.logs.follow(self.scheduler)

    def stop_watchers(self) -> None:
        self.health.stop()
        self.triggers.stop()
        self.scheduler.close()
        if self.http is not None:
            self.http.close()

    def close(self) -> None:
        """Stop serving: watchers, the HTTP endpoint, the control socket and the pid file."""
        self.stop_watchers()
        self.control.close()
        for path in (self.home.socket, self.home.pid_file):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    # ------------------------------------------------------------ actions (also for corral-runtime)

    async def start_apps(self, apps: list[AppSpec], env: dict[str, str], source: str | None = None) -> dict[str, Any]:
        """What ``start`` does: RequestError, ConfigError or ListenError when refused."""
        from corral.core import commands

        result: dict[str, Any] = await self.dispatcher.handlers[commands.START]({"apps": apps, "client_env": env, "source": source, "wait": True})
        return result

    def start_in_order(self, graph: Any, specs: list[AppSpec], launches: dict[str, Callable[[], None]]) -> Any:
        """Launch ``launches`` (app name -> action) in the order of ``graph``: a StartPlanRunner."""
        return self.order.start(graph, specs, launches)

    async def stop_all(self) -> int:
        instances = self.sup.instances()
        for wave in stop_waves(self.sup, instances):  # dependents first
            for inst in wave:
                self.sup.stop(inst)
            await self.rollout.await_settled(wave)
        return len(instances)

    async def reload_all(self, on_error: Callable[[App, Exception], None]) -> None:
        """Rolling reload of every app; a failed one keeps its old instances serving."""
        for app in list(self.sup.apps.values()):
            try:
                await self.rollout.reload_app(app)
            except Exception as e:
                on_error(app, e)

    def reload_logs(self) -> int:
        n = self.sup.files.reopen_all()
        self.log(f"[daemon] reopened {n} log files")
        return n

    def notify_systemd(self) -> None:
        """Under systemd, READY=1 once every autostart app is online."""
        if self.systemd.sent or not self.systemd.wanted():
            return
        apps = [a for a in self.sup.apps.values() if a.spec.autostart]
        done = [a for a in apps if not a.spec.autorestart and all(i.state.status is Status.STOPPED and i.state.exit_code == 0 for i in a.instances)]
        if all(i.state.status is Status.ONLINE for a in apps if a not in done for i in a.instances):
            self.systemd.ready(f"{sum(len(a.instances) for a in apps)} processes online")

    def _on_event_for_systemd(self, ev: dict[str, Any]) -> None:
        if ev.get("kind") == "online" and not self.systemd.sent:
            self.loop.call_soon(self.notify_systemd)

    def health_report(self, names: list[str]) -> dict[str, Any]:
        """Aggregate health of the named apps (every autostart app when none): LookupError
        for an unknown name."""
        missing = [n for n in names if n not in self.sup.apps]
        if missing:
            raise LookupError(f"no app named '{missing[0]}'")
        apps = [self.sup.apps[n] for n in names] if names else [a for a in self.sup.apps.values() if a.spec.autostart]
        return health_report(apps)

