"""The daemon's life: signals, the HTTP endpoint, the pid file, and the run
loop of the background daemon (``python -m corral.daemon``).

:func:`install_signals` and :func:`start_http` are shared with
``corral-runtime``: both run the same :class:`corral.daemon.server.Daemon` and
differ only in what their signals do and where their output goes.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from corral import osproc
from corral.daemon.systemd import SystemdNotifier  # noqa: F401  (its former home)
from corral.paths import Home

if TYPE_CHECKING:
    from corral.daemon.server import Daemon

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


async def start_http(daemon: Daemon, listen_override: str | None = None) -> None:
    """The optional HTTP endpoint (``[http] listen`` in corral.toml, CORRAL_HTTP, or
    ``corral-runtime --health-port``); a failure to bind is logged, never fatal."""
    from corral.daemon import http

    try:
        conf = http.settings(str(daemon.home.root))
        listen_at = listen_override or conf.get("listen")
        if not listen_at:
            return
        host, port = http.parse_listen(listen_at)
        daemon.http = http.HttpEndpoint(daemon, host, port, with_metrics=conf.get("metrics", True))
        await daemon.http.start()
    except (OSError, ValueError) as e:
        daemon.log(f"[daemon] HTTP endpoint not started: {e}")


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
    await start_http(daemon)
    await daemon.stopping.wait()
    daemon.close()
    daemon.log("[daemon] exited")
    return 0
