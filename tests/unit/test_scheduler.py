"""The daemon's one timer (corral.daemon.scheduler) on a real event loop.

What the pure schedule decides is tested in test_schedule.py; here: the timer
is armed only while something is scheduled, jobs due together run in one
wakeup, one-off jobs run once, a failing job neither stops the others nor the
timer, and a burst of changes makes one sync pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from corral.daemon.scheduler import Scheduler


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def run(body: Callable[[Scheduler, list[str]], Awaitable[None]]) -> list[str]:
    logged: list[str] = []

    async def main() -> None:
        s = Scheduler(asyncio.get_running_loop(), logged.append)
        try:
            await body(s, logged)
        finally:
            s.close()

    asyncio.run(main())
    return logged


def test_no_timer_while_nothing_is_scheduled() -> None:
    async def body(s: Scheduler, _: list[str]) -> None:
        assert s._timer is None
        s.every("a", 0.5, lambda: None)
        assert s._timer is not None
        s.cancel("a")
        assert s._timer is None and "a" not in s

    run(body)


def test_jobs_due_together_share_one_wakeup() -> None:
    ran: list[tuple[str, int]] = []

    async def body(s: Scheduler, _: list[str]) -> None:
        # two jobs on the same grid, a third on a grid that divides it: every wake runs
        # the 0.1 s jobs together, and the 0.2 s one with every other of those wakes
        s.every("sample", 0.1, lambda: ran.append(("sample", s.wakeups)))
        s.every("logs", 0.1, lambda: ran.append(("logs", s.wakeups)))
        s.every("probe", 0.2, lambda: ran.append(("probe", s.wakeups)))
        await until(lambda: sum(1 for k, _ in ran if k == "probe") >= 3)
        wakes_with = {k: {w for kk, w in ran if kk == k} for k in ("sample", "logs", "probe")}
        assert wakes_with["sample"] == wakes_with["logs"]
        assert wakes_with["probe"] <= wakes_with["sample"]
        assert s.wakeups == len(wakes_with["sample"] | wakes_with["probe"])

    run(body)


def test_one_off_runs_once_then_the_timer_is_gone() -> None:
    ran: list[float] = []

    async def body(s: Scheduler, _: list[str]) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + 0.05
        s.at("cron", due, lambda: ran.append(loop.time()))
        await until(lambda: bool(ran))
        assert ran[0] >= due - 1e-6, "never early"
        assert "cron" not in s and s._timer is None and "cron" not in s.jobs

    run(body)


def test_a_failing_job_is_logged_and_the_others_go_on() -> None:
    ran: list[int] = []

    def boom() -> None:
        raise RuntimeError("boom")

    async def body(s: Scheduler, _: list[str]) -> None:
        s.every("bad", 0.05, boom)
        s.every("good", 0.05, lambda: ran.append(1))
        await until(lambda: len(ran) >= 3)

    logged = run(body)
    assert logged and all("boom" in line for line in logged)


def test_a_job_may_reschedule_itself() -> None:
    ran: list[int] = []

    async def body(s: Scheduler, _: list[str]) -> None:
        loop = asyncio.get_running_loop()

        def again() -> None:
            ran.append(1)
            if len(ran) < 3:
                s.at("next", loop.time() + 0.01, again)

        s.at("next", loop.time() + 0.01, again)
        await until(lambda: len(ran) == 3)
        assert "next" not in s and s._timer is None

    run(body)


def test_a_burst_of_changes_makes_one_sync_pass() -> None:
    passes: list[int] = []

    async def body(s: Scheduler, _: list[str]) -> None:
        s.on_change(lambda: passes.append(1))
        for _ in range(100):
            s.changed()
        await until(lambda: bool(passes))
        await until(lambda: s._sync_handle is None)
        assert passes == [1]
        s.changed()
        await until(lambda: len(passes) == 2)

    run(body)


def test_every_keeps_a_job_it_already_has() -> None:
    async def body(s: Scheduler, _: list[str]) -> None:
        action: Any = lambda: None  # noqa: E731
        s.every("a", 1.0, action)
        first = s.when("a")
        s.every("a", 1.0, action)
        assert s.when("a") == first
        s.every("a", 5.0, action)  # a new period: re-placed on its grid
        assert s.schedule.entry("a") is not None and s.schedule.entry("a").every == 5.0  # type: ignore[union-attr]

    run(body)
