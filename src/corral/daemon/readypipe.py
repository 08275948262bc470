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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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


CHILD_FD_MIN = 64  # above the fds the listen shim moves sockets to (3, 4, ...)


def child_end(write_fd: int) -> int:
    """The write end moved to a high fd number (inheritable); the original is closed."""
    import fcntl

    high = fcntl.fcntl(write_fd, fcntl.F_DUPFD, CHILD_FD_MIN)
    os.close(write_fd)
    os.set_inheritable(high, True)
    return high


class ReadyPipeReader:
    """Reads an instance's ready pipe on the event loop; ``on_fields`` per notification."""

    def __init__(self, loop: Any, read_fd: int, on_fields: Callable[[dict[str, str]], None]) -> None:
        self.loop = loop
        self.fd: int | None = read_fd
        self.lines = ReadyLines()
        self.on_fields = on_fields
        loop.add_reader(read_fd, self._readable)

    def _readable(self) -> None:
        if self.fd is None:
            return
        try:
            data = os.read(self.fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        for fields in self.lines.feed(data):
            self.on_fields(fields)

    def close(self) -> None:
        if self.fd is None:
            return
        self.loop.remove_reader(self.fd)
        os.close(self.fd)
        self.fd = None
