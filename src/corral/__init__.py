"""Corral: a production process manager for Python services, and for any other program.

This module is imported by applications too, so it stays light (nothing is
imported until a function is called):

* ``corral.sockets()`` returns the listening sockets Corral passed to this
  instance (systemd socket activation: ``LISTEN_FDS``, ``LISTEN_FDNAMES``,
  ``LISTEN_PID``), by name;
* ``corral.notify_ready()`` / ``corral.notify(status=...)`` speak the
  sd_notify protocol to ``NOTIFY_SOCKET`` (Corral's, or systemd's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import socket as _socket

__version__ = "0.1.0"

_LISTEN_FDS_START = 3
_sockets_cache: dict[str, _socket.socket] | None = None


def sockets() -> dict[str, _socket.socket]:
    """The inherited listening sockets by name (``{"http": <socket>}``); empty when none.

    Checks ``LISTEN_PID`` as sd_listen_fds(3) does, so a child process of the
    app does not pick up sockets meant for its parent. Calling it again
    returns the same socket objects.
    """
    global _sockets_cache
    if _sockets_cache is not None:
        return _sockets_cache
    import os
    import socket

    result: dict[str, socket.socket] = {}
    pid = os.environ.get("LISTEN_PID")
    count = os.environ.get("LISTEN_FDS")
    if count and count.isdigit() and (pid is None or pid == str(os.getpid())):
        names = os.environ.get("LISTEN_FDNAMES", "").split(":")
        for i in range(int(count)):
            fd = _LISTEN_FDS_START + i
            name = names[i] if i < len(names) and names[i] else f"fd{fd}"
            result[name] = socket.socket(fileno=fd)
    _sockets_cache = result
    return result


def notify(*, ready: bool = False, status: str | None = None, stopping: bool = False, watchdog: bool = False, **fields: str) -> bool:
    """Send one sd_notify datagram; False when no NOTIFY_SOCKET is set or it failed."""
    import os
    import socket

    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    lines = []
    if ready:
        lines.append("READY=1")
    if status is not None:
        lines.append(f"STATUS={status}")
    if stopping:
        lines.append("STOPPING=1")
    if watchdog:
        lines.append("WATCHDOG=1")
    lines.extend(f"{k.upper()}={v}" for k, v in fields.items())
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(address)
            s.sendall("\n".join(lines).encode())
        return True
    except OSError:
        return False


def notify_ready(status: str | None = None) -> bool:
    """Tell the manager this instance is ready to serve (``READY=1``)."""
    return notify(ready=True, status=status)
