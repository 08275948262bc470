"""The daemon's life: signals, systemd notification, the pid file, and the
run loop of the background daemon (``python -m corral.daemon``).

:func:`install_signals` is shared with ``corral-runtime``: both run the same
:class:`corral.daemon.server.Daemon` and differ only in what their signals do.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from corral import osproc
from corral.paths import Home

SignalAction = Callable[[], Any]


def install_signals(loop: asyncio.AbstractEventLoop, actions: Mapping[int, SignalAction]) -> None:
    """Run each action on its signal, in the event loop; a coroutine an action
    returns is scheduled as a task (kept referenced until it ends)."""
    tasks: set[asyncio.Task[Any]] = set()

    def make(action: SignalAction) -> Callable[[], None]:
        def on_signal() -> None:
            result = action()
            if isinstance(result, Coroutine):
                task = loop.create_task(result)
                tasks.add(task)
                task.add_done_callback(tasks.discard)

        return on_signal

    for sig, action in actions.items():
        loop.add_signal_handler(sig, make(action))


class SystemdNotifier:
    """READY=1 to systemd (NOTIFY_SOCKET in the daemon's environment), once."""

    def __init__(self) -> None:
        self.sent = False

    @staticmethod
    def wanted() -> bool:
        return bool(os.environ.get("NOTIFY_SOCKET"))

    def ready(self, status: str) -> None:
        if self.sent or not self.wanted():
            return
        import corral

        corral.notify(ready=True, status=status, mainpid=str(os.getpid()))
        self.sent = True


async def run(home: Home) -> int:
    """The background daemon: serve until ``kill`` or SIGTERM/SIGINT (every app stopped first)."""
    from corral.daemon.server import Daemon

    daemon = Daemon(home)
    osproc.set_child_subreaper()

    async def graceful() -> None:
        daemon.log("[daemon] signal received: stopping every app")
        await daemon.stop_all()
        daemon.stopping.set()

    install_signals(
        daemon.loop,
        {
            signal.SIGCHLD: daemon.sup.reap_children,
            signal.SIGUSR2: daemon.reload_logs,
            signal.SIGHUP: daemon.reload_logs,
            signal.SIGTERM: graceful,
            signal.SIGINT: graceful,
        },
    )
    home.pid_file.write_text(f"{os.getpid()}\n")  # before the socket answers (systemd Type=forking)
    from corral import leftovers

    leftovers.stop(leftovers.find(str(home.root)), log=daemon.log)
    await daemon.serve()
    daemon.start_watchers()
    await daemon.start_http()
    await daemon.stopping.wait()
    daemon.close()
    daemon.log("[daemon] exited")
    return 0
