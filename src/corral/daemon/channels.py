"""An instance's readiness channels: its sd_notify endpoint, its ready pipe, its Node IPC channel.

Each turns what the app says (``READY=1``, ``STATUS=...``, ``WATCHDOG=1``, Node's
``process.send('ready')``) into state-machine events for the instance; messages from a
process outside the instance's tree are ignored.  :class:`InstanceProcesses` opens them
around a spawn and closes them when the process exits or the instance is forgotten.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from corral.core.statemachine import Event, Ready
from corral.daemon import nodeipc, nodelink, readypipe
from corral.daemon.instance import Instance
from corral.daemon.sdnotify import (
    NotifyEndpoint,
    NotifyMessage,
    endpoint_address,
    notify_uids,
    read_message,
)
from corral.daemon.spawner import Spawner

Dispatch = Callable[[Instance, Event], None]
Announce = Callable[[Instance | None, str, str], None]


class ReadinessChannels:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        spawner: Spawner,
        *,
        dispatch: Dispatch,
        announce: Announce,
        log: Callable[[str], None],
    ) -> None:
        self.loop = loop
        self.spawner = spawner
        self.dispatch = dispatch
        self.announce = announce
        self.log = log

    def notify_address(self, inst: Instance) -> str:
        """The instance's NOTIFY_SOCKET address (its endpoint is opened once, kept across runs)."""
        if inst.notify is None:
            inst.notify = NotifyEndpoint(
                self.loop,
                endpoint_address(id(inst)),
                lambda pid, msg: self.on_notify(inst, pid, msg),
                uids=notify_uids(inst.app.spec.uid),
                on_ignored=self.log,
            )
        return inst.notify.address

    def on_notify(self, inst: Instance, pid: int, msg: dict[str, str]) -> None:
        child = inst.child
        if child is None:
            return
        if not self.spawner.in_tree(child.pid, pid):
            self.log(f"[{inst.name}:{inst.id}] ignored a notify datagram from pid {pid}, not in the instance's tree")
            return
        message = read_message(msg)
        if message.stopping:
            self.announce(inst, "stopping", "the app says it is stopping")
        self._take(inst, message)

    def attach(self, inst: Instance, pending: nodelink.Pending | None, ready_fd: int | None) -> None:
        """The process exists: its Node IPC channel (when it runs under node) and the read
        end of its ready pipe (when it was given one) start being read."""
        if pending is not None:
            self._attach_node(inst, pending)
        self._close_ready_pipe(inst)
        if ready_fd is not None:
            inst.ready_pipe = readypipe.ReadyPipeReader(self.loop, ready_fd, lambda fields: self.on_ready_pipe(inst, fields))

    def _attach_node(self, inst: Instance, pending: nodelink.Pending) -> None:
        """A node instance's IPC channel: readiness from process.send('ready'); in cluster
        mode, its listen() served with the app's shared socket (Corral as Node's primary)."""
        sockets = inst.app.shared_node_sockets() if nodelink.cluster_worker(inst.app.spec) else None
        old = inst.node
        if old is not None:
            old.close()

        def on_event(event: nodeipc.Event) -> None:
            if isinstance(event, nodeipc.Ready):
                self.dispatch(inst, Ready())

        def on_closed(reason: str | None) -> None:
            if reason:
                self.log(f"[{inst.name}:{inst.id}] node IPC channel closed: {reason}")

        inst.node = pending.attach(sockets, on_event=on_event, on_closed=on_closed)

    def on_ready_pipe(self, inst: Instance, fields: dict[str, str]) -> None:
        """A line written to CORRAL_READY_FD: sd_notify assignments (READY=1, STATUS=...)."""
        if inst.child is None:
            return
        self._take(inst, read_message(fields))

    def _take(self, inst: Instance, message: NotifyMessage) -> None:
        """What the app said, from either channel: its status text, then its events."""
        if message.status_text is not None:
            inst.status_text = message.status_text
        for event in message.events:
            self.dispatch(inst, event)

    def close_after_exit(self, inst: Instance) -> None:
        """The process exited: its ready pipe and Node channel go; the notify endpoint stays."""
        self._close_ready_pipe(inst)
        self._close_node(inst)

    def close_all(self, inst: Instance) -> None:
        """The instance is forgotten."""
        if inst.notify is not None:
            inst.notify.close()
            inst.notify = None
        if inst.watchdog:
            inst.watchdog.cancel()
            inst.watchdog = None
        self._close_node(inst)
        self._close_ready_pipe(inst)

    def _close_ready_pipe(self, inst: Instance) -> None:
        if inst.ready_pipe is not None:
            inst.ready_pipe.close()
            inst.ready_pipe = None

    def _close_node(self, inst: Instance) -> None:
        if inst.node is not None:
            inst.node.close()
            inst.node = None
