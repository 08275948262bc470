"""Writes COUNT numbered 100-byte lines, numbers START..START+COUNT-1, to stdout as fast as the pipe takes them.

    python ops_flood.py COUNT START [MARKER_FILE]

The same lines as flood.py (``f"{i:010d} "``, 88 filler bytes, a newline), built in memory
first and written straight to fd 1 in 100 kB batches, with a starting number, so several
instances flooding at once write distinct sequence numbers (bench_ops.py, logrotate).
Just before the first write it writes ``time.monotonic()`` to MARKER_FILE. Exits when done.
"""

import os
import sys
import time

LINE = 100
BATCH = 1000


def main() -> int:
    count = int(sys.argv[1])
    start = int(sys.argv[2])
    marker = sys.argv[3] if len(sys.argv) > 3 else None
    filler = b"x" * (LINE - 12) + b"\n"
    end = start + count
    batches = [
        b"".join(b"%010d " % i + filler for i in range(s, min(s + BATCH, end)))
        for s in range(start, end, BATCH)
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
