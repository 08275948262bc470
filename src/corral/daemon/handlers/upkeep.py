"""Handlers of the commands that look after files and the daemon itself:
flush, reload_logs, save, resurrect and kill."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

from corral.daemon import dump
from corral.daemon.dispatch import RequestError
from corral.daemon.registry import client_env

if TYPE_CHECKING:
    from corral.daemon.context import DaemonContext
    from corral.daemon.instance import Instance


class UpkeepCommands:
    def __init__(self, daemon: DaemonContext) -> None:
        self.d = daemon
        self.sup = daemon.sup

    async def flush(self, args: dict[str, Any]) -> Any:
        from corral.logs.rotate import rotated_files

        paths: set[str] = set()
        for inst in self.sup.select(args["target"]):
            paths.update(p for p in inst.log_paths().values() if p)
        flushed = []
        for path in sorted(paths):
            for old in rotated_files(path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(old)
                    flushed.append(old)
            try:
                from corral.system import safefs

                safefs.truncate(path)
                flushed.append(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                raise RequestError("failed", f"cannot empty {path}: {e.strerror}")
        return {"files": flushed}

    async def reload_logs(self, args: dict[str, Any]) -> Any:
        return {"reopened": self.d.reload_logs()}

    async def save(self, args: dict[str, Any]) -> Any:
        entries = dump.entries(self.sup.apps.values())
        if not entries and not args.get("force"):
            raise RequestError("empty", "no apps to save (use --force to save an empty list)")
        dump.write(self.d.home.dump_file, entries)
        return {"path": str(self.d.home.dump_file), "count": len(entries)}

    async def resurrect(self, args: dict[str, Any]) -> Any:
        entries, source = dump.read(self.d.home.dump_file, self.d.log)
        started: list[Instance] = []
        for entry in entries:
            spec = self.d.registry.validate([dump.config_of(entry, self.d.log)])[0]
            if spec.name in self.sup.apps:
                continue
            env = client_env(entry.get("base_env") or args.get("client_env"))
            (app,), _ = self.d.registry.bind_all([spec], env, None, redefine=False)
            if entry.get("running", True):
                for inst in app.instances:
                    self.sup.start(inst)
                started.extend(app.instances)
        await self.d.rollout.await_settled(started)
        self.d.notify_systemd()
        return {"processes": self.d.views.processes(started), "all": self.d.views.everyone(), "source": source}

    async def kill(self, args: dict[str, Any]) -> Any:
        n = await self.d.stop_all()
        self.d.loop.call_later(0.05, self.d.stopping.set)
        return {"stopped": n}
