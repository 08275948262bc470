"""Entry point of the daemon process: take the lock, then serve.

Two CLIs racing to start the daemon each spawn one; the second fails to take
the lock on ``corral.lock`` and exits quietly, and both CLIs talk to the first.
A socket or pid file left by a dead daemon is replaced, since the lock is free.
"""

from __future__ import annotations

import asyncio
import os
import sys

from corral.system.paths import Home


def main() -> int:
    home = Home.from_env()
    home.ensure()
    lock_fd = home.take_lock()
    if lock_fd is None:
        return 0  # another daemon holds the home
    from corral.daemon.lifecycle import run
    from corral.logs.daemonlog import install

    install(str(home.daemon_log))

    try:
        return asyncio.run(run(home))
    except KeyboardInterrupt:
        return 0
    finally:
        os.close(lock_fd)


if __name__ == "__main__":
    sys.exit(main())
