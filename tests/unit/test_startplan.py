"""StartPlanRunner on a real event loop: the planner's effects performed (launches,
statuses, wait timers) and its end reported."""

from __future__ import annotations

import asyncio
from typing import Any

from corral.core import depplan, deps
from corral.core.appspec import AppSpec, from_wire
from corral.core.startplan import StartPlanRunner, app_observation


def app(name: str, needs: Any = None, **kw: Any) -> AppSpec:
    out: dict[str, Any] = {"name": name, "script": "x.py", "cwd": "/", "autorestart": True, "wait_ready": False, "listen_timeout": 3000, "health": None}
    out.update(kw)
    out["depends_on"] = deps.parse_depends_on(needs)
    return from_wire(out)


def test_runner_launches_in_order_and_finishes() -> None:
    apps = [app("migrate", autorestart=False), app("web", ["migrate"]), app("worker", ["web"])]
    launched: list[str] = []
    statuses: dict[str, str] = {}

    async def main() -> depplan.Finished:
        g = deps.validate(apps)
        runner = StartPlanRunner(depplan.new_plan(g, apps), launch=launched.append, status=statuses.__setitem__)
        runner.begin()
        assert launched == ["migrate"]
        assert statuses == {"web": "waiting for migrate (completed_successfully)", "worker": "waiting for web (ready)"}
        runner.observe("migrate", "started")
        runner.observe("migrate", "exited", 0)
        assert launched == ["migrate", "web"]
        runner.observe("web", "online")
        return await runner.wait(timeout=5)

    done = asyncio.run(main())
    assert done.ok and launched == ["migrate", "web", "worker"]


def test_runner_times_out_on_the_dependencys_own_timeout() -> None:
    apps = [app("api", wait_ready=True, listen_timeout=200), app("web", ["api"])]
    statuses: dict[str, str] = {}

    async def main() -> tuple[depplan.Finished, float]:
        loop = asyncio.get_running_loop()
        g = deps.validate(apps)
        runner = StartPlanRunner(depplan.new_plan(g, apps), launch=lambda n: None, status=statuses.__setitem__)
        t0 = loop.time()
        runner.begin()
        runner.observe("api", "started")
        done = await runner.wait(timeout=5)
        return done, loop.time() - t0

    done, took = asyncio.run(main())
    assert not done.ok and took >= 0.19  # not before the dependency's own listen_timeout
    assert statuses["web"] == "not started: api failed: not ready within 0.2s"


def test_app_observation() -> None:
    assert app_observation(["launching", "online"], [None, None], [None, None]) == [("started", None)]
    assert app_observation(["online", "online"], [True, True], [None, None]) == [("started", None), ("online", None), ("healthy", None)]
    assert app_observation(["online", "online"], [True, False], [None, None]) == [("started", None), ("online", None)]
    assert app_observation(["stopped", "stopped"], [], [0, 3]) == [("started", None), ("exited", 3)]
    assert app_observation(["stopped"], [], [0]) == [("started", None), ("exited", 0)]
    assert app_observation(["online", "errored"], [], [None, 1]) == [("errored", None)]
    assert app_observation(["stopped"], [], [None]) == []
