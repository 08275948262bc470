"""The `health` table and the pure health state machine, table-driven with a fake clock.

``parse_health`` validates and normalises (durations in ms, ``kind``/``target``,
``status_min``/``status_max``); every error names the field as ``health.<x>``
and the normalised form (what is sent to the daemon) parses to itself.

``health_step`` is fed ``(time, ok)`` steps; each case checks the status after
every step and that a change is reported exactly when the status changes.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import msgspec
import pytest

from corral.core.appspec import HealthConfig
from corral.core.healthspec import (
    HEALTH_KEYS,
    HealthSpec,
    HealthState,
    health_step,
    parse_health,
)

DEFAULTS = {
    "interval": 10_000,
    "timeout": 3_000,
    "start_period": 0,
    "failure_threshold": 3,
    "success_threshold": 1,
    "status_min": 200,
    "status_max": 399,
    "expect_body": None,
    "liveness": False,
}

# ---------------------------------------------------------------- parse_health: valid forms

VALID: list[tuple[Any, dict[str, Any] | None]] = [
    (None, None),
    (False, None),
    ({"http": "/health"}, {"kind": "http", "target": "/health"}),
    ({"http": "http://127.0.0.1:{port}/h?x=1"}, {"kind": "http", "target": "http://127.0.0.1:{port}/h?x=1"}),
    ({"tcp": "127.0.0.1:{port}"}, {"kind": "tcp", "target": "127.0.0.1:{port}"}),
    ({"tcp": "unix:/run/app.sock"}, {"kind": "tcp", "target": "unix:/run/app.sock"}),
    ({"exec": "./check.sh --fast 'a b'"}, {"kind": "exec", "target": ["./check.sh", "--fast", "a b"]}),
    ({"exec": ["sh", "-c", "exit 0"]}, {"kind": "exec", "target": ["sh", "-c", "exit 0"]}),
    (
        {"http": "/", "interval": "300ms", "timeout": "2s", "start_period": "1m"},
        {"kind": "http", "target": "/", "interval": 300, "timeout": 2000, "start_period": 60_000},
    ),
    ({"http": "/", "interval": 250, "timeout": 100.0}, {"kind": "http", "target": "/", "interval": 250, "timeout": 100}),
    ({"http": "/", "failure_threshold": 1, "success_threshold": 5}, {"kind": "http", "target": "/", "failure_threshold": 1, "success_threshold": 5}),
    ({"http": "/", "expect_status": "200"}, {"kind": "http", "target": "/", "status_min": 200, "status_max": 200}),
    ({"http": "/", "expect_status": 204}, {"kind": "http", "target": "/", "status_min": 204, "status_max": 204}),
    ({"http": "/", "expect_status": "500-599"}, {"kind": "http", "target": "/", "status_min": 500, "status_max": 599}),
    ({"http": "/", "expect_body": "ok"}, {"kind": "http", "target": "/", "expect_body": "ok"}),
    ({"http": "/", "expect_body": ""}, {"kind": "http", "target": "/", "expect_body": ""}),
    ({"exec": "true", "liveness": True}, {"kind": "exec", "target": ["true"], "liveness": True}),
    # an empty kind does not count: the other one is the probe
    ({"http": "", "tcp": "localhost:80"}, {"kind": "tcp", "target": "localhost:80"}),
]


@pytest.mark.parametrize(("table", "expected"), VALID, ids=[repr(t)[:60] for t, _ in VALID])
def test_parse_health_valid(table: Any, expected: dict[str, Any] | None) -> None:
    got = parse_health(table)
    if expected is None:
        assert got is None
        return
    assert got == {**DEFAULTS, **expected}
    # the normalised form (sent to the daemon, kept in dumps) parses to itself
    assert parse_health(got) == got
    assert parse_health(parse_health(got)) == got
    # and it makes a spec with the durations in seconds
    spec = msgspec.convert(got, HealthConfig).spec()  # as the AppSpec holds it
    assert spec.kind == got["kind"] and spec.target == got["target"]
    assert spec.interval == got["interval"] / 1000 and spec.timeout == got["timeout"] / 1000
    assert spec.start_period == got["start_period"] / 1000


def test_parse_health_does_not_change_its_input() -> None:
    table = {"exec": "a b", "interval": "1s"}
    norm = parse_health(table)
    assert table == {"exec": "a b", "interval": "1s"}
    assert norm is not None
    copy = dict(norm)
    parse_health(norm)
    assert norm == copy


def test_every_field_is_documented() -> None:
    assert set(HEALTH_KEYS) == {"http", "tcp", "exec", "interval", "timeout", "start_period", "failure_threshold", "success_threshold", "expect_status", "expect_body", "liveness"}
    assert all(doc.strip() for doc in HEALTH_KEYS.values())


# ---------------------------------------------------------------- parse_health: errors name the field

ERRORS: list[tuple[Any, str]] = [
    ({"http": "/", "intervall": "1s"}, "health.intervall"),
    ({"http": "/", "retries": 3}, "health.retries"),
    ({}, "health.http"),
    ({"interval": "1s"}, "health.http"),
    ({"http": "/", "tcp": "h:1"}, "health.http"),
    ({"http": "/", "exec": "true"}, "health.exec"),
    ({"http": "health"}, "health.http"),
    ({"http": "https://example.org/"}, "health.http"),
    ({"http": 8080}, "health.http"),
    ({"tcp": "localhost"}, "health.tcp"),
    ({"tcp": 8080}, "health.tcp"),
    ({"exec": [1, 2]}, "health.exec"),
    ({"exec": ["ok", None]}, "health.exec"),
    ({"exec": "'unterminated"}, "health.exec"),
    ({"exec": 5}, "health.exec"),
    ({"http": "/", "interval": "soon"}, "health.interval"),
    ({"http": "/", "interval": 0}, "health.interval"),
    ({"http": "/", "interval": "0s"}, "health.interval"),
    ({"http": "/", "interval": -5}, "health.interval"),
    ({"http": "/", "interval": True}, "health.interval"),
    ({"http": "/", "timeout": "3 seconds"}, "health.timeout"),
    ({"http": "/", "timeout": -1}, "health.timeout"),
    ({"http": "/", "start_period": "later"}, "health.start_period"),
    ({"http": "/", "start_period": [1]}, "health.start_period"),
    ({"http": "/", "failure_threshold": 0}, "health.failure_threshold"),
    ({"http": "/", "failure_threshold": "3"}, "health.failure_threshold"),
    ({"http": "/", "failure_threshold": 1.5}, "health.failure_threshold"),
    ({"http": "/", "failure_threshold": True}, "health.failure_threshold"),
    ({"http": "/", "success_threshold": 0}, "health.success_threshold"),
    ({"http": "/", "success_threshold": -1}, "health.success_threshold"),
    ({"http": "/", "expect_status": "ok"}, "health.expect_status"),
    ({"http": "/", "expect_status": "2xx"}, "health.expect_status"),
    ({"http": "/", "expect_status": "200-3xx"}, "health.expect_status"),
    ({"http": "/", "expect_status": "200-300-400"}, "health.expect_status"),
    ({"http": "/", "expect_body": 200}, "health.expect_body"),
    ({"http": "/", "liveness": "yes"}, "health.liveness"),
    ({"http": "/", "liveness": 1}, "health.liveness"),
]


@pytest.mark.parametrize(("table", "field"), ERRORS, ids=[repr(t)[:60] for t, _ in ERRORS])
def test_parse_health_errors_name_the_field(table: Any, field: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_health(table)
    assert f"'{field}'" in str(e.value), str(e.value)


@pytest.mark.parametrize("table", ["yes", 1, ["http", "/"], True])
def test_parse_health_not_a_table(table: Any) -> None:
    with pytest.raises(ValueError, match="expected a table with one of http, tcp or exec"):
        parse_health(table)


def test_reversed_status_range_is_an_error() -> None:
    with pytest.raises(ValueError, match="health.expect_status"):
        parse_health({"http": "/", "expect_status": "399-200"})


def test_zero_timeout_is_an_error() -> None:
    with pytest.raises(ValueError, match="health.timeout"):
        parse_health({"http": "/", "timeout": "0s"})


# ---------------------------------------------------------------- health_step with a fake clock

T0 = 5000.0  # the fake clock does not start at 0


def spec(**kw: Any) -> HealthSpec:
    base: dict[str, Any] = {"kind": "http", "target": "/", "interval": 1.0, "failure_threshold": 3, "success_threshold": 1}
    base.update(kw)
    return HealthSpec(**base)


def run_steps(sp: HealthSpec, steps: list[tuple[float, bool]]) -> tuple[HealthState, list[str], list[tuple[float, str]]]:
    """Feed (time since T0, ok) steps; (final state, status after each step, reported changes)."""
    st = HealthState(since=T0, last_change=T0)
    statuses: list[str] = []
    changes: list[tuple[float, str]] = []
    for i, (t, ok) in enumerate(steps):
        before = st
        st, changed = health_step(st, ok, None if ok else f"err{i}", 1.5 + i, T0 + t, sp)
        # a change is reported exactly when the status changes, with its time
        assert changed == (st.status != before.status), (i, before, st)
        if changed:
            changes.append((t, st.status))
            assert st.last_change == T0 + t
        else:
            assert st.last_change == before.last_change
        assert st.checks == before.checks + 1
        assert st.last_latency_ms == 1.5 + i
        assert st.last_error == (None if ok else f"err{i}")
        assert st.since == T0
        statuses.append(st.status)
    return st, statuses, changes


S, F = True, False

STEP_CASES: list[tuple[str, dict[str, Any], list[bool], list[str]]] = [
    ("first success is healthy", {}, [S, S, S], ["healthy", "healthy", "healthy"]),
    ("failures from the start: unhealthy at the threshold", {}, [F, F, F, F], ["starting", "starting", "unhealthy", "unhealthy"]),
    ("threshold 1", {"failure_threshold": 1}, [S, F, S], ["healthy", "unhealthy", "healthy"]),
    ("healthy, then failure_threshold failures", {}, [S, F, F, F, F], ["healthy", "healthy", "healthy", "unhealthy", "unhealthy"]),
    ("a success resets the failure count", {}, [S, F, F, S, F, F, S], ["healthy"] * 7),
    ("recovery needs success_threshold successes", {"success_threshold": 2}, [F, F, F, S, S, S], ["starting", "starting", "unhealthy", "unhealthy", "healthy", "healthy"]),
    ("a failure resets the success count", {"success_threshold": 2, "failure_threshold": 1}, [S, S, F, S, F, S, S], ["starting", "healthy", "unhealthy", "unhealthy", "unhealthy", "unhealthy", "healthy"]),
    ("success_threshold applies to the first healthy too", {"success_threshold": 3}, [S, S, S], ["starting", "starting", "healthy"]),
    ("flapping under both thresholds never changes", {"failure_threshold": 2, "success_threshold": 2}, [S, S, F, S, F, S, F], ["starting", "healthy", "healthy", "healthy", "healthy", "healthy", "healthy"]),
]


@pytest.mark.parametrize(("sp_kw", "oks", "want"), [c[1:] for c in STEP_CASES], ids=[c[0] for c in STEP_CASES])
def test_health_step_table(sp_kw: dict[str, Any], oks: list[bool], want: list[str]) -> None:
    sp = spec(**sp_kw)
    steps = [(float(i + 1), ok) for i, ok in enumerate(oks)]
    st, statuses, changes = run_steps(sp, steps)
    assert statuses == want
    # exactly one change reported per transition
    transitions = [(i, s) for i, s in enumerate(want) if s != (["starting"] + want)[i]]
    assert [c[1] for c in changes] == [s for _, s in transitions]
    if not oks[-1]:
        assert st.successes == 0
    else:
        assert st.failures == 0


START_PERIOD_CASES: list[tuple[str, list[tuple[float, bool]], list[str], list[int]]] = [
    (
        "failures inside start_period do not count",
        [(1, F), (2, F), (3, F), (4, F), (4.9, F)],
        ["starting"] * 5,
        [0, 0, 0, 0, 0],
    ),
    (
        "they count from the end of start_period (inclusive)",
        [(1, F), (4, F), (5, F), (6, F), (7, F)],
        ["starting", "starting", "starting", "starting", "unhealthy"],
        [0, 0, 1, 2, 3],
    ),
    (
        "a success inside start_period makes it healthy; later failures count at once",
        [(1, F), (2, S), (3, F), (3.5, F), (4, F)],
        ["starting", "healthy", "healthy", "healthy", "unhealthy"],
        [0, 0, 1, 2, 3],
    ),
]


@pytest.mark.parametrize(("steps", "want", "failures"), [c[1:] for c in START_PERIOD_CASES], ids=[c[0] for c in START_PERIOD_CASES])
def test_health_step_start_period(steps: list[tuple[float, bool]], want: list[str], failures: list[int]) -> None:
    sp = spec(start_period=5.0)
    st = HealthState(since=T0, last_change=T0)
    statuses, fails = [], []
    for t, ok in steps:
        before = st
        st, changed = health_step(st, ok, None if ok else "down", 0.0, T0 + t, sp)
        assert changed == (st.status != before.status)
        statuses.append(st.status)
        fails.append(st.failures)
    assert statuses == want
    assert fails == failures
    assert st.checks == len(steps)


def test_health_step_start_period_counts_from_since() -> None:
    # `since` is the (re)start of the probed process, not the time of the first probe
    sp = spec(start_period=5.0, failure_threshold=1)
    st = HealthState(since=T0 + 100, last_change=T0 + 100)
    st, changed = health_step(st, False, "down", 0.0, T0 + 104, sp)
    assert (st.status, changed, st.failures) == ("starting", False, 0)
    st, changed = health_step(st, False, "down", 0.0, T0 + 105, sp)
    assert (st.status, changed, st.last_change) == ("unhealthy", True, T0 + 105)


def test_health_step_keeps_the_last_error_and_clears_it() -> None:
    sp = spec(failure_threshold=2)
    st = HealthState(since=T0, last_change=T0)
    st, _ = health_step(st, False, "HTTP 500", 12.5, T0 + 1, sp)
    assert (st.last_error, st.last_latency_ms, st.failures) == ("HTTP 500", 12.5, 1)
    st, _ = health_step(st, False, "connection refused", 0.3, T0 + 2, sp)
    assert (st.status, st.last_error, st.failures) == ("unhealthy", "connection refused", 2)
    st, changed = health_step(st, True, None, 2.0, T0 + 3, sp)
    assert (st.status, changed, st.last_error, st.failures, st.successes) == ("healthy", True, None, 0, 1)


def test_health_step_is_pure() -> None:
    sp = spec()
    st = HealthState(since=T0, last_change=T0)
    frozen = replace(st)
    new, _ = health_step(st, True, None, 1.0, T0 + 1, sp)
    assert st == frozen and new is not st


@pytest.mark.parametrize("seed", range(20))
def test_health_step_random_walks(seed: int) -> None:
    """Against a tiny reference model: status flips at the thresholds, reported once."""
    rng = random.Random(seed)
    ft, stt = rng.randint(1, 4), rng.randint(1, 3)
    sp = spec(failure_threshold=ft, success_threshold=stt)
    st = HealthState(since=T0, last_change=T0)
    model, fails, succ = "starting", 0, 0
    reported = 0
    flips = 0
    for i in range(200):
        ok = rng.random() < 0.6
        st, changed = health_step(st, ok, None if ok else "x", 0.0, T0 + i, sp)
        if ok:
            succ, fails = succ + 1, 0
            new = "healthy" if model != "healthy" and succ >= stt else model
        else:
            fails, succ = fails + 1, 0
            new = "unhealthy" if model != "unhealthy" and fails >= ft else model
        flips += new != model
        model = new
        reported += changed
        assert (st.status, st.failures, st.successes) == (model, fails, succ), (i, st)
    assert reported == flips
    assert st.checks == 200
