"""Hooks and events: config validation, masking, payloads, and the pure delivery core
(rate limit, retries with backoff) table-tested on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from corral import hooks
from corral.events import EventCounters, EventRing, ProcessEvent, restart_reason
from corral.hooks import (
    ArmRetry,
    AttemptDone,
    Emit,
    HookSpec,
    HookState,
    Log,
    RetryDue,
    Send,
    hook_step,
)

URL = "https://hooks.slack.com/services/T000/B000/SECRETxyz"


def ev(kind: str = "errored", app: str = "web", seq: int = 1, **kw: Any) -> ProcessEvent:
    return ProcessEvent(seq=seq, time=1_700_000_000.0, kind=kind, app=app, **kw)


# ---------------------------------------------------------------- config


def test_defaults_and_slack_detection() -> None:
    (h,) = hooks.parse_hooks({"url": URL})
    assert h["format"] == "slack"
    assert h["events"] == sorted(hooks.DEFAULT_EVENTS)
    assert (h["timeout"], h["retries"], h["backoff"], h["rate_limit"], h["rate_period"]) == (5000, 3, 1000, 10, 60000)
    (c,) = hooks.parse_hooks([{"command": "./notify.sh $X", "events": "all", "timeout": "2s"}])
    assert c["command"] == "./notify.sh $X" and c["format"] == "json" and c["timeout"] == 2000
    assert "log-rotated" in c["events"]
    spec = hooks.spec_of(c)
    assert spec.shell and spec.command == ("./notify.sh $X",) and spec.timeout == 2.0
    # normalised tables parse to themselves (the daemon checks what the CLI sent)
    assert hooks.parse_hooks([h, c]) == [h, c]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "give exactly one of 'url' or 'command'"),
        ({"url": URL, "command": "x"}, "give exactly one"),
        ({"url": "ftp://x/y"}, "must be an http:// or https:// URL, got ftp://x/***"),
        ({"command": []}, "'command' must be a string or a list"),
        ({"url": URL, "events": ["crashed"]}, "unknown event 'crashed'"),
        ({"url": URL, "format": "teams"}, "'format' is json or slack"),
        ({"url": URL, "timeout": "0s"}, "'timeout' must be more than 0"),
        ({"url": URL, "retries": -1}, "retries' must be a whole number of 0 or more"),
        ({"url": URL, "rate_limit": 0}, "rate_limit' must be a whole number of 1 or more"),
        ({"url": URL, "when": "always"}, "unknown field 'when'"),
    ],
)
def test_bad_hooks_name_the_field(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        hooks.parse_hooks([table])
    assert message in str(info.value)
    assert "SECRETxyz" not in str(info.value)
    assert str(info.value).startswith("hook #1")


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (URL, "https://hooks.slack.com/***"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/"),
        ("http://user:pw@example.com/hook?token=abc", "http://***@example.com/***"),
        ("https://example.com?key=abc", "https://example.com/***"),
        ("http://[::1]:9000/x", "http://[::1]:9000/***"),
        ("not a url", "***"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert hooks.mask_url(url) == masked


def test_masking_in_messages() -> None:
    text = f"cannot reach {URL}: refused; also http://a:b@h/x"
    out = hooks.mask_urls_in(text, [URL])
    assert "SECRET" not in out and ":b@" not in out
    assert "https://hooks.slack.com/***" in out


def test_payloads() -> None:
    e = ev("restarting", reason="memory limit", instance=2, pid=42)
    slack = hooks.payload(hooks.spec_of(hooks.parse_hook({"url": URL})), e, 3, "box")
    assert slack == {"text": "[corral@box] web#2 restarting (memory limit) (3 earlier event(s) not sent: rate limit)"}
    generic = hooks.payload(hooks.spec_of(hooks.parse_hook({"url": "http://127.0.0.1:1/x"})), e, 0, "box")
    assert generic["event"]["kind"] == "restarting" and generic["event"]["pid"] == 42 and generic["suppressed"] == 0
    assert generic["host"] == "box" and generic["source"] == "corral"


def test_an_apps_own_hooks_fire_for_it_only() -> None:
    spec = hooks.spec_of(hooks.parse_hook({"url": URL}), app="web")
    assert spec.matches(ev(app="web")) and not spec.matches(ev(app="api"))
    assert not spec.matches(ev("online"))


# ---------------------------------------------------------------- the pure core


def spec(**kw: Any) -> HookSpec:
    base: dict[str, Any] = {"name": "h", "events": frozenset({"errored", "exited"}), "url": "http://x/", "retries": 2, "backoff": 1.0, "rate_limit": 3, "rate_period": 60.0}
    base.update(kw)
    return HookSpec(**base)


def drive(s: HookSpec, steps: list[tuple[float, Any]]) -> tuple[HookState, list[str]]:
    """Feed (advance, event) steps on a fake clock; effects rendered short."""
    state, now, out = HookState(), 500.0, []
    for advance, event in steps:
        now += advance
        state, effects = hook_step(s, state, event, now)
        for e in effects:
            if isinstance(e, Send):
                out.append(f"send {e.delivery.id} try {e.delivery.attempt} +{e.delivery.suppressed}")
            elif isinstance(e, ArmRetry):
                out.append(f"retry {e.id} in {e.delay:g}s")
            elif isinstance(e, Log):
                out.append("log: " + e.message)
        # invariants: the window never holds more than the limit; inflight is bounded
        assert len(state.sent) <= s.rate_limit
        assert len(state.inflight) <= hooks.MAX_INFLIGHT
    return state, out


CORE_CASES: dict[str, tuple[dict[str, Any], list[tuple[float, Any]], list[str]]] = {
    "a matching event is sent, others not": (
        {},
        [(0, Emit(ev("online"))), (0, Emit(ev("errored", app="api"))), (0.1, AttemptDone(1, True))],
        ["send 1 try 1 +0"],
    ),
    "failures retry with doubling backoff, then give up": (
        {"retries": 3, "backoff": 2.0},
        [
            (0, Emit(ev())),
            (0.1, AttemptDone(1, False, "HTTP 500")),
            (2.0, RetryDue(1)),
            (0.1, AttemptDone(1, False, "HTTP 500")),
            (4.0, RetryDue(1)),
            (0.1, AttemptDone(1, False, "HTTP 502")),
            (8.0, RetryDue(1)),
            (0.1, AttemptDone(1, False, "no answer within 5s")),
        ],
        [
            "send 1 try 1 +0",
            "retry 1 in 2s",
            "send 1 try 2 +0",
            "retry 1 in 4s",
            "send 1 try 3 +0",
            "retry 1 in 8s",
            "send 1 try 4 +0",
            "log: hook h (http://x/): errored of web not delivered after 4 attempt(s): no answer within 5s",
        ],
    ),
    "backoff is capped at 60 s": (
        {"retries": 9, "backoff": 20.0},
        [(0, Emit(ev())), (0, AttemptDone(1, False)), (0, RetryDue(1)), (0, AttemptDone(1, False)), (0, RetryDue(1)), (0, AttemptDone(1, False))],
        ["send 1 try 1 +0", "retry 1 in 20s", "send 1 try 2 +0", "retry 1 in 40s", "send 1 try 3 +0", "retry 1 in 60s"],
    ),
    "a success after a retry ends the delivery": (
        {},
        [(0, Emit(ev())), (0, AttemptDone(1, False)), (1, RetryDue(1)), (0, AttemptDone(1, True)), (5, RetryDue(1))],
        ["send 1 try 1 +0", "retry 1 in 1s", "send 1 try 2 +0"],
    ),
    "a crash loop is rate limited, and the count goes with the next delivery": (
        {"rate_limit": 3, "rate_period": 60.0},
        [(1, Emit(ev(seq=i))) for i in range(10)] + [(60, Emit(ev(seq=99)))],
        ["send 1 try 1 +0", "send 2 try 1 +0", "send 3 try 1 +0",
         "log: hook h: rate limit of 3 per 60s reached; counting the rest", "send 4 try 1 +7"],
    ),
    "the window slides": (
        {"rate_limit": 2, "rate_period": 10.0},
        [(0, Emit(ev())), (6, Emit(ev())), (5, Emit(ev())), (0, Emit(ev())), (6, Emit(ev()))],
        ["send 1 try 1 +0", "send 2 try 1 +0", "send 3 try 1 +0",
         "log: hook h: rate limit of 2 per 10s reached; counting the rest", "send 4 try 1 +1"],
    ),
    "no retries configured: one attempt": (
        {"retries": 0},
        [(0, Emit(ev())), (0, AttemptDone(1, False, "exit 3"))],
        ["send 1 try 1 +0", "log: hook h (http://x/): errored of web not delivered after 1 attempt(s): exit 3"],
    ),
}


@pytest.mark.parametrize("case", list(CORE_CASES))
def test_core(case: str) -> None:
    kw, steps, expected = CORE_CASES[case]
    _, out = drive(spec(**kw), steps)
    assert out == expected


def test_pending_deliveries_are_bounded() -> None:
    s = spec(rate_limit=1000)
    state, out = drive(s, [(0.01, Emit(ev(seq=i))) for i in range(hooks.MAX_INFLIGHT + 5)])
    assert len(state.inflight) == hooks.MAX_INFLIGHT
    assert state.dropped == 5
    assert sum(o.startswith("send") for o in out) == hooks.MAX_INFLIGHT


def test_the_core_never_echoes_a_url_secret() -> None:
    s = spec(url=URL, retries=0)
    _, out = drive(s, [(0, Emit(ev())), (0, AttemptDone(1, False, "refused"))])
    assert all("SECRET" not in o for o in out)


# ---------------------------------------------------------------- events


def test_ring_is_bounded_and_numbered() -> None:
    ring = EventRing(size=5)
    for i in range(12):
        ring.add("exited", "web" if i % 2 else "api", 1000.0 + i, code=i, message="x" * 10_000)
    assert len(ring) == 5 and ring.last_seq == 12
    assert [e.seq for e in ring.since(9)] == [10, 11, 12]
    assert [e.seq for e in ring.last(2, app="web")] == [10, 12]
    assert all(len(e.message) == 500 for e in ring)
    with pytest.raises(ValueError):
        ring.add("exploded", "web", 0.0)


def test_event_env_and_summary() -> None:
    e = ev("exited", code=3, instance=0, pid=7, message="bye")
    env = e.env()
    assert env["CORRAL_EVENT_KIND"] == "exited" and env["CORRAL_EVENT_CODE"] == "3" and env["CORRAL_EVENT_SIGNAL"] == ""
    assert '"kind":"exited"' in env["CORRAL_EVENT"]
    assert e.summary() == "web#0 exited (code 3): bye"


@pytest.mark.parametrize(
    ("trigger", "reason"),
    [("memory limit (1.2G > 1G)", "memory limit"), ("cron", "cron"), ("watch: app.py changed", "watch"), ("exited with code 1", "crash"),
     ("liveness probe failed", "liveness"), ("restart requested", "manual"), ("watchdog: no WATCHDOG=1 in 5s", "watchdog")],
)
def test_restart_reasons(trigger: str, reason: str) -> None:
    assert restart_reason(trigger) == reason


def test_counters_render_prometheus() -> None:
    c = EventCounters()
    for e in [ev("restarting", reason="crash"), ev("restarting", reason="crash"), ev("restarting", reason="something odd"), ev("errored")]:
        c.count(e)
    text = c.prometheus()
    assert 'corral_events_total{kind="restarting",reason="crash"} 2' in text
    assert 'corral_events_total{kind="restarting",reason=""} 1' in text
    assert 'corral_events_total{kind="errored",reason=""} 1' in text
