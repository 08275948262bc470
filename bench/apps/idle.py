"""An idle app: sleeps forever (benchmarks of RSS, ls, start and restart)."""

import signal
import sys
import time

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    time.sleep(3600)
