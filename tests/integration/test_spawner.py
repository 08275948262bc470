"""OsSpawner on real processes: spawns off the event loop, overlapping, and no exit lost.

A child that exits before its spawn is handed over to the loop must reach the
watcher registered at hand-over, not be reaped as an orphan by a SIGCHLD that
came in between.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import pytest

from corral.core.launch import LaunchPlan
from corral.daemon.reaper import Reaper
from corral.daemon.spawner import OsSpawner
from corral.system import osproc

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux process API")


def plan(*argv: str) -> LaunchPlan:
    return LaunchPlan(argv=list(argv), env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, cwd="/")


async def _run(spawner: OsSpawner, plans: list[LaunchPlan], deadline: float = 10.0) -> tuple[dict[int, int], list[object], list[str]]:
    loop = asyncio.get_running_loop()
    orphans: list[str] = []
    reaper = Reaper(loop, spawner, orphans.append)
    loop.add_signal_handler(signal.SIGCHLD, reaper.reap_children)
    exits: dict[int, int] = {}
    results: list[object] = []
    try:

        def done(result: osproc.Child | Exception) -> None:
            results.append(result)
            if isinstance(result, osproc.Child):
                pid = result.pid
                reaper.watch(pid, lambda status: exits.__setitem__(pid, status), result.pidfd)
                for fd in (result.stdout_fd, result.stderr_fd):
                    os.close(fd)

        for p in plans:
            spawner.submit(p, done)
        end = time.monotonic() + deadline
        children = lambda: [r for r in results if isinstance(r, osproc.Child)]  # noqa: E731
        while time.monotonic() < end and (len(results) < len(plans) or len(exits) < len(children())):
            await asyncio.sleep(0.01)
        return exits, results, orphans
    finally:
        loop.remove_signal_handler(signal.SIGCHLD)
        for r in results:
            if isinstance(r, osproc.Child) and r.pid not in exits:
                osproc.signal_group(r.pgid, "SIGKILL")
        spawner.shutdown()


def test_quick_exits_during_overlapping_spawns_are_delivered_not_orphaned() -> None:
    spawner = OsSpawner(threads=4)
    plans = [plan("/bin/sh", "-c", f"exit {i % 7}") for i in range(30)]
    exits, results, orphans = asyncio.run(_run(spawner, plans))
    children = [r for r in results if isinstance(r, osproc.Child)]
    assert len(children) == 30
    assert sorted(osproc.decode_status(s)[0] or 0 for s in exits.values()) == sorted(i % 7 for i in range(30))
    assert orphans == []
    assert spawner.in_flight == 0


def test_spawn_errors_come_back_as_errors() -> None:
    spawner = OsSpawner(threads=2)
    exits, results, orphans = asyncio.run(_run(spawner, [plan("/nonexistent/program"), plan("/bin/true")]))
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], osproc.SpawnError) and "/nonexistent/program" in str(errors[0])
    assert len(exits) == 1 and orphans == []


def test_spawns_overlap_and_the_loop_keeps_running() -> None:
    """While 8 spawns are in flight the loop still turns (nothing blocks it for a whole spawn batch)."""

    async def main() -> tuple[int, dict[int, int]]:
        spawner = OsSpawner(threads=4)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.get_running_loop().create_task(ticker())
        try:
            exits, _results, _orphans = await _run(spawner, [plan("/bin/true") for _ in range(8)])
        finally:
            task.cancel()
        return ticks, exits

    ticks, exits = asyncio.run(main())
    assert len(exits) == 8 and all(osproc.decode_status(s) == (0, None) for s in exits.values())
    assert ticks > 1
