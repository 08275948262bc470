"""What command handlers may use of the daemon: a protocol, so that handlers
depend on this small surface and not on :mod:`corral.daemon.server` (which
builds them: no import cycle)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from corral.core.appspec import AppSpec
from corral.daemon.control import ControlServer
from corral.daemon.eventhub import EventHub
from corral.daemon.logstream import LogStream
from corral.daemon.registry import Registry
from corral.daemon.resources import UsageMonitor
from corral.daemon.rollout import Rollout
from corral.daemon.supervisor import Supervisor
from corral.daemon.views import Views
from corral.system.paths import Home


class DaemonContext(Protocol):
    home: Home
    loop: asyncio.AbstractEventLoop
    started: float
    stopping: asyncio.Event
    log: Callable[[str], None]
    sup: Supervisor
    monitor: UsageMonitor
    views: Views
    rollout: Rollout
    registry: Registry
    logstream: LogStream
    events: EventHub

    @property
    def control(self) -> ControlServer: ...

    async def stop_all(self) -> int: ...

    def start_in_order(self, graph: Any, specs: list[AppSpec], launches: dict[str, Callable[[], None]]) -> Any: ...

    def reload_logs(self) -> int: ...

    def notify_systemd(self) -> None: ...

    def health_report(self, names: list[str]) -> dict[str, Any]: ...
