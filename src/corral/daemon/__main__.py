"""Entry point of the daemon process: take the lock, then serve.

Two CLIs racing to start the daemon each spawn one; the second fails to take
the lock on ``corral.lock`` and exits quietly, and both CLIs talk to the first.
A socket or pid file left by a dead daemon is replaced, since the lock is free.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sys

from corral.paths import Home


def main() -> int:
    home = Home.from_env()
    home.ensure()
    lock_fd = os.open(home.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another daemon holds the home
    from corral.daemon.server import run

    try:
        return asyncio.run(run(home))
    except KeyboardInterrupt:
        return 0
    finally:
        os.close(lock_fd)


if __name__ == "__main__":
    sys.exit(main())
