"""The sd_notify protocol, daemon side: one datagram socket per instance.

Each instance gets its own ``NOTIFY_SOCKET`` (an abstract Unix datagram
socket, so any uid can reach it and no file is left behind), which lets apps
and libraries that already speak systemd's protocol work unchanged:
``READY=1``, ``STATUS=...``, ``STOPPING=1``, ``WATCHDOG=1``, ``MAINPID=``.
The sender's pid comes from the kernel (SO_PASSCRED): a datagram from a
process outside the instance's process tree is ignored.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable

MAX_DATAGRAM = 4096
_CRED = struct.Struct("3i")


class NotifySocket:
    def __init__(self, address: str, on_message: Callable[[int, dict[str, str]], None]) -> None:
        """address: '@name' for the abstract namespace, or a path."""
        self.address = address
        self.on_message = on_message
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        bind_to = "\0" + address[1:] if address.startswith("@") else address
        sock.bind(bind_to)
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def on_readable(self) -> None:
        for _ in range(64):
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(MAX_DATAGRAM, socket.CMSG_SPACE(_CRED.size))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            pid = None
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(payload) >= _CRED.size:
                    pid, _uid, _gid = _CRED.unpack(payload[: _CRED.size])
            if pid is None:
                continue
            self.on_message(pid, parse(data))

    def close(self) -> None:
        self.sock.close()
        if not self.address.startswith("@"):
            try:
                os.unlink(self.address)
            except OSError:
                pass


def parse(data: bytes) -> dict[str, str]:
    """``KEY=value`` lines; unknown keys are kept for the caller to ignore."""
    out: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").split("\n"):
        key, sep, value = line.partition("=")
        if sep and key:
            out[key.strip()] = value
    return out
