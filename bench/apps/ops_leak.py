"""A leaking app for memory-limit restarts (bench_ops.py, memory_restart).

    python ops_leak.py LIMIT_MIB TARGET_MIB DIR

Idles until the file DIR/go appears (polled every 20 ms) and claims it (renames it to
DIR/claimed-<pid>, so only one process takes each trigger). Then it allocates 1 MiB of
written (resident) memory every 10 ms until its own RSS (/proc/self/statm) reaches
TARGET_MIB, and holds it. The first time its RSS passes LIMIT_MIB it writes
``time.monotonic()`` to DIR/cross-<pid>: the moment the limit was crossed, as the app
itself saw it. Exits at once on SIGINT/SIGTERM.
"""

import os
import signal
import sys
import time

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    limit = int(sys.argv[1]) * 2**20
    target = int(sys.argv[2]) * 2**20
    folder = sys.argv[3]
    me = os.getpid()
    go = os.path.join(folder, "go")
    while True:
        try:
            os.rename(go, os.path.join(folder, f"claimed-{me}"))
            break
        except FileNotFoundError:
            time.sleep(0.02)
    hoard = []
    crossed = False
    while True:
        size = rss()
        if not crossed and size > limit:
            crossed = True
            t = time.monotonic()
            tmp = os.path.join(folder, f".cross-{me}")
            with open(tmp, "w") as f:
                f.write(repr(t))
            os.replace(tmp, os.path.join(folder, f"cross-{me}"))
        if size >= target:
            break
        hoard.append(b"x" * 2**20)  # written, so resident
        time.sleep(0.01)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
