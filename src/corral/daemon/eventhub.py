"""The daemon's events: every state change of an instance as a :class:`ProcessEvent`,
kept in a bounded ring, counted by kind and reason (Prometheus), handed to hooks and to
followers of ``corral events``.

Sources: the supervisor's state-machine steps (:func:`corral.core.events.transition_events`:
started, online, ready, exited, restarting, errored, stopped), its announcements
(health: healthy/unhealthy; log files: log-rotated), the start planner (waiting,
blocked) and the reload handler (reloaded). Hooks: ``[[hooks]]`` in corral.toml for
every app, and each app's own ``hooks`` key. Nothing here blocks: hook deliveries are
tasks (corral.core.hooks.HookRunner) and a follower that falls behind loses the oldest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from corral.core.events import (
    HEALTHY,
    LOG_ROTATED,
    UNHEALTHY,
    Change,
    EventCounters,
    EventRing,
    ProcessEvent,
)
from corral.core.hooks import HookRunner, parse_hooks, spec_of

if TYPE_CHECKING:
    from corral.daemon.supervisor import Instance, Supervisor

FOLLOWER_QUEUE = 1000


def daemon_hooks(home_root: str, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """``[[hooks]]`` of corral.toml; a bad table is reported and skipped, never fatal."""
    from corral.daemon.settings import read

    try:
        table = read(home_root).get("hooks")
        return parse_hooks(table)
    except Exception as e:  # a bad corral.toml must not stop the daemon
        log(f"[daemon] hooks in {os.path.join(home_root, 'corral.toml')} ignored: {e}")
        return []


class EventHub:
    def __init__(self, sup: Supervisor, log: Callable[[str], None], home_root: str) -> None:
        self.sup = sup
        self.log = log
        self.ring = EventRing()
        self.counters = EventCounters()
        self.followers: list[asyncio.Queue[ProcessEvent | None]] = []
        self.global_runner = HookRunner([spec_of(h) for h in daemon_hooks(home_root, log)], log=lambda m: log(f"[daemon] {m}"))
        self.app_runners: dict[str, tuple[str, HookRunner]] = {}
        sup.change_listeners.append(self.on_change)
        sup.event_listeners.append(self.on_announce)

    # ------------------------------------------------------------ sources

    def on_change(self, inst: Instance, change: Change) -> None:
        child = getattr(inst, "child", None)
        pid = child.pid if child is not None else inst.state.pid
        self.emit(change.kind, inst.name, instance=inst.index, pid=pid, reason=change.reason, code=change.code, signal=change.signal, message=change.message)

    def on_announce(self, ev: dict[str, Any]) -> None:
        kind, message, name = ev.get("kind"), str(ev.get("message") or ""), ev.get("name")
        if not name:
            return
        inst = next((i for i in self.sup.instances() if i.id == ev.get("id")), None)
        index = inst.index if inst is not None else None
        if kind == "health":
            text = message.split("app " + name + " ", 1)[-1]
            if text.startswith("healthy"):
                self.emit(HEALTHY, name, instance=index, message=text)
            elif text.startswith("unhealthy"):
                self.emit(UNHEALTHY, name, instance=index, reason=text.partition(": ")[2][:200], message=text)
        elif kind == LOG_ROTATED:
            self.emit(LOG_ROTATED, name, instance=index, message=message)

    # ------------------------------------------------------------ emitting

    def emit(self, kind: str, app: str, **fields: Any) -> ProcessEvent:
        event = self.ring.add(kind, app, time.time(), **fields)
        self.counters.count(event)
        try:
            self.global_runner.emit(event)
            runner = self._app_runner(app)
            if runner is not None:
                runner.emit(event)
        except RuntimeError:  # no running loop (shutting down): nothing to deliver to
            pass
        for q in list(self.followers):
            if q.full():
                try:
                    q.get_nowait()  # the follower is behind: it loses the oldest
                except asyncio.QueueEmpty:
                    pass
            q.put_nowait(event)
        return event

    def _app_runner(self, name: str) -> HookRunner | None:
        app = self.sup.apps.get(name)
        hooks = (app.spec.hooks if app is not None else None) or []
        if not hooks:
            self.app_runners.pop(name, None)
            return None
        key = json.dumps([h.table() for h in hooks], sort_keys=True)
        current = self.app_runners.get(name)
        if current is None or current[0] != key:
            runner = HookRunner([spec_of(h.table(), app=name) for h in hooks], log=lambda m: self.log(f"[{name}] {m}"))
            self.app_runners[name] = (key, runner)
            return runner
        return current[1]

    # ------------------------------------------------------------ followers

    def follow(self) -> asyncio.Queue[ProcessEvent | None]:
        q: asyncio.Queue[ProcessEvent | None] = asyncio.Queue(FOLLOWER_QUEUE)
        self.followers.append(q)
        return q

    def unfollow(self, q: asyncio.Queue[ProcessEvent | None]) -> None:
        if q in self.followers:
            self.followers.remove(q)

    async def stream(self, args: dict[str, Any], req_id: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The ``events`` command: the kept events, then live ones until the client leaves."""
        from corral.core import protocol

        names = set(args.get("names") or [])

        def wanted(e: ProcessEvent) -> bool:
            return not names or e.app in names

        def line(e: ProcessEvent) -> bytes:
            return protocol.encode({"v": protocol.VERSION, "stream": "event", **e.to_dict()})

        kept = [e for e in self.ring if wanted(e)]
        kept = kept[-args["last"]:] if args["last"] > 0 else []
        # the kept events go in the reply (for a one-shot call) and as stream lines (for followers)
        result = {"names": sorted(names), "last_seq": self.ring.last_seq, "events": [e.to_dict() for e in kept]}
        writer.write(protocol.encode(protocol.ok(req_id, result)))
        for e in kept:
            writer.write(line(e))
        if not args["follow"]:
            writer.write(protocol.encode({"v": protocol.VERSION, "stream": "end"}))
            with contextlib.suppress(ConnectionError, OSError):
                await writer.drain()
            return
        q = self.follow()
        closed = asyncio.get_running_loop().create_task(reader.read())
        try:
            await writer.drain()
            while not closed.done():
                getter = asyncio.get_running_loop().create_task(q.get())
                await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    break
                event = getter.result()
                if event is None:
                    break
                if wanted(event):
                    writer.write(line(event))
                    await writer.drain()
        except (ConnectionError, OSError):
            pass  # the follower left
        finally:
            closed.cancel()
            self.unfollow(q)

    def last(self, n: int, app: str | None = None) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.ring.last(n, app)]

    async def close(self) -> None:
        await self.global_runner.close()
        for _, runner in self.app_runners.values():
            await runner.close()
        for q in self.followers:
            if q.full():
                q.get_nowait()
            q.put_nowait(None)
