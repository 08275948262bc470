"""Health probes: per app through its shared socket, else per instance.

A periodic job on the daemon's scheduler starts each target's probe
(:mod:`corral.daemon.probes` runs it); the pure :func:`corral.core.healthspec.health_step` turns results into
healthy/unhealthy; a failed liveness probe asks the daemon to replace the
instance, or to reload the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from corral.core.healthspec import HealthSpec, HealthState, health_step
from corral.core.schedule import align
from corral.core.statemachine import Status
from corral.daemon.probes import exec_probe, http_probe, run_probe, tcp_probe

if TYPE_CHECKING:
    from corral.daemon.scheduler import Scheduler
    from corral.daemon.supervisor import App, Instance, Supervisor

Replace = Callable[["Instance", str], Awaitable[None]]

JOB = "health"  # probe jobs on the daemon's scheduler are keyed (JOB, target key)


class HealthManager:
    """Runs each app's probe: per app through its shared socket, else per instance.

    Each target's probe is a periodic job on the daemon's scheduler, kept in step
    with the apps by :meth:`sync` (after changes, never on a tick): no probe, no wakeup."""

    def __init__(self, sup: Supervisor, replace_instance: Replace, reload_app: Callable[[App, str], Awaitable[None]], watch_pid: Callable[[int, asyncio.Future[int]], None]) -> None:
        self.sup = sup
        self.replace_instance = replace_instance
        self.reload_app = reload_app
        self.watch_pid = watch_pid
        self.live: dict[Any, tuple[App, Instance | None]] = {}  # the targets at the last sync
        self.specs: dict[int, tuple[Any, HealthSpec]] = {}
        self.running: dict[Any, asyncio.Task[None]] = {}
        self.scheduler: Scheduler | None = None
        self.any_probe = False

    def start(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        scheduler.on_change(self.sync)
        self.sync()

    def targets(self) -> list[tuple[Any, App, Instance | None]]:
        out: list[tuple[Any, App, Instance | None]] = []
        self.any_probe = False
        for app in self.sup.apps.values():
            if not app.spec.health:
                continue
            self.any_probe = True
            running = [i for i in app.instances if i.child is not None and i.state.status is Status.ONLINE]
            if app.listeners:
                if running:
                    out.append((("app", app.name), app, None))
            else:
                out.extend((("inst", id(i)), app, i) for i in running)
        return out

    def _spec(self, app: App) -> HealthSpec:
        """The app's probe settings, parsed once per config (not on every sync)."""
        table = app.spec.health
        cached = self.specs.get(id(app))
        if cached is not None and cached[0] is table:
            return cached[1]
        assert table is not None  # only apps with a health table are probed
        spec = table.spec()
        self.specs[id(app)] = (table, spec)
        return spec

    def sync(self) -> None:
        """One probe job per target: a new or restarted target (or a new spec) starts afresh."""
        scheduler = self.scheduler
        if scheduler is None:
            return
        now = time.monotonic()
        live: dict[Any, tuple[App, Instance | None]] = {}
        for key, app, inst in self.targets():
            live[key] = (app, inst)
            spec = self._spec(app)
            holder: Any = inst if inst is not None else app
            pid = inst.child.pid if inst is not None and inst.child is not None else None
            state: HealthState | None = holder.health
            fresh = state is None or (inst is not None and holder.health_pid != pid) or holder.health_spec != spec
            if fresh:
                holder.health = HealthState(since=now, last_change=now)
                holder.health_pid = pid
                holder.health_spec = spec
            if fresh or (JOB, key) not in scheduler:
                # the first probe comes soon, start_period or not: as Docker, failures during
                # start_period do not count, but a success makes the target healthy at once.
                # It is put on the grid of min(interval, 1 s), 0.5-1.5 of that after now, so
                # probes share their wakeups with the other jobs.
                soon = min(spec.interval, 1.0)
                first = align(scheduler.loop.time() + soon / 2, soon)
                scheduler.every((JOB, key), spec.interval, partial(self.fire, key), first=first)
        for key in self.live:
            if key not in live:
                scheduler.cancel((JOB, key))
        self.live = live

    def fire(self, key: Any) -> None:
        """A target's probe is due: run it, unless the last one still runs (then skip this turn)."""
        target = self.live.get(key)
        if target is None or key in self.running:
            return
        app, inst = target
        if self.sup.apps.get(app.name) is not app:
            return
        if inst is not None and (inst.child is None or inst.state.status is not Status.ONLINE):
            return  # stopped since the last sync, which follows shortly
        holder: Any = inst if inst is not None else app
        spec: HealthSpec | None = holder.health_spec
        if holder.health is None or spec is None:
            return
        self.running[key] = asyncio.get_running_loop().create_task(self.probe(key, app, inst, spec))

    def _factory(self, app: App, inst: Instance | None, spec: HealthSpec) -> Callable[[], Awaitable[tuple[bool, str | None]]]:
        cfg = app.spec
        port: str | None = None
        unix_path: str | None = None
        host = "127.0.0.1"
        if app.listeners:
            ls = app.listeners[0]
            if ls.port:
                port = str(ls.port)
                addr_host = ls.address.rpartition(":")[0].strip("[]")
                if addr_host not in ("", "0.0.0.0", "::", "*"):
                    host = addr_host
            else:
                unix_path = ls.address[5:]
        elif inst is not None:
            env = inst.env or {}
            port = env.get("PORT")
        target = spec.target
        if spec.kind == "exec":
            env = dict(inst.env) if inst is not None and inst.env else dict(app.base_env, **cfg.env)
            argv = list(target) if isinstance(target, list) else [str(target)]
            return lambda: exec_probe(argv, cfg.cwd, env, self.watch_pid)
        if ("{port}" in str(target) or "{listen}" in str(target)) and not port:
            problem = f"'{target}' needs a port, and the app has none (no listen socket, no PORT in its env)"

            async def no_port() -> tuple[bool, str | None]:
                return False, problem

            return no_port
        text = str(target).replace("{port}", port or "").replace("{listen}", f"{host}:{port}" if port else "")
        if spec.kind == "tcp":
            address = text if not unix_path or "{" in str(target) else f"unix:{unix_path}"
            return lambda: tcp_probe(address)
        url = text if text.startswith("http") else f"http://{host}:{port or 80}{text}"
        return lambda: http_probe(url, spec, unix_path if unix_path and not str(target).startswith("http") else None)

    async def probe(self, key: Any, app: App, inst: Instance | None, spec: HealthSpec) -> None:
        try:
            ok, err, latency = await run_probe(self._factory(app, inst, spec), spec.timeout)
            holder: Any = inst if inst is not None else app
            if holder.health is None:
                return
            new, changed = health_step(holder.health, ok, err, latency, time.monotonic(), spec)
            holder.health = new
            if changed:
                who = inst if inst is not None else (app.instances[0] if app.instances else None)
                msg = f"{new.status}" + (f": {err}" if err else "")
                self.sup.announce(who, "health", f"{'app ' + app.name + ' ' if inst is None else ''}{msg}")
                if new.status == "unhealthy" and spec.liveness:
                    reason = f"liveness probe failed {new.failures} times: {err}"
                    if inst is not None:
                        inst.last_restart_reason = reason
                        await self.replace_instance(inst, reason)
                        holder.health = replace(new, failures=0)
                    else:
                        for i in app.instances:
                            i.last_restart_reason = reason
                        await self.reload_app(app, reason)
                        # a fresh start for the reloaded app: another liveness failure restarts again
                        holder.health = HealthState(since=time.monotonic(), last_change=time.monotonic())
        except Exception as e:
            self.sup.log(f"[daemon] probe failed to run: {e!r}")
        finally:
            self.running.pop(key, None)

    def stop(self) -> None:
        if self.scheduler is not None:
            for key in self.live:
                self.scheduler.cancel((JOB, key))
        for t in self.running.values():
            t.cancel()
        with contextlib.suppress(Exception):
            self.running.clear()


def health_view(holder: Any) -> dict[str, Any] | None:
    st: HealthState | None = getattr(holder, "health", None)
    if st is None:
        return None
    return {
        "status": st.status,
        "failures": st.failures,
        "successes": st.successes,
        "checks": st.checks,
        "last_error": st.last_error,
        "last_latency_ms": None if st.last_latency_ms is None else round(st.last_latency_ms, 2),
        "last_change": time.time() - (time.monotonic() - st.last_change),
    }
