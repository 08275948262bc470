"""What the supervisor keeps per app and per instance: plain records, no effects.

An :class:`App` is one configured app with its shared listening sockets; an
:class:`Instance` is one of its processes, its :class:`~corral.core.statemachine.ProcState`
and what the runtime holds for it (the child, pipe readers, notify endpoint,
timers, the tree recorded at the last signal).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from corral.config.keys import resolve_instances
from corral.core.appspec import AppSpec
from corral.core.launch import log_paths
from corral.core.statemachine import ProcState, Status, is_ready
from corral.logs.sink import LineFormat, LineFormatter
from corral.system import listeners as listen
from corral.system import osproc
from corral.system.paths import Home

if TYPE_CHECKING:
    from corral.daemon.applogs import PipeReader
    from corral.daemon.sdnotify import NotifyEndpoint


class Owner(Protocol):
    """What an app needs of the supervisor that keeps it."""

    home: Home
    cpu_count: int


@dataclass(eq=False)
class Instance:
    id: int
    app: App
    index: int
    state: ProcState
    created_at: float = field(default_factory=time.time)
    child: osproc.Child | None = None
    started_wall: float | None = None
    timer: asyncio.TimerHandle | None = None
    watchdog: asyncio.TimerHandle | None = None
    readers: set[PipeReader] = field(default_factory=set)
    formatter: LineFormatter = field(init=False)
    env: dict[str, str] = field(default_factory=dict)
    tree: list[osproc.Tracked] = field(default_factory=list)  # held since the last signal
    notify: NotifyEndpoint | None = None
    status_text: str | None = None
    usage: Any = None  # sampler.Usage of the latest sample
    last_restart_reason: str | None = None
    health: Any = None  # healthspec.HealthState when probed per instance
    health_pid: int | None = None
    health_spec: Any = None
    cgroup: str | None = None
    node: Any = None  # nodeipc.NodeChannel of a node instance (closed once it has exited)
    ready_pipe: Any = None  # readypipe.ReadyPipeReader: CORRAL_READY_FD's other end
    _paths: tuple[Any, bool, dict[str, str | None]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.refresh_format()

    def refresh_format(self) -> None:
        cfg = self.app.spec
        self.formatter = LineFormatter(
            LineFormat(
                kind=cfg.log_type,
                app_name=cfg.name,
                process_id=self.id,
                date_format=cfg.log_date_format,
            )
        )

    @property
    def name(self) -> str:
        return str(self.app.spec.name)

    def is_ready(self, now: float | None = None) -> bool:
        """Ready to serve: the state machine says so and, when probed per instance,
        the readiness probe too. (``now`` is unused: settling is a timer of the state machine.)"""
        ready = is_ready(self.state)
        if ready and self.health is not None and self.health_pid == (self.child.pid if self.child else None):
            # a per-instance readiness probe gates readiness too
            return bool(self.health.status == "healthy")
        return ready

    @property
    def several(self) -> bool:
        """Whether the app has (or had, counting this one) more than one instance: suffixed files."""
        return resolve_instances(self.app.spec.instances, self.app.sup.cpu_count) > 1 or self.index > 0

    def log_paths(self) -> dict[str, str | None]:
        """The instance's log paths, worked out once per config (and instance count)."""
        cfg = self.app.spec
        several = self.several
        cached = self._paths
        if cached is None or cached[0] is not cfg or cached[1] != several:
            cached = (cfg, several, log_paths(cfg, str(self.app.sup.home.logs_dir), self.index, several))
            self._paths = cached
        return dict(cached[2])


@dataclass(eq=False)
class App:
    sup: Owner  # the Supervisor
    spec: AppSpec
    base_env: dict[str, str]
    instances: list[Instance] = field(default_factory=list)
    listeners: list[listen.Listener] = field(default_factory=list)
    source: str | None = None
    reloading: bool = False
    plan_status: tuple[str, str] | None = None  # ("waiting" | "blocked", why): start order (depends_on)
    health: Any = None  # healthspec.HealthState when probed through the shared socket
    health_pid: int | None = None
    health_spec: Any = None
    node_sockets: Any = None  # nodelink.AppNodeSockets, for node apps in cluster mode

    def bind_listeners(self) -> None:
        """Bind the app's shared sockets (cluster mode); keeps those already bound to
        the same address, closes those no longer configured. Raises ListenError."""
        cfg = self.spec
        wanted: list[str] = []
        if cfg.exec_mode == "cluster" and cfg.listen and cfg.reuse_port:
            # each instance binds its own socket; check now that the addresses can be had
            for i, address in enumerate(cfg.listen):
                if not address.startswith("unix:"):
                    listen.bind(address, listen.listener_name(address, i, cfg.listen_names), backlog=1, reuse_port=True).close()
        if cfg.exec_mode == "cluster" and cfg.listen and not cfg.reuse_port:
            wanted = list(cfg.listen)
        backlog = cfg.backlog or listen.DEFAULT_BACKLOG
        existing = {ls.address: ls for ls in self.listeners}
        bound: list[listen.Listener] = []
        fresh: list[listen.Listener] = []
        try:
            for i, address in enumerate(wanted):
                name = listen.listener_name(address, i, cfg.listen_names)
                ls = existing.get(address)
                if ls is not None:
                    ls.name = name
                    ls.sock.listen(backlog)
                else:
                    ls = listen.bind(address, name, backlog=backlog)
                    fresh.append(ls)
                bound.append(ls)
        except listen.ListenError:
            for ls in fresh:
                ls.close()
            raise
        for ls in self.listeners:
            if ls not in bound:
                ls.close()
        self.listeners = bound

    def instance_sockets(self) -> tuple[list[listen.Listener], list[listen.Listener]]:
        """(sockets to pass to a new instance, those to close after its spawn: reuse_port's own)."""
        cfg = self.spec
        if cfg.exec_mode != "cluster" or not cfg.listen:
            return [], []
        if not cfg.reuse_port:
            return self.listeners, []
        own = []
        for i, address in enumerate(cfg.listen):
            own.append(listen.bind(address, listen.listener_name(address, i, cfg.listen_names), backlog=cfg.backlog or listen.DEFAULT_BACKLOG, reuse_port=True))
        return own, own

    def close_listeners(self) -> None:
        for ls in self.listeners:
            ls.close()
        self.listeners = []
        if self.node_sockets is not None:
            self.node_sockets.close()
            self.node_sockets = None

    def shared_node_sockets(self) -> Any:
        """The sockets the app's node cluster workers listen on (Corral as Node's
        cluster primary): bound once per address, or the app's own listen sockets."""
        from corral.daemon.nodelink import AppNodeSockets

        if self.node_sockets is None:
            self.node_sockets = AppNodeSockets(backlog=self.spec.backlog or listen.DEFAULT_BACKLOG)
        self.node_sockets.adopt_listeners([ls.sock for ls in self.listeners])
        return self.node_sockets

    def shares_socket(self) -> bool:
        """Whether a replacement instance can take over the app's port while the old one
        serves: a shared `listen` socket, or a node app in cluster mode."""
        from corral.daemon.nodelink import cluster_worker

        cfg = self.spec
        return cfg.exec_mode == "cluster" and (bool(cfg.listen) or cluster_worker(cfg))

    def listen_signature(self) -> tuple[Any, ...]:
        cfg = self.spec
        return (cfg.exec_mode, tuple(cfg.listen), cfg.reuse_port, cfg.backlog)

    @property
    def name(self) -> str:
        return str(self.spec.name)


__all__ = ["App", "Instance", "Status"]
