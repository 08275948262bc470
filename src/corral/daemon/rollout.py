"""Replacing running instances without dropping capacity.

One coroutine, :meth:`Rollout.replace` (start a replacement -> wait until it is
ready -> delete the old instance -> the replacement adopts its id), serves the
rolling reload, the memory-limit replacement and the liveness restart.  Apps
without a shared socket cannot run two instances on one port: they restart in
place instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from corral.core.statemachine import READY_SETTLE, Restart, Status
from corral.daemon.dispatch import RequestError

if TYPE_CHECKING:
    from corral.daemon.instance import App, Instance
    from corral.daemon.supervisor import Supervisor

RUNNING = (Status.ONLINE, Status.LAUNCHING)
SETTLING = (Status.STOPPING, Status.LAUNCHING)


class Rollout:
    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup

    # ------------------------------------------------------------ waiting

    async def wait_ready(self, inst: Instance, restarts: int = 0) -> str | None:
        """None once the instance is ready; else why it failed (it errored, stopped, or
        restarted more than ``restarts`` times in all, the planned restarts)."""
        loop = self.sup.loop
        policy = inst.state.policy
        timeout = (policy.listen_timeout if policy.wait_ready else READY_SETTLE + 30.0) + 1.0
        deadline = loop.time() + timeout
        while True:
            st = inst.state
            if inst.is_ready(loop.time()):
                return None
            if st.restarts > restarts or st.status in (Status.ERRORED, Status.STOPPED, Status.WAITING_RESTART):
                return f"failed to start ({st.reason or st.status})"
            if loop.time() > deadline:
                return f"was not ready within {timeout:g}s"
            await asyncio.sleep(0.02)

    async def await_gone(self, inst: Instance) -> None:
        await self.sup.wait_for(lambda: inst not in inst.app.instances, inst.state.policy.kill_timeout + 5)

    async def await_all_gone(self, instances: Iterable[Instance]) -> None:
        batch = list(instances)
        if batch:
            timeout = max(i.state.policy.kill_timeout for i in batch) + 5
            await self.sup.wait_for(lambda: all(i not in i.app.instances for i in batch), timeout)

    async def await_settled(self, instances: list[Instance], extra: float = 5.0) -> None:
        """Until no instance of the batch is launching or stopping (or the stop grace passed)."""
        if not instances:
            return
        timeout = max(i.state.policy.kill_timeout for i in instances) + extra
        await self.sup.wait_for(lambda: all(i.state.status not in SETTLING for i in instances), timeout)

    # ------------------------------------------------------------ the rollout step

    async def replace(self, app: App, old: Instance, reason: str | None = None) -> str | None:
        """Start a replacement for ``old``; once it is ready, delete ``old`` and let the
        replacement take its id.  Returns None, or why the replacement failed (it is
        deleted then, and ``old`` keeps running)."""
        new = self.sup.add_replacement(app, old.index)
        why = await self.wait_ready(new)
        if why is not None:
            self.sup.delete(new)
            await self.await_gone(new)
            return why
        self.sup.delete(old)
        await self.await_gone(old)
        self.sup.adopt(new, old)
        if reason is not None:
            new.last_restart_reason = reason
        return None

    async def replace_instance(self, inst: Instance, reason: str) -> None:
        """Restart one instance for a reason (memory, liveness): in cluster mode with a shared
        socket, start the replacement first so capacity never drops; else a plain restart."""
        app = inst.app
        if inst not in app.instances or inst.state.status not in RUNNING:
            return
        if not app.shares_socket() or app.reloading:  # shares_socket: listen, or a node cluster app
            self.sup.dispatch(inst, Restart(reason=reason))
            return
        app.reloading = True
        try:
            why = await self.replace(app, inst, reason)
            if why is not None:
                self.sup.announce(inst, "replace-failed", f"{reason}: the replacement {why}; restarting in place")
                self.sup.dispatch(inst, Restart(reason=reason))
        finally:
            app.reloading = False

    async def reload_app(self, app: App) -> dict[str, Any]:
        """Replace every instance of the app in turn; RequestError when one fails (the
        instances not yet replaced keep serving)."""
        if app.reloading:
            raise RequestError("busy", f"a reload of '{app.name}' is already running; try again when it ends")
        app.reloading = True
        try:
            olds = sorted(app.instances, key=lambda i: i.index)
            if not app.shares_socket():  # a `listen` socket, or a node cluster app (pm2-dropin)
                return await self._rolling_restart(app, olds)
            replaced = 0
            for old in olds:
                if old not in app.instances:
                    continue
                if old.state.status not in RUNNING:
                    self.sup.start(old)
                    continue
                why = await self.replace(app, old)
                if why is not None:
                    raise RequestError(
                        "reload_failed",
                        f"{app.name}: the replacement for instance {old.index} {why}; reload stopped after {replaced} of {len(olds)}, the old instances keep serving",
                    )
                replaced += 1
            return {"name": app.name, "mode": "reload", "replaced": replaced, "message": f"reloaded {replaced} instances with zero downtime"}
        finally:
            app.reloading = False

    async def _rolling_restart(self, app: App, olds: list[Instance]) -> dict[str, Any]:
        """No shared socket: a replacement could not take over the port; restart one by one."""
        for old in olds:
            planned = old.state.restarts + 1
            self.sup.restart(old)
            why = await self.wait_ready(old, planned) if old.state.policy.autorestart else None
            if why is not None:
                raise RequestError("reload_failed", f"{app.name}: instance {old.index} {why}")
        single = len(olds) == 1 and app.spec.exec_mode == "fork"
        msg = "fork mode with one instance and no shared socket: reload falls back to restart" if single else "no shared listen socket: rolling restart, one instance at a time"
        return {"name": app.name, "mode": "restart", "replaced": len(olds), "message": msg}

    # ------------------------------------------------------------ triggers and probes

    async def reload_for(self, app: App, reason: str) -> None:
        """A reload asked by the daemon itself (a probe, a trigger): failures are announced."""
        try:
            await self.reload_app(app)
        except RequestError as e:
            self.sup.announce(app.instances[0] if app.instances else None, "reload-failed", f"{reason}: {e.message}")

    async def restart_for(self, app: App, reason: str) -> None:
        """A trigger (cron, watch) restarts the app: a rolling reload when it shares a socket."""
        for inst in app.instances:
            inst.last_restart_reason = reason
        self.sup.announce(app.instances[0] if app.instances else None, "trigger", reason)
        if app.shares_socket():
            await self.reload_for(app, reason)
            return
        for inst in list(app.instances):
            if inst.state.status in RUNNING:
                self.sup.dispatch(inst, Restart(reason=reason))
