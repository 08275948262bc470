"""Table tests of start order (corral.core.deps): parsing, validation, ordering, and the pure
start planner on a fake clock, with invariants checked after every step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from corral.core import depplan, deps
from corral.core.appspec import AppSpec, from_wire
from corral.core.depplan import (
    ArmWait,
    Begin,
    Blocked,
    Finished,
    Launch,
    Observed,
    PlanEffect,
    PlanState,
    Waiting,
    WaitTimeout,
    plan_step,
)
from corral.core.errors import ConfigError

HEALTH = {"kind": "http", "target": "/h", "interval": 1000, "timeout": 500, "start_period": 2000, "failure_threshold": 3, "success_threshold": 1}


def app(name: str, needs: Any = None, **kw: Any) -> AppSpec:
    out: dict[str, Any] = {"name": name, "script": "x.py", "cwd": "/", "autorestart": True, "wait_ready": False, "listen_timeout": 3000, "health": None}
    out.update(kw)
    out["depends_on"] = deps.parse_depends_on(needs)
    return from_wire(out)


def oneshot(name: str, needs: Any = None, **kw: Any) -> AppSpec:
    return app(name, needs, autorestart=False, **kw)


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (None, []),
        ("db", [{"name": "db", "condition": "default"}]),
        (["db", "migrate"], [{"name": "db", "condition": "default"}, {"name": "migrate", "condition": "default"}]),
        ({"db": "healthy"}, [{"name": "db", "condition": "healthy"}]),
        ({"m": "service_completed_successfully"}, [{"name": "m", "condition": "completed_successfully"}]),
        ({"m": {"condition": "service_started"}}, [{"name": "m", "condition": "started"}]),
        ([{"m": "Completed"}], [{"name": "m", "condition": "completed"}]),
    ],
)
def test_parse(value: Any, parsed: list[dict[str, str]]) -> None:
    assert deps.parse_depends_on(value) == parsed
    assert deps.parse_depends_on(parsed) == parsed  # normalised values parse to themselves


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (3, "expected a list of app names"),
        ([""], "expected an app name"),
        ({"db": "alive"}, "unknown condition 'alive'"),
        (["db", "db"], "named twice"),
        ({"db": {"when": "ready"}}, "expected {condition"),
    ],
)
def test_parse_errors(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("{", r"\{")):
        deps.parse_depends_on(value)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("apps", "bad_app", "message"),
    [
        ([app("a", ["nope"])], "a", "no app named 'nope'"),
        ([app("a", ["a"])], "a", "cannot depend on itself"),
        ([app("a", ["b"]), app("b", ["a"])], "a", "dependency cycle: a -> b -> a"),
        ([app("a"), app("b", ["c"]), app("c", ["d"]), app("d", ["b"])], "b", "cycle: b -> c -> d -> b"),
        ([app("a", {"db": "healthy"}), app("db")], "a", "'db' can never be healthy: it has no health probe"),
        ([app("a", {"db": "completed"}), app("db")], "a", "'db' never completes"),
        ([app("a", {"db": "completed_successfully"}), app("db")], "a", "'db' never completes"),
    ],
)
def test_config_errors_name_file_app_and_key(apps: list[dict[str, Any]], bad_app: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        deps.validate(apps, file="/srv/eco.toml")
    e = info.value
    assert (e.file, e.app, e.key) == ("/srv/eco.toml", bad_app, "depends_on")
    assert message in e.message
    assert e.exit_code == 2


def test_default_condition_follows_the_dependency() -> None:
    g = deps.validate([oneshot("migrate"), app("db"), app("web", ["migrate", "db"])])
    assert g.needs["web"] == (deps.Dependency("migrate", "completed_successfully"), deps.Dependency("db", "ready"))


def test_a_registered_app_outside_the_file_may_be_named() -> None:
    g = deps.validate([app("web", ["db"])], known=["db"])
    assert g.needs["web"] == (deps.Dependency("db", "ready"),)


# ---------------------------------------------------------------- ordering

CHAIN = [oneshot("migrate"), app("web", ["migrate", "cache"]), app("cache"), app("worker", ["web"]), app("lone")]


def test_start_and_stop_levels() -> None:
    g = deps.validate(CHAIN)
    assert deps.start_levels(g) == [["migrate", "cache", "lone"], ["web"], ["worker"]]
    assert deps.stop_levels(g) == [["worker"], ["web"], ["migrate", "cache", "lone"]]
    assert deps.stop_levels(g, ["cache", "worker"]) == [["worker"], ["cache"]]  # worker needs cache through web
    assert deps.start_levels(g, ["web", "cache"]) == [["cache"], ["web"]]


def test_closures() -> None:
    g = deps.validate(CHAIN)
    assert deps.with_dependencies(g, ["worker"]) == ["migrate", "web", "cache", "worker"]
    assert deps.with_dependents(g, ["cache"]) == ["cache", "web", "worker"]
    assert deps.with_dependents(g, ["lone"]) == ["lone"]


def test_levels_respect_every_edge_on_a_long_chain() -> None:
    apps = [app(f"a{i}", [f"a{i - 1}"] if i else None) for i in range(30)][::-1]
    g = deps.validate(apps)
    levels = deps.start_levels(g)
    assert [lv for lv in levels] == [[f"a{i}"] for i in range(30)]


def test_condition_timeouts_come_from_the_app() -> None:
    assert deps.condition_timeout(app("x", wait_ready=True, listen_timeout=20000), "ready") == 20.0
    assert deps.condition_timeout(app("x", health=HEALTH), "healthy") == (2000 + 1000 * 4 + 500) / 1000
    assert deps.condition_timeout(app("x"), "ready") is None  # online at spawn: nothing to time
    assert deps.condition_timeout(oneshot("x"), "completed_successfully") is None


# ---------------------------------------------------------------- the planner


def render(e: PlanEffect) -> str:
    if isinstance(e, Launch):
        return f"launch {e.app}"
    if isinstance(e, Waiting):
        return f"{e.app}: {e.reason}"
    if isinstance(e, Blocked):
        return f"{e.app}: {e.reason}"
    if isinstance(e, ArmWait):
        return f"wait {e.app} {e.delay:g}s"
    if isinstance(e, Finished):
        return "finished ok" if e.ok else "finished failed: " + "; ".join(f"{a}: {r}" for a, r in e.failures)
    raise AssertionError(e)


def check_invariants(s: PlanState) -> None:
    for a in s.launched:
        # nothing is launched before what it needs is met
        assert a not in s.blocked
    for a in s.blocked:
        assert a not in s.launched
    if s.done:
        assert set(s.launched) | set(s.blocked) == set(s.order)


def run_plan(apps: Sequence[dict[str, Any]], steps: Sequence[tuple[float, Any]], names: Sequence[str] | None = None) -> tuple[PlanState, list[str]]:
    g = deps.validate(apps)
    state = depplan.new_plan(g, apps, names)
    now = 1000.0
    out: list[str] = []
    timers: dict[str, int] = {}
    for advance, event in [(0.0, Begin()), *steps]:
        now += advance
        if isinstance(event, str):  # "fire NAME": the runtime fires that app's wait timer
            name = event.split()[1]
            event = WaitTimeout(name, timers[name])
        state, effects = plan_step(state, event, now)
        for e in effects:
            if isinstance(e, ArmWait):
                timers[e.app] = e.token
        out.extend(render(e) for e in effects)
        check_invariants(state)
    return state, out


S = Observed
PLAN_CASES: dict[str, tuple[list[dict[str, Any]], list[tuple[float, Any]], list[str]]] = {
    "a migration runs before the web app": (
        [oneshot("migrate"), app("web", ["migrate"])],
        [(0.1, S("migrate", "started")), (0.1, S("migrate", "online")), (2.0, S("migrate", "exited", 0))],
        ["launch migrate", "web: waiting for migrate (completed_successfully)", "launch web", "finished ok"],
    ),
    "a failed migration stops the chain": (
        [oneshot("migrate"), app("web", ["migrate"]), app("worker", ["web"]), app("other")],
        [(0.1, S("migrate", "started")), (1.0, S("migrate", "exited", 3))],
        [
            "launch migrate",
            "launch other",
            "web: waiting for migrate (completed_successfully)",
            "worker: waiting for web (ready)",
            "web: not started: migrate failed: exited with code 3",
            "worker: not started: web was not started (not started: migrate failed: exited with code 3)",
            "finished failed: web: not started: migrate failed: exited with code 3; "
            "worker: not started: web was not started (not started: migrate failed: exited with code 3); "
            "migrate: exited with code 3",
        ],
    ),
    "'completed' accepts any code": (
        [oneshot("seed"), app("web", {"seed": "completed"})],
        [(0.5, S("seed", "exited", 1))],
        ["launch seed", "web: waiting for seed (completed)", "launch web", "finished ok"],
    ),
    "ready waits for READY=1 and times out on the app's listen_timeout": (
        [app("api", wait_ready=True, listen_timeout=5000), app("web", ["api"])],
        [(0.1, S("api", "started")), (5.0, "fire api")],
        [
            "launch api",
            "wait api 5s",
            "web: waiting for api (ready)",
            "web: not started: api failed: not ready within 5s",
            "finished failed: web: not started: api failed: not ready within 5s; api: not ready within 5s",
        ],
    ),
    "a slow healthy dependency is waited for": (
        [app("db", health=HEALTH), app("web", {"db": "healthy"})],
        [(0.1, S("db", "started")), (0.1, S("db", "online")), (4.0, S("db", "healthy"))],
        ["launch db", "wait db 6.5s", "web: waiting for db (healthy)", "launch web", "finished ok"],
    ),
    "a stale wait timer is ignored once the dependency is met": (
        [app("db", health=HEALTH), app("web", {"db": "ready"})],
        [(0.1, S("db", "online")), (1.0, S("db", "healthy")), (6.0, "fire db")],
        ["launch db", "wait db 6.5s", "web: waiting for db (ready)", "launch web", "finished ok"],
    ),
    "unhealthy before ever healthy fails the dependents": (
        [app("db", health=HEALTH), app("web", {"db": "healthy"})],
        [(0.1, S("db", "online")), (5.0, S("db", "unhealthy", reason="3 failed probes"))],
        ["launch db", "wait db 6.5s", "web: waiting for db (healthy)", "web: not started: db failed: 3 failed probes",
         "finished failed: web: not started: db failed: 3 failed probes; db: 3 failed probes"],
    ),
    "crash-restarts of a long-running dependency are not failures": (
        [app("api", wait_ready=True), app("web", ["api"])],
        [(0.1, S("api", "started")), (0.2, S("api", "exited", 1)), (0.1, S("api", "started")), (0.5, S("api", "online"))],
        ["launch api", "wait api 3s", "web: waiting for api (ready)", "launch web", "finished ok"],
    ),
    "a diamond starts its top once both sides are met": (
        [app("base"), app("left", ["base"]), app("right", {"base": "started"}), app("top", ["left", "right"])],
        [(0.1, S("base", "online")), (0.1, S("left", "online")), (0.1, S("right", "started")), (0.1, S("right", "online"))],
        [
            "launch base",
            "left: waiting for base (ready)",
            "right: waiting for base (started)",
            "top: waiting for left (ready), right (ready)",
            "launch left",
            "launch right",
            "top: waiting for right (ready)",
            "launch top",
            "finished ok",
        ],
    ),
    "stopping a dependency while others wait fails them": (
        [oneshot("m"), app("web", ["m"])],
        [(0.1, S("m", "stopped", reason="stopped by the user"))],
        ["launch m", "web: waiting for m (completed_successfully)", "web: not started: m failed: stopped by the user",
         "finished failed: web: not started: m failed: stopped by the user; m: stopped by the user"],
    ),
}


@pytest.mark.parametrize("case", list(PLAN_CASES))
def test_plan(case: str) -> None:
    apps, steps, expected = PLAN_CASES[case]
    _, out = run_plan(apps, steps)
    assert out == expected


def test_errored_dependency() -> None:
    apps = [app("api", wait_ready=True), app("web", ["api"])]
    state, out = run_plan(apps, [(0.1, S("api", "started")), (0.5, S("api", "errored", reason="16 unstable restarts"))])
    assert out[-1] == "finished failed: web: not started: api failed: 16 unstable restarts; api: 16 unstable restarts"
    assert state.done


def test_plan_of_some_apps_brings_what_they_need() -> None:
    state, out = run_plan(CHAIN, [], names=["web"])
    assert set(state.order) == {"migrate", "cache", "web"}
    assert "launch lone" not in out and "launch worker" not in out


def test_events_of_apps_outside_the_plan_and_after_it_are_ignored() -> None:
    apps = [app("a"), app("b", ["a"])]
    state, out = run_plan(apps, [(0.1, S("a", "online")), (0.1, S("zzz", "online")), (0.1, S("a", "errored"))])
    assert out == ["launch a", "b: waiting for a (ready)", "launch b", "finished ok"]
    assert state.done


def test_every_launch_follows_its_conditions_on_random_histories() -> None:
    """Invariant on random observation orders: an app is launched only after each of its
    dependencies was observed meeting its condition."""
    import random

    rng = random.Random(7)
    apps = [oneshot("m"), app("db", health=HEALTH), app("api", {"db": "healthy", "m": "completed_successfully"}, wait_ready=True), app("web", ["api"]), app("w", {"api": "started"})]
    g = deps.validate(apps)
    for _ in range(300):
        state = depplan.new_plan(g, apps)
        seen: dict[str, set[str]] = {n: set() for n in g.order}
        launched: list[str] = []
        state, effects = plan_step(state, Begin(), 0.0)
        now = 0.0
        for _ in range(40):
            for e in effects:
                if isinstance(e, Launch):
                    for d in g.needs[e.app]:
                        cond = {"completed_successfully": "exited0", "ready": "online", "started": "started", "healthy": "healthy"}[d.condition]
                        assert cond in seen[d.name], (e.app, d, seen)
                    launched.append(e.app)
            if state.done:
                break
            candidates = [a for a in launched]
            if not candidates:
                break
            target = rng.choice(candidates)
            what = rng.choice(["started", "online", "healthy", "exited", "exited0"])
            now += rng.random()
            code = 0 if what == "exited0" else 1
            seen[target].add(what)
            if what == "online":
                seen[target].add("started")
            state, effects = plan_step(state, Observed(target, "exited" if what.startswith("exited") else what, code), now)
            check_invariants(state)
