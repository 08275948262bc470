"""What the supervisor adds to a spawn for a Node app: its IPC channel, as PM2 gives one.

* Every instance of an app whose interpreter is node gets Node's IPC channel
  (``NODE_CHANNEL_FD``), so ``process.send('ready')`` is readiness (PM2's
  ``wait_ready``) and ``process.on('message')`` receives ``'shutdown'``.
* An instance in cluster mode is also a Node cluster worker (``NODE_UNIQUE_ID``), with
  Corral's preload (``NODE_OPTIONS=--require .../preload.js``: ``server.close()`` stops
  accepting at once but closes idle connections only after a short grace, so a connection
  accepted just before a reload's disconnect gets its answer);
  its ``listen()`` asks the daemon for the socket, and every instance of the app
  gets the same one (:class:`AppNodeSockets`, which also hands out the app's
  ``listen`` sockets when the port matches, so ``port``/``listen`` and Node's own
  listen share one socket).

Use, in the supervisor's spawn::

    pending = nodelink.prepare(cfg, instance_id)       # before building the launch plan
    env.update(pending.env); pass_fds += (pending.child_fd,)
    child = spawn(...)
    inst.node = pending.attach(app.node_sockets, on_event=..., on_closed=...)  # or pending.abandon()

and ``inst.node.close()`` once the child has exited (not before: Node's cluster
worker exits as soon as its channel closes).
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from corral.core.appspec import AppSpec
from corral.core.launch import LaunchPlan
from corral.daemon import nodeipc
from corral.node import program_kind
from corral.system.listeners import SD_LISTEN_FDS_START

# The channel's fd in the child: high, so that the listen shim's moves to 3, 4, ...
# never land on it.
CHANNEL_FD_MIN = 64


def wants_channel(cfg: AppSpec) -> bool:
    return cfg.interpreter is not None and program_kind(cfg.interpreter) == "node"


def cluster_worker(cfg: AppSpec) -> bool:
    return wants_channel(cfg) and cfg.exec_mode == "cluster"


@dataclass
class Pending:
    """A channel made for one spawn: its env and fd go into the launch plan."""

    parent: socket.socket
    child_fd: int
    env: dict[str, str] = field(default_factory=dict)

    def attach(
        self,
        sockets: nodeipc.SharedSockets | None,
        *,
        on_event: Callable[[nodeipc.Event], None],
        on_closed: Callable[[str | None], None],
    ) -> nodeipc.NodeChannel:
        """After the spawn: close the child's end here and start reading ours."""
        os.close(self.child_fd)
        return nodeipc.NodeChannel(self.parent, sockets, on_event=on_event, on_closed=on_closed)

    def abandon(self) -> None:
        """The spawn failed: close both ends."""
        os.close(self.child_fd)
        self.parent.close()


PRELOAD = str(Path(__file__).resolve().parent.parent / "node" / "preload.js")


def node_options(existing: str | None, preload: str = PRELOAD) -> str:
    """NODE_OPTIONS with Corral's preload first (the app's own options kept after it)."""
    require = f'--require "{preload}"'
    return f"{require} {existing}" if existing else require


def with_channel(plan: LaunchPlan, pending: Pending) -> LaunchPlan:
    """The launch plan with the channel's environment and fd added; a cluster worker
    also gets the preload that lets `server.close()` drain (corral/node/preload.js)."""
    env = {**plan.env, **pending.env}
    if "NODE_UNIQUE_ID" in pending.env:
        env["NODE_OPTIONS"] = node_options(plan.env.get("NODE_OPTIONS"))
    return replace(plan, env=env, pass_fds=(*plan.pass_fds, pending.child_fd))


def prepare(cfg: AppSpec, instance_id: int) -> Pending | None:
    """A channel for a node instance (None for any other app)."""
    if not wants_channel(cfg):
        return None
    parent, fd = nodeipc.channel_pair()
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, CHANNEL_FD_MIN)
    os.close(fd)
    os.set_inheritable(high, True)
    worker = instance_id if cluster_worker(cfg) else None
    return Pending(parent, high, nodeipc.child_env(high, worker_id=worker))


def _for_node(sock: socket.socket) -> socket.socket:
    """An app's own listen socket handed to its Node workers: non-blocking, as the ones
    :class:`~corral.daemon.nodeipc.SharedSockets` binds (the flag is shared by every
    process holding the socket, and all of them are this app's Node workers)."""
    sock.setblocking(False)
    return sock


class AppNodeSockets(nodeipc.SharedSockets):
    """The sockets a Node app's workers listen on: bound once per address for the app,
    or the app's own ``listen`` socket when the worker asks for its port."""

    def __init__(self, *, backlog: int = 2048, adopt: list[socket.socket] | None = None) -> None:
        super().__init__(backlog=backlog)
        self.adopted: dict[int | str, socket.socket] = {}
        self.ordered: list[socket.socket] = []
        self.adopt_listeners(adopt or [])

    def adopt_listeners(self, socks: list[socket.socket]) -> None:
        """Hand out these sockets (the app's `listen`) for their port or path, and for
        ``listen({fd: 3 + i})``: the worker received them as LISTEN_FDS from fd 3."""
        self.adopted = {}
        self.ordered = list(socks)
        for sock in socks:
            name = sock.getsockname()
            self.adopted[name if isinstance(name, str) else int(name[1])] = sock

    def get(self, query: nodeipc.ServerQuery) -> socket.socket:
        if query.fd is not None and query.fd >= 0:
            index = query.fd - SD_LISTEN_FDS_START
            if 0 <= index < len(self.ordered):
                return _for_node(self.ordered[index])
        key: int | str | None = query.address if query.address_type == -1 else query.port
        if key is not None and key in self.adopted:
            return _for_node(self.adopted[key])
        return super().get(query)

    def close(self) -> None:
        """Closes the sockets bound here; adopted ones belong to the app's listeners."""
        super().close()
        self.adopted.clear()
        self.ordered = []
