"""Readiness through an inherited pipe, for apps that cannot send a datagram.

sd_notify needs a Unix datagram socket, which plain Node, Bun and shell scripts
cannot open without a native module.  s6 solved it with a file descriptor: the
supervisor passes the write end of a pipe, names it in an environment variable
(``CORRAL_READY_FD``), and the app writes ``READY=1`` and a newline to it::

    echo READY=1 >&"$CORRAL_READY_FD"                       # bash
    echo READY=1 > /dev/fd/"$CORRAL_READY_FD"               # any sh (dash: fds above 9)
    require('fs').writeSync(+process.env.CORRAL_READY_FD, 'READY=1\\n')   // Node, Bun

Any sd_notify assignment works the same way (``STATUS=...``, ``WATCHDOG=1``): each
line is one notification.  The parsing is pure (:class:`ReadyLines`); the daemon
reads the pipe's other end with its loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

ENV_VAR = "CORRAL_READY_FD"
MAX_LINE = 4096


@dataclass
class ReadyLines:
    """Turns the bytes an app wrote into sd_notify-style assignments."""

    buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[dict[str, str]]:
        self.buffer.extend(data)
        out: list[dict[str, str]] = []
        while True:
            end = self.buffer.find(b"\n")
            if end < 0:
                if len(self.buffer) > MAX_LINE:  # a runaway writer: drop what it wrote
                    self.buffer.clear()
                return out
            line = bytes(self.buffer[:end]).decode("utf-8", "replace").strip()
            del self.buffer[: end + 1]
            fields: dict[str, str] = {}
            for part in line.split():
                name, sep, value = part.partition("=")
                if sep and name:
                    fields[name] = value
            if fields:
                out.append(fields)


def is_ready(notifications: list[dict[str, str]]) -> bool:
    return any(n.get("READY") == "1" for n in notifications)


def ready_pipe() -> tuple[int, int]:
    """(read end for the daemon, non-blocking and close-on-exec; write end, inheritable)."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    os.set_blocking(write_fd, True)
    os.set_inheritable(write_fd, True)
    return read_fd, write_fd


def child_env(write_fd: int) -> dict[str, str]:
    return {ENV_VAR: str(write_fd)}
