"""Writes N numbered lines of exactly 100 bytes to stdout as fast as the pipe takes them, then exits.

    python flood.py N [MARKER_FILE]

Line i is ``f"{i:010d} "``, 88 filler bytes and a newline, so a log file can
be checked for lost, duplicated or torn lines.  All lines are made in memory
first, so what is timed is the pipe and the manager behind it, not this
app's string building; just before the first write, the app writes
``time.monotonic()`` (CLOCK_MONOTONIC, the clock bench/run.py reads) to
MARKER_FILE.  Writes go straight to fd 1 in 100 kB batches, the same
whatever the manager's buffering settings (PYTHONUNBUFFERED or not).
"""

import os
import sys
import time

LINE = 100
BATCH = 1000


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    marker = sys.argv[2] if len(sys.argv) > 2 else None
    filler = b"x" * (LINE - 12) + b"\n"
    batches = [
        b"".join(b"%010d " % i + filler for i in range(start, min(start + BATCH, count)))
        for start in range(0, count, BATCH)
    ]
    if marker:
        with open(marker + ".tmp", "w") as f:
            f.write(repr(time.monotonic()))
        os.replace(marker + ".tmp", marker)
    for batch in batches:
        data = memoryview(batch)
        while data:
            n = os.write(1, data)
            data = data[n:]
    return 0


if __name__ == "__main__":
    sys.exit(main())
