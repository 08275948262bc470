"""Performing process effects for instances: spawn, signal, exits, leftovers.

The supervisor hands each effect the state machine returns to this part:
:meth:`InstanceProcesses.spawn` builds the launch plan (pure, in
:mod:`corral.core.launch`) and submits it to the :class:`Spawner` (which starts it
off the event loop, so many spawns overlap; a spawn that hands down sockets or a
ready pipe is done at once); once the process exists it wires
the exit (:class:`Reaper`), the output (:class:`PipeReader`), the pid file and
the cgroup; :meth:`signal` holds the instance's tree by pidfd and signals its
group; exits come back as ``Exited`` events, with ``leftovers`` when the group
or the recorded tree outlived the main process.  The instance's readiness channels
(sd_notify endpoint, ready pipe, Node IPC) are :class:`~corral.daemon.channels.ReadinessChannels`.  Everything it needs from the
supervisor comes in as callbacks (dispatch, announce, publish) and values.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from corral.config.keys import resolve_instances
from corral.core.launch import build_env, pid_file_path, plan_launch
from corral.core.statemachine import Event, Exited, Spawned, SpawnFailed
from corral.daemon import nodeipc, nodelink, readypipe
from corral.daemon.applogs import AppLogs, PipeReader
from corral.daemon.cgroups import HardLimits
from corral.daemon.channels import ReadinessChannels
from corral.daemon.instance import Instance
from corral.daemon.pidfile import write_pid_file
from corral.daemon.reaper import Reaper
from corral.daemon.spawner import Spawner
from corral.system import listeners as listen
from corral.system import osproc

Dispatch = Callable[[Instance, Event], None]
Announce = Callable[[Instance | None, str, str], None]
Publish = Callable[[Instance, str, list[bytes], float], None]


def _close_all(listeners: list[listen.Listener]) -> None:
    for ls in listeners:
        ls.close()


@dataclass
class Leftovers:
    """What outlived an exited main process: its group (by id, safe while a member is held)
    and the processes held by pidfd."""

    pgid: int
    tracked: list[osproc.Tracked]


class InstanceProcesses:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        spawner: Spawner,
        reaper: Reaper,
        logs: AppLogs,
        *,
        home: str,
        cpu_count: int,
        dispatch: Dispatch,
        announce: Announce,
        log: Callable[[str], None],
        publish: Publish,
        following: Callable[[], bool],
    ) -> None:
        """home: CORRAL_HOME for the instances' environment; following: whether anyone
        follows the logs (lines are then published)."""
        self.loop = loop
        self.spawner = spawner
        self.reaper = reaper
        self.logs = logs
        self.home = home
        self.cpu_count = cpu_count
        self.dispatch = dispatch
        self.announce = announce
        self.log = log
        self.publish = publish
        self.following = following
        self.limits = HardLimits()
        self.channels = ReadinessChannels(loop, spawner, dispatch=dispatch, announce=announce, log=log)
        self.by_pid: dict[int, Instance] = {}
        self.leftovers: dict[int, Leftovers] = {}
        # node cluster workers asked to disconnect, by pid: their channels until they exit
        self._draining: dict[int, nodeipc.NodeChannel] = {}

    def build_env(self, inst: Instance) -> dict[str, str]:
        return build_env(inst.app.spec, inst.app.base_env, index=inst.index, instance_id=inst.id, home=self.home)

    def release(self, inst: Instance) -> None:
        """The instance is forgotten: close its channels, drop what it holds."""
        self.channels.close_all(inst)
        self._untrack(inst)

    def spawn(self, inst: Instance) -> None:
        """Build the plan and start it off the loop; ``Spawned`` or ``SpawnFailed`` follows."""
        cfg = inst.app.spec
        inst.status_text = None
        to_close: list[listen.Listener] = []
        pending: nodelink.Pending | None = None
        ready: tuple[int, int] | None = None

        def abandon() -> None:
            _close_all(to_close)
            if pending is not None:
                pending.abandon()
            if ready is not None:
                os.close(ready[0])
                os.close(ready[1])

        try:
            socks, to_close = inst.app.instance_sockets()
            plan = plan_launch(cfg, self.build_env(inst), sockets=socks, notify_address=self.channels.notify_address(inst))
            pending = nodelink.prepare(cfg, inst.id)
            if pending is not None:
                plan = nodelink.with_channel(plan, pending)
            if cfg.wait_ready or cfg.watchdog_sec:
                # apps that report readiness: also a pipe for those without datagram sockets
                ready = readypipe.ready_pipe()
                ready = (ready[0], readypipe.child_end(ready[1]))
                plan = replace(plan, env={**plan.env, **readypipe.child_env(ready[1])}, pass_fds=(*plan.pass_fds, ready[1]))
        except (listen.ListenError, OSError) as e:
            abandon()
            self.loop.call_soon(self.dispatch, inst, SpawnFailed(str(e)))
            return
        inst.env = plan.env

        def done(result: osproc.Child | Exception) -> None:
            if isinstance(result, Exception):
                abandon()
                self.loop.call_soon(self.dispatch, inst, SpawnFailed(str(result)))
                return
            _close_all(to_close)  # the child holds its own now
            if ready is not None:
                os.close(ready[1])
            self.channels.attach(inst, pending, ready[0] if ready is not None else None)
            self._spawned(inst, result)

        if plan.pass_fds:
            # sockets or a ready pipe to hand down: spawned at once, as they are now (a
            # redefinition may close the app's sockets while a spawn waits in the pool)
            try:
                result: osproc.Child | Exception = self.spawner.spawn(plan)
            except (osproc.SpawnError, OSError) as e:
                result = e
            done(result)
        else:
            self.spawner.submit(plan, done)

    def _spawned(self, inst: Instance, child: osproc.Child) -> None:
        """The process exists: wire its exit, output, pid file and cgroup, then tell the state machine."""
        cfg = inst.app.spec
        if cfg.memory_max or cfg.cpu_max:
            inst.cgroup, notice = self.limits.apply(inst.app.name, f"corral-{inst.app.name}-{inst.id}", child.pid, cfg.memory_max, cfg.cpu_max)
            if notice:
                self.announce(inst, "notice", notice)
        inst.child = child
        inst.started_wall = time.time()
        self._untrack(inst)
        self.by_pid[child.pid] = inst
        self.reaper.watch(child.pid, lambda status: self.child_exited(child.pid, status), child.pidfd)
        child.pidfd = None  # the reaper's now
        self._read_output(inst, child)
        path = pid_file_path(cfg, inst.index, resolve_instances(cfg.instances, self.cpu_count) > 1)
        if path:
            error = write_pid_file(path, child.pid)
            if error:
                self.announce(inst, "warning", error)
        self.dispatch(inst, Spawned(child.pid))

    def _read_output(self, inst: Instance, child: osproc.Child) -> None:
        paths = inst.log_paths()
        policy = self.logs.setup(inst.app.name, inst.app.spec).policy

        def publish(stream: str, lines: list[bytes], ts: float) -> None:
            self.publish(inst, stream, lines, ts)

        def closed(reader: PipeReader) -> None:
            inst.readers.discard(reader)
            self.logs.release(reader.targets)

        for fd, stream, own in ((child.stdout_fd, "out", "out_file"), (child.stderr_fd, "err", "error_file")):
            targets = self.logs.acquire((paths[own], paths["log_file"]), policy)
            inst.readers.add(PipeReader(self.loop, fd, stream, targets, lambda: inst.formatter, self.following, publish, closed))

    def signal(self, inst: Instance, sig: str) -> None:
        child = inst.child
        if child is None:
            return
        channel = inst.node
        if sig != "SIGKILL" and channel is not None and nodelink.cluster_worker(inst.app.spec):
            # A Node cluster worker stops as under PM2: first disconnect (it closes its
            # listening handles and lets open requests finish), then the kill signal; the
            # state machine's kill_timeout still ends it with SIGKILL.
            done = [False]

            def then() -> None:
                if not done[0] and inst.child is child:
                    done[0] = True
                    self._signal_now(inst, sig)

            inst.node = None  # one disconnect per stop; closed by the exit as before
            self._draining[child.pid] = channel
            channel.disconnect(then)
            # the signal anyway if it has not closed its channel near the end of the grace
            timeout = inst.state.policy.kill_timeout
            self.loop.call_later(max(timeout - 0.4, timeout / 2), then)
            return
        self._signal_now(inst, sig)

    def _signal_now(self, inst: Instance, sig: str) -> None:
        child = inst.child
        if child is None:
            return
        # Hold the whole tree now (by pidfd): descendants that left the group (setsid)
        # are still killed at the end of the grace period, and a pid that ended meanwhile
        # and went to another process is never signalled.
        alive = [t for t in inst.tree if self.spawner.tracked_alive(t)]
        self.spawner.untrack([t for t in inst.tree if t not in alive])
        held = {t.pid for t in alive}
        fresh = self.spawner.track_tree(child.pid)
        self.spawner.untrack([t for t in fresh if t.pid in held])
        inst.tree = alive + [t for t in fresh if t.pid not in held]
        # the group is signalled by id while its leader is ours and not reaped: it cannot be reused
        self.spawner.signal_group(child.pgid, sig)
        if sig == "SIGKILL":
            self.spawner.signal_tracked(inst.tree, "SIGKILL")

    def _untrack(self, inst: Instance) -> None:
        self.spawner.untrack(inst.tree)
        inst.tree = []

    def child_exited(self, pid: int, status: int) -> None:
        inst = self.by_pid.pop(pid, None)
        if inst is None or inst.child is None or inst.child.pid != pid:
            return
        child = inst.child
        osproc.mark_reaped(child, status)
        for reader in list(inst.readers):
            reader.drain()
        inst.child = None
        self.channels.close_after_exit(inst)  # only now: a cluster worker exits when its channel closes
        draining = self._draining.pop(pid, None)
        if draining is not None:
            draining.close()
        if inst.cgroup:
            from corral.daemon import cgroups

            cgroups.remove(inst.cgroup)
            inst.cgroup = None
        code, sig = osproc.decode_status(status)
        leftovers = self._hold_leftovers(inst, child)
        self.dispatch(inst, Exited(code, sig, leftovers=leftovers))

    def _hold_leftovers(self, inst: Instance, child: osproc.Child) -> bool:
        """The main process is gone; its group or tree may live on: hold them for the grace period."""
        alive = [t for t in inst.tree if self.spawner.tracked_alive(t)]
        self.spawner.untrack([t for t in inst.tree if t not in alive])
        inst.tree = []
        group = self.spawner.track_group(child.pgid) if self.spawner.group_alive(child.pgid) else []
        if not alive and not group:
            return False
        self.leftovers[child.pid] = Leftovers(child.pgid, [*alive, *group])
        return True

    def signal_leftovers(self, pid: int, sig: str) -> None:
        held = self.leftovers.get(pid)
        if held is None:
            return
        # the group id is still ours while one of its members we hold is alive
        if any(self.spawner.tracked_alive(t) for t in held.tracked):
            self.spawner.signal_group(held.pgid, sig)
        self.spawner.signal_tracked(held.tracked, sig)
        if sig == "SIGKILL":
            self.spawner.untrack(held.tracked)
            del self.leftovers[pid]
