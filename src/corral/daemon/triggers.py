"""Restart triggers: ``cron_restart`` (croniter, through corral.core.cron) and ``watch`` (watchfiles).

Both libraries are imported only when an app uses them.  A trigger restarts
the app's instances, or reloads them in cluster mode with a shared socket, so
a cluster never drops below capacity.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import os
import time
from collections.abc import Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any

from corral.core.cron import next_cron, validate_cron

if TYPE_CHECKING:
    from corral.daemon.scheduler import Scheduler
    from corral.daemon.supervisor import App, Supervisor

# Never watched, whatever the config says: they change all the time and are not source.
DEFAULT_IGNORES = (
    ".git", ".hg", ".svn", "__pycache__", "*.pyc", "*.pyo", "node_modules", ".venv", "venv",
    ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache", "*.log", "logs", "log",
    "*.swp", "*~", ".DS_Store", "*.db", "*.db-journal", "*.db-wal", "*.db-shm",
)

Action = Callable[["App", str], Coroutine[Any, Any, None]]

CRON = "cron"  # cron jobs on the daemon's scheduler are keyed (CRON, app name)

__all__ = ["DEFAULT_IGNORES", "Triggers", "next_cron", "validate_cron"]


class Triggers:
    """Cron restarts as one-off jobs on the daemon's scheduler (the next fire time, re-armed
    when fired); file watchers as tasks, one per app with ``watch``. Both follow the apps'
    configs through :meth:`sync`, called after changes."""

    def __init__(self, sup: Supervisor, action: Action) -> None:
        self.sup = sup
        self.action = action
        self.cron: dict[str, tuple[str, tuple[str, str]]] = {}  # app name -> (pattern, its job's key)
        self.watchers: dict[str, tuple[Any, asyncio.Task[None], asyncio.Event]] = {}
        self.scheduler: Scheduler | None = None

    def start(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        scheduler.on_change(self.safe_sync)
        self.safe_sync()

    def safe_sync(self) -> None:
        try:
            self.sync()
        except Exception as e:
            self.sup.log(f"[daemon] restart triggers: {e!r}")

    def sync(self) -> None:
        """Arm or disarm triggers to match the apps' current configs."""
        loop = asyncio.get_running_loop()
        for name in list(self.cron):
            app = self.sup.apps.get(name)
            if app is None or app.spec.cron_restart != self.cron[name][0]:
                _, job = self.cron.pop(name)
                if self.scheduler is not None:
                    self.scheduler.cancel(job)
        for name in list(self.watchers):
            app = self.sup.apps.get(name)
            if app is None or self._watch_sig(app) != self.watchers[name][0]:
                _, task, stop = self.watchers.pop(name)
                stop.set()
                task.cancel()
        for app in list(self.sup.apps.values()):
            pattern = app.spec.cron_restart
            if pattern and app.name not in self.cron:
                self._arm_cron(app.name, pattern, time.time())
            if app.spec.watch and app.name not in self.watchers:
                stop = asyncio.Event()
                task = loop.create_task(self._watch(app, stop))
                self.watchers[app.name] = (self._watch_sig(app), task, stop)

    def _arm_cron(self, name: str, pattern: str, after: float) -> None:
        """The next occurrence after ``after`` (epoch seconds), as a one-off job at loop time."""
        if self.scheduler is None:
            return
        now = time.time()
        fire_at = next_cron(pattern, max(now, after))
        loop_time = self.scheduler.loop.time() + max(0.0, fire_at - now)
        self.cron[name] = (pattern, (CRON, name))
        self.scheduler.at((CRON, name), loop_time, partial(self._cron_fire, name, pattern, fire_at))

    def _cron_fire(self, name: str, pattern: str, fire_at: float) -> None:
        app = self.sup.apps.get(name)
        if app is None or self.cron.get(name, ("",))[0] != pattern:
            self.cron.pop(name, None)
            return
        # the next occurrence: after this one even if the timer ran a little early by the wall clock
        self._arm_cron(name, pattern, fire_at)
        running = [i for i in app.instances if i.child is not None]
        if running:
            asyncio.get_running_loop().create_task(self.action(app, f"cron_restart '{pattern}'"))

    @staticmethod
    def _watch_sig(app: App) -> Any:
        cfg = app.spec
        return (str(cfg.watch), tuple(cfg.ignore_watch or ()), cfg.watch_delay, cfg.cwd)

    def watch_paths(self, app: App) -> list[str]:
        cfg = app.spec
        watch = cfg.watch
        paths = [cfg.cwd] if watch is True else [p if os.path.isabs(p) else os.path.join(cfg.cwd, p) for p in watch or ()]
        return [p for p in paths if os.path.exists(p)]

    def ignored(self, app: App, path: str) -> bool:
        patterns = DEFAULT_IGNORES + tuple(app.spec.ignore_watch or ())
        rel = os.path.relpath(path, app.spec.cwd)
        parts = rel.split(os.sep)
        for pat in patterns:
            if any(fnmatch.fnmatch(part, pat) for part in parts) or fnmatch.fnmatch(rel, pat):
                return True
        return False

    async def _watch(self, app: App, stop: asyncio.Event) -> None:
        from watchfiles import awatch

        paths = self.watch_paths(app)
        if not paths:
            self.sup.announce(app.instances[0] if app.instances else None, "warning", f"watch: none of the paths exist ({app.spec.watch})")
            return
        delay = int(app.spec.watch_delay or 1000)

        def keep(_change: Any, path: str) -> bool:
            return not self.ignored(app, path)

        with contextlib.suppress(asyncio.CancelledError):
            # watch_delay is the quiet time that ends a batch of changes (watchfiles' step);
            # a batch lasts at most 20 times that (its debounce)
            async for changes in awatch(*paths, watch_filter=keep, debounce=max(delay * 20, 1600), step=delay, stop_event=stop):
                if app.name not in self.sup.apps or stop.is_set():
                    return
                files = sorted({os.path.relpath(p, app.spec.cwd) for _, p in changes})
                shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
                await self.action(app, f"watch: {shown} changed")

    def stop(self) -> None:
        if self.scheduler is not None:
            for _, job in self.cron.values():
                self.scheduler.cancel(job)
        self.cron.clear()
        for _, task, stop in self.watchers.values():
            stop.set()
            task.cancel()
