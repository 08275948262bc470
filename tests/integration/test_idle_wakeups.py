"""The daemon wakes only for what is due (issue #10's idle CPU), on a real daemon and process.

An in-process ``Daemon`` (temporary home): with no app, nothing is scheduled
and no timer is armed; with a running app that has a memory limit, the
sample and the log-file check run every second in one wakeup; when the app
is gone, the daemon has no timer again.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

from corral.config.loader import normalize_app
from corral.daemon.applogs import CHECK_JOB
from corral.daemon.resources import JOB as USAGE_JOB
from corral.daemon.server import Daemon
from corral.system.paths import Home

IDLE = "import time\nwhile True:\n    time.sleep(1)\n"


async def until(cond: Callable[[], bool], timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_wakeups_follow_the_apps(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (tmp_path / "idle.py").write_text(IDLE)

    async def main() -> None:
        d = Daemon(Home(home), log=lambda line: None)
        d.start_watchers()
        s = d.scheduler
        try:
            assert len(s.schedule) == 0 and s._timer is None, "no app: nothing to wake for"
            raw = {"name": "idle", "script": "idle.py", "interpreter": sys.executable, "max_memory_restart": "1G"}
            app, _, _ = normalize_app(raw, base_dir=tmp_path)
            await d.start_apps([app], dict(os.environ))
            inst = d.sup.apps["idle"].instances[0]
            await until(lambda: USAGE_JOB in s and CHECK_JOB in s)
            entry = s.schedule.entry(USAGE_JOB)
            assert entry is not None and entry.every == 1.0
            # three samples: each came with the log check, in one wakeup (measured once the
            # instance has settled: settling is a state change, whose sync pass wakes once more)
            await until(lambda: inst.state.settled)
            settled_usage = inst.usage
            await until(lambda: inst.usage is not None and inst.usage is not settled_usage)
            first, wakes = inst.usage.time, s.wakeups  # type: ignore[union-attr]
            await until(lambda: inst.usage is not None and inst.usage.time >= first + 2.5)
            assert s.wakeups - wakes <= 3, f"{s.wakeups - wakes} wakeups for 3 samples and 3 log checks"
            await d.stop_all()
            d.sup.delete(inst)
            await until(lambda: "idle" not in d.sup.apps)
            await until(lambda: len(s.schedule) == 0 and s._timer is None)
        finally:
            for i in d.sup.instances():
                d.sup.stop(i)
            await d.stop_all()
            d.close()

    asyncio.run(main())
