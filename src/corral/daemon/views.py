"""What the daemon tells about its processes: the process object of
docs/protocol.md (``list``, every state-changing reply), its full form
(``describe``) and app health (``health``, ``/readyz``).

Usage figures come from the resource monitor's latest sample; a view only
asks for a fresh ``/proc`` scan when some instance in it has none recent
enough, and then one scan serves the whole batch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from corral.core.appkind import mask_env
from corral.core.statemachine import Status

if TYPE_CHECKING:
    from corral.daemon.instance import App, Instance
    from corral.daemon.resources import UsageMonitor
    from corral.daemon.supervisor import Supervisor

LIVE = (Status.ONLINE, Status.LAUNCHING, Status.STOPPING)
STARTING_HEALTH = {"status": "starting", "failures": 0, "successes": 0, "checks": 0, "last_error": None, "last_latency_ms": None, "last_change": None}


def _daemon_user() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


class Views:
    def __init__(self, sup: Supervisor, monitor: UsageMonitor) -> None:
        self.sup = sup
        self.monitor = monitor
        self.user = _daemon_user()

    # ------------------------------------------------------------ usage

    def _stale(self, inst: Instance, now: float) -> bool:
        if inst.child is None:
            return False
        usage = inst.usage
        return usage is None or now - usage.time > 2 * self.monitor.current_interval() + 1

    def refresh_usage(self, instances: Iterable[Instance]) -> None:
        """One /proc scan for the batch, only when some running instance lacks a recent sample."""
        now = self.sup.loop.time()
        if any(self._stale(i, now) for i in instances):
            self.monitor.tick()

    @staticmethod
    def _usage(inst: Instance) -> tuple[float | None, int | None]:
        usage = inst.usage
        if inst.child is None or usage is None:
            return None, None
        return usage.cpu_percent, usage.memory

    # ------------------------------------------------------------ process objects

    def processes(self, instances: Iterable[Instance]) -> list[dict[str, Any]]:
        batch = list(instances)
        self.refresh_usage(batch)
        return [self.process(i) for i in batch]

    def everyone(self) -> list[dict[str, Any]]:
        """Every instance, by id: what `corral ls` prints."""
        return self.processes(sorted(self.sup.instances(), key=lambda i: i.id))

    def process(self, inst: Instance) -> dict[str, Any]:
        """The process object (docs/protocol.md); call refresh_usage first for fresh figures."""
        cfg = inst.app.spec
        st = inst.state
        cpu, mem = self._usage(inst)
        uptime = None
        if inst.child is not None and inst.started_wall is not None and st.status in LIVE:
            uptime = time.time() - inst.started_wall
        status, reason = str(st.status), st.reason
        plan = inst.app.plan_status
        if plan is not None and st.status is Status.STOPPED and inst.child is None:
            status, reason = plan  # not started yet: waiting for a dependency, or blocked by one
        return {
            "id": inst.id,
            "name": inst.name,
            "namespace": cfg.namespace,
            "instance": inst.index,
            "mode": cfg.exec_mode,
            "pid": inst.child.pid if inst.child else None,
            "status": status,
            "restarts": st.restarts,
            "unstable_restarts": st.unstable_restarts,
            "uptime": uptime,
            "started_at": inst.started_wall,
            "created_at": inst.created_at,
            "cpu": cpu,
            "memory": mem,
            "user": str(self.user if cfg.uid is None else cfg.uid),
            "exit_code": st.exit_code,
            "exit_signal": st.exit_signal,
            "reason": reason,
            "ready": inst.is_ready(self.sup.loop.time()),
            "notify_status": inst.status_text,
            "health": self.health_of(inst),
            "last_restart_reason": inst.last_restart_reason,
        }

    def describe(self, inst: Instance, *, show_env: bool = False) -> dict[str, Any]:
        """The process object with the app's configuration, log counters and environment."""
        self.refresh_usage([inst])
        v = self.process(inst)
        cfg = inst.app.spec
        log_paths = inst.log_paths()  # computed once for every log field below
        paths = {p for p in log_paths.values() if p}
        counters = [self.sup.files.counters(p) for p in paths]
        for key in (
            "script",
            "interpreter",
            "interpreter_args",
            "args",
            "cwd",
        ):
            v[key] = getattr(cfg, key)
        v["logs"] = log_paths
        v["pid_file"] = cfg.pid_file
        v["depends_on"] = msgspec.to_builtins(cfg.depends_on)
        for key in (
            "autorestart",
            "max_restarts",
            "min_uptime",
            "restart_delay",
            "exp_backoff_restart_delay",
            "kill_timeout",
            "kill_signal",
            "stop_exit_codes",
            "instances",
            "log_type",
            "log_date_format",
            "merge_logs",
            "max_memory_restart",
            "watch",
            "cron_restart",
            "exec_mode",
        ):
            v[key] = getattr(cfg, key)
        v["listen"] = [{"name": ls.name, "address": ls.address, "port": ls.port} for ls in inst.app.listeners] or cfg.listen
        v["wait_ready"] = cfg.wait_ready
        v["log_errors"] = [f.last_error for f in self.sup.files.all() if f.failing and f.last_error and f.path in paths]
        v["log_lines_dropped"] = sum(counts[1] for counts in counters)
        v["log_rotations"] = sum(counts[0] for counts in counters)
        env = inst.env or self.sup.build_env(inst)
        if show_env:
            v["env"] = dict(sorted(env.items()))
        else:
            v["env"] = mask_env({k: env.get(k, "") for k in sorted(cfg.env)})
            v["env_hidden"] = True
        return v

    # ------------------------------------------------------------ health

    @staticmethod
    def health_of(inst: Instance) -> dict[str, Any] | None:
        from corral.daemon.health import health_view

        if not inst.app.spec.health:
            return None
        holder: Any = inst.app if inst.app.listeners else inst
        return health_view(holder) or dict(STARTING_HEALTH)


def app_health(app: App) -> tuple[bool, str]:
    """(healthy, reason) of one app for the aggregate: all instances online and probes healthy."""
    want = len(app.instances)
    online = [i for i in app.instances if i.state.status is Status.ONLINE]
    if not app.instances:
        return False, f"{app.name}: no instances"
    if not app.spec.autorestart and all(i.state.status is Status.STOPPED and i.state.exit_code == 0 for i in app.instances):
        return True, f"{app.name}: completed (a one-shot app that exited 0)"
    if len(online) < want:
        bad = next(i for i in app.instances if i.state.status is not Status.ONLINE)
        return False, f"{app.name}: {len(online)}/{want} online ({bad.name}:{bad.id} is {bad.state.status}{': ' + bad.state.reason if bad.state.reason else ''})"
    if app.spec.health:
        holders: list[Any] = [app] if app.listeners else list(app.instances)
        for h in holders:
            st = h.health
            if st is None or st.status != "healthy":
                status = st.status if st is not None else "starting"
                err = f" ({st.last_error})" if st is not None and st.last_error else ""
                return False, f"{app.name}: health {status}{err}"
    return True, f"{app.name}: {want}/{want} online" + (", healthy" if app.spec.health else "")


def health_report(apps: Iterable[App]) -> dict[str, Any]:
    results = []
    for app in apps:
        ok, reason = app_health(app)
        results.append({"name": app.name, "healthy": ok, "reason": reason})
    return {"healthy": all(r["healthy"] for r in results), "apps": results}
