"""Handlers of the commands that only read: ping, list, describe, env, health, history."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from corral import __version__, protocol

if TYPE_CHECKING:
    from corral.daemon.context import DaemonContext


class InfoCommands:
    def __init__(self, daemon: DaemonContext) -> None:
        self.d = daemon
        self.sup = daemon.sup

    async def ping(self, args: dict[str, Any]) -> Any:
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime": time.time() - self.d.started,
            "home": str(self.d.home.root),
            "protocol": protocol.VERSION,
            "connections": self.d.control.connections,
        }

    async def list(self, args: dict[str, Any]) -> Any:
        return self.d.views.everyone()

    async def describe(self, args: dict[str, Any]) -> Any:
        show_env = bool(args.get("show_env"))
        out = []
        for inst in self.sup.select(args["target"]):
            view = self.d.views.describe(inst, show_env=show_env)
            view["events"] = self.d.events.last(10, inst.name)  # the app's last events, oldest first
            out.append(view)
        return out

    async def env(self, args: dict[str, Any]) -> Any:
        inst = self.sup.select([str(args["id"])])[0]
        return dict(sorted((inst.env or self.sup.build_env(inst)).items()))

    async def health(self, args: dict[str, Any]) -> Any:
        return self.d.health_report(list(args.get("names") or []))

    async def history(self, args: dict[str, Any]) -> Any:
        return {str(i.id): self.d.monitor.history(i) for i in self.sup.select(args["target"])}
