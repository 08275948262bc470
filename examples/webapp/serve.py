#!/usr/bin/env python3
"""Run the web app under uvicorn: ``python serve.py``.

Where it listens:

* ``LISTEN_FDS`` set (systemd socket activation, or any manager that passes a
  listening socket the same way): serve on the inherited sockets, which start at
  file descriptor 3. ``LISTEN_PID``, when present, must be this process's pid.
* otherwise on ``HOST``:``PORT`` (default 127.0.0.1:8000).

When ``NOTIFY_SOCKET`` is set (systemd ``Type=notify``, or a manager that speaks the
same protocol), ``READY=1`` is sent once the server accepts connections and
``STOPPING=1`` when it begins to shut down.

SIGTERM and SIGINT stop it gracefully: it stops accepting, finishes the requests in
flight (up to ``SHUTDOWN_TIMEOUT`` seconds, default 10), runs the app's shutdown and
exits with status 0. All logs are JSON lines: requests on stdout, the rest on stderr.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from types import FrameType

import uvicorn
from webapp.app import create_app
from webapp.logs import configure_logging
from webapp.settings import Settings, SettingsError

SD_LISTEN_FDS_START = 3
DRAIN_SECONDS = 0.1

log = logging.getLogger("webapp.serve")


def sd_notify(state: str) -> bool:
    """Send one notification datagram to $NOTIFY_SOCKET. False when not supervised."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # Linux abstract namespace
    elif not address.startswith("/"):
        log.warning("NOTIFY_SOCKET not supported", extra={"fields": {"notify_socket": address}})
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("could not notify the supervisor", extra={"fields": {"error": str(exc)}})
        return False
    return True


def inherited_sockets() -> list[socket.socket]:
    """The listening sockets passed the systemd way (sd_listen_fds(3)), if any."""
    count = os.environ.get("LISTEN_FDS", "")
    if not count:
        return []
    listen_pid = os.environ.get("LISTEN_PID", "")
    if listen_pid and listen_pid != str(os.getpid()):
        return []  # meant for another process (we were started by it)
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # don't hand them on to our own children

    sockets = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)):
        os.set_inheritable(fd, False)
        # fileno= reads the family and type from the descriptor itself (uvicorn's
        # --fd uses socket.fromfd(fd, AF_UNIX, ...), which labels any socket AF_UNIX).
        sock = socket.socket(fileno=fd)
        if sock.type != socket.SOCK_STREAM:
            raise SystemExit(f"serve.py: fd {fd} from LISTEN_FDS is not a stream socket")
        sockets.append(sock)
    return sockets


def _address(sock: socket.socket) -> str:
    name = sock.getsockname()
    if sock.family == socket.AF_INET6:
        return f"[{name[0]}]:{name[1]}"
    if sock.family == socket.AF_INET:
        return f"{name[0]}:{name[1]}"
    return str(name)


class Server(uvicorn.Server):
    """uvicorn's server, plus the supervisor notifications around startup and shutdown."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.started:
            return
        listening = [_address(sock) for server in self.servers for sock in server.sockets]
        log.info("listening", extra={"fields": {"addresses": listening}})
        sd_notify("READY=1")

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        sd_notify("STOPPING=1")
        # Stop listening first and give connections accepted a moment ago time to be
        # read: stock uvicorn would close them unread (uvicorn #2757), failing a
        # request during a rolling reload on a shared socket.
        for server in self.servers:
            server.close()
        await asyncio.sleep(DRAIN_SECONDS)
        await super().shutdown(sockets=sockets)


def main() -> int:
    try:
        settings = Settings.from_env()
        port = int(os.environ.get("PORT", "8000"))
        shutdown_timeout = float(os.environ.get("SHUTDOWN_TIMEOUT", "10"))
    except (SettingsError, ValueError) as exc:
        print(f"serve.py: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.instance, uvicorn=True)

    sockets = inherited_sockets()
    config = uvicorn.Config(
        create_app(settings),
        host=os.environ.get("HOST", "127.0.0.1"),
        port=port,
        lifespan="on",
        access_log=False,  # the app's middleware writes the access log
        log_config=None,  # keep the JSON handlers configure_logging installed
        log_level=settings.log_level,
        timeout_graceful_shutdown=shutdown_timeout,
    )
    server = Server(config)

    # uvicorn handles SIGTERM/SIGINT while it serves, then re-raises the signal
    # against the handler that was there before it (uvicorn >= 0.29), which by
    # default would kill the process with that signal after a clean shutdown. These
    # handlers record it instead, so a requested stop exits 0. They also cover a
    # signal that arrives before uvicorn has installed its own.
    stop_signals: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop_signals.append(signum)
        server.should_exit = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    server.run(sockets=sockets or None)

    if stop_signals:
        log.info("exiting", extra={"fields": {"signal": signal.Signals(stop_signals[0]).name}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
