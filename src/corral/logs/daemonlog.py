"""The daemon's own log (``$CORRAL_HOME/corral.log``), rotated like an app's log.

The CLI starts the daemon with stdout and stderr on ``corral.log``.  Once
installed, ``sys.stdout`` and ``sys.stderr`` write whole lines through a
LogFile (the safe file layer, size rotation, retention); after each rotation
the fresh file is also put on fds 1 and 2, so anything written below Python
(a fatal error from the interpreter) lands in the current file too.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from corral.logs.rotate import RotatePolicy, apply_retention
from corral.logs.sink import LogEvents, LogFile

MAX_SIZE = 10 * 1024 * 1024
RETAIN = 5


class _Rotated(LogEvents):
    def __init__(self, retain: int, fds: tuple[int, ...]) -> None:
        self.retain = retain
        self.fds = fds

    def rotated(self, f: LogFile, rotated_path: str) -> None:
        for fd in self.fds:
            if f.fd >= 0:
                try:
                    os.dup2(f.fd, fd)
                except OSError:
                    pass
        try:
            apply_retention(f.path, self.retain)
        except OSError:
            pass


class DaemonLog:
    """A text stream of whole lines onto a rotating log file."""

    def __init__(self, path: str, *, max_size: int = MAX_SIZE, retain: int = RETAIN, fds: tuple[int, ...] = ()) -> None:
        self.file = LogFile(path, RotatePolicy(max_size=max_size, retain=retain), _Rotated(retain, fds))
        self._partial = ""

    def write(self, text: str) -> int:
        data = self._partial + text
        cut = data.rfind("\n") + 1
        self._partial = data[cut:]
        if cut:
            block = data[:cut].encode("utf-8", "replace")
            self.file.write(block, block.count(b"\n"))
        return len(text)

    def flush(self) -> None:
        pass  # whole lines are written at once; a partial line waits for its end

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.file.fd

    @property
    def encoding(self) -> str:
        return "utf-8"

    def close(self) -> None:
        if self._partial:
            self.write("\n")
        self.file.close()


def _same_file(fd: int, path: str) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def install(path: str, *, max_size: int = MAX_SIZE, retain: int = RETAIN) -> DaemonLog:
    """Route the daemon's stdout and stderr through a rotating DaemonLog on ``path``.
    fds 1 and 2 follow rotations when they were on that file (as the CLI starts the daemon)."""
    fds = tuple(fd for fd in (1, 2) if _same_file(fd, path))
    log = DaemonLog(path, max_size=max_size, retain=retain, fds=fds)
    stream: TextIO = log  # type: ignore[assignment]
    sys.stdout = stream
    sys.stderr = stream
    return log
