"""Table-driven tests of the pure process state machine, with a fake clock.

Each case is a list of ``(advance_seconds, event)`` steps fed through ``step``;
we collect every effect and check the final state and, where it matters, the
exact effect sequence (effects are rendered as short strings such as
``"Signal(SIGINT)"`` or ``"StartTimer(1.6)"`` so that the tables stay readable;
timer tokens are checked separately).

``Fire()`` in a step list stands for the runtime firing a timer: it becomes
``Timeout(token)`` with the token of the last ``StartTimer`` effect seen so far
(``Fire(i)`` picks the i-th one, which is how stale timers are simulated).
``Bark()`` does the same for the watchdog timer (``ArmWatchdog`` tokens).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import pytest

from corral.core.statemachine import (
    BACKOFF_CAP,
    BACKOFF_FACTOR,
    BACKOFF_RESET,
    READY_SETTLE,
    Adopt,
    After,
    Announce,
    ArmWatchdog,
    CancelTimer,
    Delete,
    DisarmWatchdog,
    Effect,
    Event,
    Exited,
    Fail,
    LeftoverTimeout,
    Policy,
    ProcState,
    Ready,
    Remove,
    ResetCounters,
    Restart,
    Signal,
    SignalLeftovers,
    Spawn,
    Spawned,
    SpawnFailed,
    Start,
    StartLeftoverTimer,
    StartTimer,
    Status,
    Stop,
    Timeout,
    UpdatePolicy,
    WatchdogPing,
    WatchdogTimeout,
    WatchdogTrigger,
    is_ready,
    step,
)

F = TypeVar("F", bound=Callable[..., None])

T0 = 1000.0  # the fake clock does not start at 0, so "started_at is None" bugs show


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def advance(self, seconds: float) -> float:
        assert seconds >= 0, "time does not go backwards"
        self.now += seconds
        return self.now


@dataclass(frozen=True)
class Fire:
    """Fire a timer: the index-th StartTimer seen so far (default: the last one)."""

    index: int = -1


@dataclass(frozen=True)
class Bark:
    """Fire the watchdog timer: the index-th ArmWatchdog seen so far (default: the last one)."""

    index: int = -1


Step = tuple[float, "Event | Fire | Bark"]


@dataclass
class Run:
    state: ProcState
    clock: FakeClock
    effects: list[Effect] = field(default_factory=list)
    per_step: list[list[Effect]] = field(default_factory=list)
    timers: list[int] = field(default_factory=list)  # tokens of every StartTimer, in order
    watchdogs: list[int] = field(default_factory=list)  # tokens of every ArmWatchdog, in order

    @property
    def fx(self) -> list[str]:
        return [describe(e) for e in self.effects]

    def last_fx(self) -> list[str]:
        return [describe(e) for e in self.per_step[-1]]

    def count(self, kind: type) -> int:
        return sum(1 for e in self.effects if isinstance(e, kind))

    def feed(self, steps: list[Step]) -> Run:
        for advance, ev in steps:
            now = self.clock.advance(advance)
            event: Event
            if isinstance(ev, Fire):
                event = Timeout(self.timers[ev.index])
            elif isinstance(ev, Bark):
                event = WatchdogTimeout(self.watchdogs[ev.index])
            else:
                event = ev
            before = self.state
            self.state, effects = step(self.state, event, now)
            check_invariants(before, event, self.state, effects)
            self.per_step.append(effects)
            self.effects.extend(effects)
            self.timers.extend(e.token for e in effects if isinstance(e, StartTimer))
            self.watchdogs.extend(e.token for e in effects if isinstance(e, ArmWatchdog))
        return self


def run(steps: list[Step], policy: Policy | None = None, **state_fields: Any) -> Run:
    state = ProcState(policy=policy or Policy(), **state_fields)
    return Run(state, FakeClock()).feed(steps)


def describe(effect: Effect) -> str:
    match effect:
        case Spawn():
            return "Spawn"
        case Signal(signal=sig):
            return f"Signal({sig})"
        case StartTimer(delay=delay):
            return f"StartTimer({delay:g})"
        case CancelTimer():
            return "CancelTimer"
        case Remove():
            return "Remove"
        case Announce(kind=kind):
            return f"Announce({kind})"
        case ArmWatchdog(delay=delay):
            return f"ArmWatchdog({delay:g})"
        case DisarmWatchdog():
            return "DisarmWatchdog"
        case SignalLeftovers(pid=pid, signal=sig):
            return f"SignalLeftovers({pid},{sig})"
        case StartLeftoverTimer(pid=pid, delay=delay):
            return f"StartLeftoverTimer({pid},{delay:g})"
    raise AssertionError(f"not an effect: {effect!r}")


def check_invariants(before: ProcState, event: Event, after: ProcState, effects: list[Effect]) -> None:
    """What must hold after any step, whatever the event."""
    where = f"{before.status} + {event!r}"
    assert isinstance(after, ProcState), where
    assert isinstance(after.status, Status) and after.status in set(Status), where
    assert isinstance(effects, list), where
    for e in effects:
        describe(e)  # raises on anything that is not an effect
    assert after.timer >= before.timer, f"{where}: timer tokens must never go back"
    assert after.watchdog >= before.watchdog, f"{where}: watchdog tokens must never go back"
    if isinstance(event, ResetCounters):
        assert after.restarts == 0 and after.unstable_restarts == 0, where
    elif isinstance(event, Adopt):
        assert after.restarts == event.restarts + 1, where
    else:
        assert after.restarts >= before.restarts, f"{where}: restarts never decrease"
    if isinstance(event, (ResetCounters, Adopt, LeftoverTimeout)):
        assert after.status is before.status and after.pid == before.pid, f"{where}: bookkeeping only"
    assert after.unstable_restarts >= 0, where
    for e in effects:
        if isinstance(e, StartTimer):
            assert e.token == after.timer, f"{where}: the armed timer must carry the current token"
            assert e.delay >= 0, where
        if isinstance(e, ArmWatchdog):
            assert e.token == after.watchdog and after.watchdog_armed, f"{where}: the armed watchdog must carry the current token"
            assert after.policy.watchdog is not None and e.delay == after.policy.watchdog, where
    if after.watchdog_armed:
        assert after.pid is not None, f"{where}: a watchdog armed with no process"
    if is_ready(after):
        assert after.status is Status.ONLINE and after.pid is not None, where
    if any(isinstance(e, Spawn) for e in effects):
        assert after.status is Status.LAUNCHING and after.pid is None, where
    if any(isinstance(e, Remove) for e in effects):
        assert after.status is Status.STOPPED, where
    if after.status is not Status.STOPPING:
        assert after.after_stop is After.NOTHING, f"{where}: after_stop={after.after_stop} leaked out of stopping"
    if isinstance(event, Exited) and before.status in (Status.LAUNCHING, Status.ONLINE, Status.STOPPING):
        assert after.pid is None, f"{where}: the process is gone"
    if isinstance(event, Exited):
        assert not after.watchdog_armed, f"{where}: the watchdog outlived the process"
        kills = [e for e in effects if isinstance(e, (SignalLeftovers, StartLeftoverTimer))]
        if event.leftovers:
            assert isinstance(kills[-1], StartLeftoverTimer), f"{where}: leftovers always get the grace timer"
            assert kills[-1].delay == before.policy.kill_timeout, where
            spawns = [i for i, e in enumerate(effects) if isinstance(e, Spawn)]
            assert not spawns or effects.index(kills[-1]) < spawns[0], f"{where}: leftovers are handled before a relaunch"
        else:
            assert not kills, where


# Common prefixes: start and come online as pid 100.
STARTED: list[Step] = [(0, Start()), (0, Spawned(100))]
STARTED_FX = ["CancelTimer", "Spawn", "Announce(online)", "StartTimer(0.5)"]  # 0.5: the settle timer
RELAUNCH_FX = ["Announce(exit)", "CancelTimer", "Spawn"]
STOP_FX = ["Signal(SIGINT)", "StartTimer(1.6)"]
STOPPED_FX = ["CancelTimer", "Announce(stopped)"]


@dataclass(frozen=True)
class Case:
    id: str
    steps: list[Step]
    status: Status
    fields: dict[str, Any] = field(default_factory=dict)
    effects: list[str] | None = None  # the whole effect sequence, when given
    policy: Policy = field(default_factory=Policy)
    initial: dict[str, Any] = field(default_factory=dict)


def cases(*cs: Case) -> Callable[[F], F]:
    return pytest.mark.parametrize("case", cs, ids=[c.id for c in cs])


def check(case: Case) -> Run:
    r = run(case.steps, case.policy, **case.initial)
    assert r.state.status is case.status, f"effects: {r.fx}"
    for name, want in case.fields.items():
        assert getattr(r.state, name) == want, f"{name}: {getattr(r.state, name)!r} != {want!r}"
    if case.effects is not None:
        assert r.fx == case.effects
    return r


# ---------------------------------------------------------------- lifecycle


@cases(
    Case(
        "start-launching",
        [(0, Start())],
        Status.LAUNCHING,
        {"pid": None, "restarts": 0, "started_at": None},
        ["CancelTimer", "Spawn"],
    ),
    Case(
        "start-spawned-online",
        [(0, Start()), (0.05, Spawned(100))],
        Status.ONLINE,
        {"pid": 100, "started_at": T0 + 0.05, "restarts": 0, "unstable_restarts": 0},
        STARTED_FX,
    ),
    Case("start-while-online-is-a-noop", [*STARTED, (1, Start())], Status.ONLINE, {"pid": 100}, STARTED_FX),
    Case("start-while-launching-is-a-noop", [(0, Start()), (0, Start())], Status.LAUNCHING, {}, ["CancelTimer", "Spawn"]),
    Case(
        "crash-relaunches-at-once",
        [*STARTED, (5, Exited(1))],
        Status.LAUNCHING,
        {"restarts": 1, "unstable_restarts": 0, "pid": None, "exit_code": 1, "exit_signal": None},
        [*STARTED_FX, *RELAUNCH_FX],
    ),
    Case(
        "crash-relaunched-comes-online",
        [*STARTED, (5, Exited(1)), (0, Spawned(101))],
        Status.ONLINE,
        {"restarts": 1, "pid": 101, "exit_code": None, "started_at": T0 + 5},
        [*STARTED_FX, *RELAUNCH_FX, "Announce(online)", "StartTimer(0.5)"],
    ),
    Case(
        "killed-by-signal-relaunches",
        [*STARTED, (5, Exited(None, "SIGSEGV"))],
        Status.LAUNCHING,
        {"restarts": 1, "exit_code": None, "exit_signal": "SIGSEGV"},
        [*STARTED_FX, *RELAUNCH_FX],
    ),
    Case(
        "unstable-crash-counted",
        [*STARTED, (0.5, Exited(1))],
        Status.LAUNCHING,
        {"restarts": 1, "unstable_restarts": 1},
    ),
    Case(
        "clean-exit-0-also-restarts",
        [*STARTED, (5, Exited(0))],
        Status.LAUNCHING,
        {"restarts": 1, "exit_code": 0},
    ),
    Case(
        "autorestart-off-stopped",
        [*STARTED, (5, Exited(1))],
        Status.STOPPED,
        {"restarts": 0, "pid": None, "exit_code": 1},
        [*STARTED_FX, "CancelTimer", "Announce(exit)"],
        policy=Policy(autorestart=False),
    ),
    Case(
        "autorestart-off-signal-death-stopped",
        [*STARTED, (5, Exited(None, "SIGKILL"))],
        Status.STOPPED,
        {"restarts": 0, "exit_signal": "SIGKILL"},
        policy=Policy(autorestart=False),
    ),
    Case(
        "stop-exit-code-stopped",
        [*STARTED, (0.1, Exited(3))],
        Status.STOPPED,
        {"restarts": 0, "exit_code": 3, "unstable_restarts": 0},
        [*STARTED_FX, "CancelTimer", "Announce(exit)"],
        policy=Policy(stop_exit_codes=frozenset({0, 3})),
    ),
    Case(
        "stop-exit-code-0-stopped",
        [*STARTED, (5, Exited(0))],
        Status.STOPPED,
        {"exit_code": 0},
        policy=Policy(stop_exit_codes=frozenset({0})),
    ),
    Case(
        "other-exit-code-restarts",
        [*STARTED, (5, Exited(1))],
        Status.LAUNCHING,
        {"restarts": 1},
        policy=Policy(stop_exit_codes=frozenset({0})),
    ),
    Case(
        "signal-death-not-matched-by-stop-exit-codes",
        [*STARTED, (5, Exited(None, "SIGTERM"))],
        Status.LAUNCHING,
        {"restarts": 1, "exit_signal": "SIGTERM"},
        [*STARTED_FX, *RELAUNCH_FX],
        policy=Policy(stop_exit_codes=frozenset({0, 15, 143})),
    ),
    Case(
        "restart-delay-waits",
        [*STARTED, (5, Exited(1))],
        Status.WAITING_RESTART,
        {"restarts": 0, "pid": None, "exit_code": 1},
        [*STARTED_FX, "Announce(exit)", "StartTimer(2)"],
        policy=Policy(restart_delay=2.0),
    ),
    Case(
        "restart-delay-timeout-launches",
        [*STARTED, (5, Exited(1)), (2, Fire())],
        Status.LAUNCHING,
        {"restarts": 1, "unstable_restarts": 0},
        [*STARTED_FX, "Announce(exit)", "StartTimer(2)", "CancelTimer", "Spawn"],
        policy=Policy(restart_delay=2.0),
    ),
    Case(
        "restart-delay-start-now",
        [*STARTED, (5, Exited(1)), (0.5, Start())],
        Status.LAUNCHING,
        {"restarts": 1},
        [*STARTED_FX, "Announce(exit)", "StartTimer(2)", "CancelTimer", "Spawn"],
        policy=Policy(restart_delay=2.0),
    ),
)
def test_lifecycle(case: Case) -> None:
    check(case)


# ---------------------------------------------------------------- stop, restart, delete


@cases(
    Case(
        "stop-online-signals-and-arms-kill-timer",
        [*STARTED, (1, Stop())],
        Status.STOPPING,
        {"after_stop": After.NOTHING, "pid": 100},
        [*STARTED_FX, *STOP_FX],
    ),
    Case(
        "stop-then-exit-stopped",
        [*STARTED, (1, Stop()), (0.2, Exited(None, "SIGINT"))],
        Status.STOPPED,
        {"pid": None, "restarts": 0, "exit_signal": "SIGINT", "reason": "stopped"},
        [*STARTED_FX, *STOP_FX, *STOPPED_FX],
    ),
    Case(
        "stop-uses-kill-signal-and-kill-timeout",
        [*STARTED, (1, Stop())],
        Status.STOPPING,
        {},
        [*STARTED_FX, "Signal(SIGTERM)", "StartTimer(5)"],
        policy=Policy(kill_signal="SIGTERM", kill_timeout=5.0),
    ),
    Case(
        "stop-kill-timeout-escalates-to-sigkill",
        [*STARTED, (1, Stop()), (1.6, Fire())],
        Status.STOPPING,
        {"pid": 100},
        [*STARTED_FX, *STOP_FX, "Signal(SIGKILL)", "Announce(kill)"],
    ),
    Case(
        "stop-sigkill-then-exit-stopped",
        [*STARTED, (1, Stop()), (1.6, Fire()), (0.01, Exited(None, "SIGKILL"))],
        Status.STOPPED,
        {"exit_signal": "SIGKILL", "restarts": 0},
        [*STARTED_FX, *STOP_FX, "Signal(SIGKILL)", "Announce(kill)", *STOPPED_FX],
    ),
    Case(
        "stop-exit-before-kill-timer-then-timer-is-stale",
        [*STARTED, (1, Stop()), (0.1, Exited(0)), (1.5, Fire())],
        Status.STOPPED,
        {},
        [*STARTED_FX, *STOP_FX, *STOPPED_FX],
    ),
    Case(
        "stop-while-stopped-is-a-noop",
        [*STARTED, (1, Stop()), (0, Exited(0)), (1, Stop())],
        Status.STOPPED,
        {},
        [*STARTED_FX, *STOP_FX, *STOPPED_FX],
    ),
    Case(
        "stop-twice-signals-once",
        [*STARTED, (1, Stop()), (0.1, Stop())],
        Status.STOPPING,
        {},
        [*STARTED_FX, *STOP_FX],
    ),
    Case(
        "stop-while-waiting-restart-cancels",
        [*STARTED, (5, Exited(1)), (0.5, Stop())],
        Status.STOPPED,
        {"restarts": 0, "pid": None},
        [*STARTED_FX, "Announce(exit)", "StartTimer(2)", "CancelTimer"],
        policy=Policy(restart_delay=2.0),
    ),
    Case(
        "stop-while-waiting-restart-then-late-timer-ignored",
        [*STARTED, (5, Exited(1)), (0.5, Stop()), (1.5, Fire())],
        Status.STOPPED,
        {"restarts": 0},
        [*STARTED_FX, "Announce(exit)", "StartTimer(2)", "CancelTimer"],
        policy=Policy(restart_delay=2.0),
    ),
    Case(
        "restart-online-stops-first",
        [*STARTED, (1, Restart())],
        Status.STOPPING,
        {"after_stop": After.RESTART, "restarts": 0},
        [*STARTED_FX, *STOP_FX],
    ),
    Case(
        "restart-online-relaunches-on-exit",
        [*STARTED, (1, Restart()), (0.2, Exited(None, "SIGINT"))],
        Status.LAUNCHING,
        {"restarts": 1, "after_stop": After.NOTHING, "pid": None},
        [*STARTED_FX, *STOP_FX, "CancelTimer", "Spawn"],
    ),
    Case(
        "restart-online-back-online",
        [*STARTED, (1, Restart()), (0.2, Exited(None, "SIGINT")), (0.1, Spawned(101))],
        Status.ONLINE,
        {"restarts": 1, "pid": 101},
    ),
    Case(
        "restart-resets-unstable-counters",
        [*STARTED, (0.1, Exited(1)), (0, Spawned(101)), (0.1, Exited(1)), (0, Spawned(102)), (2, Restart()), (0, Exited(0))],
        Status.LAUNCHING,
        {"restarts": 3, "unstable_restarts": 0, "backoff": 0.0},
    ),
    Case(
        "restart-stopped-starts-and-resets",
        [(0, Restart())],
        Status.LAUNCHING,
        {"restarts": 3, "unstable_restarts": 0, "backoff": 0.0},
        ["CancelTimer", "Spawn"],
        initial={"restarts": 2, "unstable_restarts": 5, "backoff": 4.5},
    ),
    Case(
        "restart-errored-starts-and-resets",
        [(0, Restart())],
        Status.LAUNCHING,
        {"restarts": 17, "unstable_restarts": 0, "backoff": 0.0},
        ["CancelTimer", "Spawn"],
        initial={"status": Status.ERRORED, "restarts": 16, "unstable_restarts": 16, "backoff": 15.0},
    ),
    Case(
        "start-errored-resets-unstable",
        [(0, Start())],
        Status.LAUNCHING,
        {"restarts": 16, "unstable_restarts": 0, "backoff": 0.0},
        ["CancelTimer", "Spawn"],
        initial={"status": Status.ERRORED, "restarts": 16, "unstable_restarts": 16, "backoff": 15.0},
    ),
    Case(
        "restart-while-waiting-restart-launches-now",
        [*STARTED, (0.1, Exited(1)), (0.5, Restart())],
        Status.LAUNCHING,
        {"restarts": 1, "unstable_restarts": 0},
        [*STARTED_FX, "Announce(exit)", "StartTimer(2)", "CancelTimer", "Spawn"],
        policy=Policy(restart_delay=2.0),
    ),
    Case(
        "start-while-stopping-restarts-after-exit",
        [*STARTED, (1, Stop()), (0.1, Start()), (0.1, Exited(0))],
        Status.LAUNCHING,
        {"restarts": 1},
        [*STARTED_FX, *STOP_FX, "CancelTimer", "Spawn"],
    ),
    Case(
        "stop-during-restart-wins",
        [*STARTED, (1, Restart()), (0.1, Stop()), (0.1, Exited(0))],
        Status.STOPPED,
        {"restarts": 0},
        [*STARTED_FX, *STOP_FX, *STOPPED_FX],
    ),
    Case(
        "delete-online-stops-first",
        [*STARTED, (1, Delete())],
        Status.STOPPING,
        {"after_stop": After.DELETE},
        [*STARTED_FX, *STOP_FX],
    ),
    Case(
        "delete-online-removes-after-exit",
        [*STARTED, (1, Delete()), (0.3, Exited(None, "SIGINT"))],
        Status.STOPPED,
        {"pid": None},
        [*STARTED_FX, *STOP_FX, "CancelTimer", "Announce(stopped)", "Remove"],
    ),
    Case(
        "delete-online-kill-timeout-then-remove",
        [*STARTED, (1, Delete()), (1.6, Fire()), (0, Exited(None, "SIGKILL"))],
        Status.STOPPED,
        {},
        [*STARTED_FX, *STOP_FX, "Signal(SIGKILL)", "Announce(kill)", "CancelTimer", "Announce(stopped)", "Remove"],
    ),
    Case("delete-stopped-removes-at-once", [(0, Delete())], Status.STOPPED, {}, ["CancelTimer", "Remove"]),
    Case(
        "delete-errored-removes-at-once",
        [(0, Delete())],
        Status.STOPPED,
        {},
        ["CancelTimer", "Remove"],
        initial={"status": Status.ERRORED},
    ),
    Case(
        "delete-waiting-restart-removes-at-once",
        [*STARTED, (0.1, Exited(1)), (0.1, Delete())],
        Status.STOPPED,
        {},
        [*STARTED_FX, "Announce(exit)", "StartTimer(2)", "CancelTimer", "Remove"],
        policy=Policy(restart_delay=2.0),
    ),
    Case(
        "stop-during-delete-still-deletes",
        [*STARTED, (1, Delete()), (0.1, Stop()), (0.1, Exited(0))],
        Status.STOPPED,
        {},
        [*STARTED_FX, *STOP_FX, "CancelTimer", "Announce(stopped)", "Remove"],
    ),
    Case(
        "restart-during-delete-still-deletes",
        [*STARTED, (1, Delete()), (0.1, Restart()), (0.1, Exited(0))],
        Status.STOPPED,
        {},
        [*STARTED_FX, *STOP_FX, "CancelTimer", "Announce(stopped)", "Remove"],
    ),
    Case(
        "start-during-delete-still-deletes",
        [*STARTED, (1, Delete()), (0.1, Start()), (0.1, Exited(0))],
        Status.STOPPED,
        {},
        [*STARTED_FX, *STOP_FX, "CancelTimer", "Announce(stopped)", "Remove"],
    ),
    Case(
        "delete-during-restart-deletes",
        [*STARTED, (1, Restart()), (0.1, Delete()), (0.1, Exited(0))],
        Status.STOPPED,
        {"restarts": 0},
        [*STARTED_FX, *STOP_FX, "CancelTimer", "Announce(stopped)", "Remove"],
    ),
)
def test_stop_restart_delete(case: Case) -> None:
    check(case)


# ---------------------------------------------------------------- races with the spawn


@cases(
    Case(
        "stop-before-spawned-then-spawned-signals",
        [(0, Start()), (0, Stop()), (0.01, Spawned(100))],
        Status.STOPPING,
        {"pid": 100},
    ),
    Case(
        "stop-before-spawned-then-exit-stopped",
        [(0, Start()), (0, Stop()), (0.01, Spawned(100)), (0.01, Exited(None, "SIGINT"))],
        Status.STOPPED,
        {"pid": None, "restarts": 0},
    ),
    Case(
        "stop-before-spawned-kill-timer-still-escalates",
        [(0, Start()), (0, Stop()), (0.01, Spawned(100)), (1.6, Fire())],
        Status.STOPPING,
        {"pid": 100},
    ),
    Case(
        "delete-before-spawned-then-removed",
        [(0, Start()), (0, Delete()), (0.01, Spawned(100)), (0.01, Exited(None, "SIGINT"))],
        Status.STOPPED,
        {},
    ),
    Case(
        "stop-before-spawn-failed-stopped",
        [(0, Start()), (0, Stop()), (0.01, SpawnFailed("No such file"))],
        Status.STOPPED,
        {"pid": None, "restarts": 0},
    ),
    Case(
        "delete-before-spawn-failed-removed",
        [(0, Start()), (0, Delete()), (0.01, SpawnFailed("No such file"))],
        Status.STOPPED,
        {"pid": None},
    ),
    Case(
        "restart-before-spawn-failed-relaunches",
        [(0, Start()), (0, Restart()), (0.01, SpawnFailed("No such file"))],
        Status.LAUNCHING,
        {"restarts": 1},
    ),
    Case(
        "spawned-while-stopped-is-killed",
        [(0, Spawned(55))],
        Status.STOPPED,
        {},
        ["Signal(SIGINT)"],
    ),
)
def test_spawn_races(case: Case) -> None:
    r = check(case)
    if case.id.startswith("stop-before-spawned-then-spawned"):
        # The process that appeared after the stop is signalled and the kill
        # timer is (re)armed for it, so escalation to SIGKILL still happens.
        assert r.last_fx()[0] == "Signal(SIGINT)"
    if case.id.endswith("kill-timer-still-escalates"):
        assert r.last_fx() == ["Signal(SIGKILL)", "Announce(kill)"]
    if case.id.startswith("delete-before"):
        assert r.fx[-1] == "Remove"
    if case.id.startswith("restart-before-spawn-failed"):
        assert r.fx[-1] == "Spawn"


def test_kill_timer_fired_before_the_late_spawn_is_rearmed() -> None:
    """The kill timer expires while the spawn is still pending (SIGKILL hits nothing):
    the late process must still get a grace period and then SIGKILL."""
    r = run([(0, Start()), (0, Stop()), (1.6, Fire())])
    assert r.state.status is Status.STOPPING
    r.feed([(0.1, Spawned(100))])
    assert r.last_fx() == ["Signal(SIGINT)", "StartTimer(1.6)"]
    r.feed([(1.6, Fire())])
    assert r.last_fx() == ["Signal(SIGKILL)", "Announce(kill)"]
    r.feed([(0, Exited(None, "SIGKILL"))])
    assert r.state.status is Status.STOPPED


# ---------------------------------------------------------------- crash loops and max_restarts


def crash_loop(policy: Policy, *, uptime: float, limit: int = 200) -> Run:
    """Start, then crash after `uptime` seconds every time, until the instance gives up."""
    r = run([(0, Start()), (0, Spawned(1000))], policy)
    pid = 1000
    for _ in range(limit):
        r.feed([(uptime, Exited(1))])
        if r.state.status is Status.WAITING_RESTART:
            r.feed([(r.per_step[-1][-1].delay, Fire())])  # type: ignore[union-attr]
        if r.state.status is not Status.LAUNCHING:
            break
        pid += 1
        r.feed([(0.01, Spawned(pid))])
    return r


@pytest.mark.parametrize("restart_delay", [0.0, 0.5], ids=["no-delay", "delay-0.5"])
@pytest.mark.parametrize("max_restarts", [0, 1, 3, 16], ids=lambda n: f"max_restarts={n}")
def test_crash_loop_reaches_errored(max_restarts: int, restart_delay: float) -> None:
    r = crash_loop(Policy(max_restarts=max_restarts, min_uptime=1.0, restart_delay=restart_delay), uptime=0.2)
    assert r.state.status is Status.ERRORED
    assert r.count(Spawn) == max_restarts + 1  # the first start + max_restarts restarts
    assert r.state.restarts == max_restarts
    assert r.state.unstable_restarts == max_restarts
    assert r.state.pid is None
    assert r.fx[-2:] == ["CancelTimer", "Announce(errored)"]
    # errored is final: late events of the dead process change nothing
    before = r.state
    r.feed([(1, Exited(1)), (1, Timeout(before.timer)), (1, Ready())])
    assert r.state == before
    assert r.per_step[-3:] == [[], [], []]


def test_spawn_failed_is_an_unstable_crash() -> None:
    r = run([(0, Start()), (0, SpawnFailed("No such file or directory"))])
    assert r.state.status is Status.LAUNCHING
    assert (r.state.restarts, r.state.unstable_restarts) == (1, 1)
    assert r.fx == ["CancelTimer", "Spawn", "Announce(spawn-failed)", "Announce(exit)", "CancelTimer", "Spawn"]
    assert "No such file" in r.state.reason


@pytest.mark.parametrize("max_restarts", [0, 1, 3, 16], ids=lambda n: f"max_restarts={n}")
def test_spawn_failed_loop_reaches_errored(max_restarts: int) -> None:
    r = run([(0, Start())], Policy(max_restarts=max_restarts))
    for _ in range(100):
        r.feed([(0.001, SpawnFailed("Permission denied"))])
        if r.state.status is not Status.LAUNCHING:
            break
    assert r.state.status is Status.ERRORED
    assert r.count(Spawn) == max_restarts + 1
    assert "Permission denied" in r.state.reason


def test_spawn_failed_while_not_launching_is_ignored() -> None:
    r = run([*STARTED, (1, SpawnFailed("late"))])
    assert r.state.status is Status.ONLINE and r.last_fx() == []


@pytest.mark.parametrize(
    "uptime, unstable, status",
    [
        (0.99, 1, Status.LAUNCHING),
        (1.0, 0, Status.LAUNCHING),
        (1.01, 0, Status.LAUNCHING),
    ],
    ids=["exit-at-0.99s-unstable", "exit-at-1.00s-stable", "exit-at-1.01s-stable"],
)
def test_min_uptime_boundary(uptime: float, unstable: int, status: Status) -> None:
    r = run([*STARTED, (uptime, Exited(1))], Policy(min_uptime=1.0))
    assert r.state.status is status
    assert r.state.unstable_restarts == unstable


@pytest.mark.parametrize(
    "exit_observed_at, status",
    [(0.99, Status.ERRORED), (1.01, Status.LAUNCHING)],
    ids=["observed-at-0.99s-errored", "observed-at-1.01s-restarted"],
)
def test_min_uptime_judged_when_exit_is_observed(exit_observed_at: float, status: Status) -> None:
    """max_restarts=0: the very first unstable exit is fatal, a stable one is not.
    Uptime runs from Spawned to the moment the Exited event is handled."""
    r = run([(0, Start()), (0.5, Spawned(100)), (exit_observed_at, Exited(1))], Policy(max_restarts=0, min_uptime=1.0))
    assert r.state.status is status


def test_stable_run_resets_unstable_restarts() -> None:
    policy = Policy(max_restarts=3, min_uptime=1.0)
    r = run(STARTED, policy)
    for pid in (101, 102, 103):  # three unstable crashes: the budget is used up
        r.feed([(0.1, Exited(1)), (0, Spawned(pid))])
    assert r.state.unstable_restarts == 3
    r.feed([(5.0, Exited(1))])  # a stable run: restarted, count reset
    assert r.state.status is Status.LAUNCHING
    assert (r.state.restarts, r.state.unstable_restarts) == (4, 0)
    r.feed([(0, Spawned(104))])
    for pid in (105, 106, 107):  # the budget is whole again
        r.feed([(0.1, Exited(1)), (0, Spawned(pid))])
    assert r.state.status is Status.ONLINE and r.state.unstable_restarts == 3
    r.feed([(0.1, Exited(1))])
    assert r.state.status is Status.ERRORED
    assert r.state.restarts == 7


def test_unstable_budget_not_spent_by_stop_exit_code() -> None:
    r = run([*STARTED, (0.1, Exited(0))], Policy(max_restarts=0, stop_exit_codes=frozenset({0})))
    assert r.state.status is Status.STOPPED
    assert r.state.unstable_restarts == 0


# ---------------------------------------------------------------- exponential backoff


def backoff_delays(policy: Policy, uptimes: list[float]) -> tuple[Run, list[float]]:
    """Crash after each uptime in turn; return the restart delays that were armed."""
    r = run(STARTED, policy)
    delays: list[float] = []
    for i, up in enumerate(uptimes):
        r.feed([(up, Exited(1))])
        assert r.state.status is Status.WAITING_RESTART, r.fx
        timer = r.per_step[-1][-1]
        assert isinstance(timer, StartTimer)
        delays.append(timer.delay)
        if policy.exp_backoff is not None:
            assert r.state.backoff == timer.delay
        r.feed([(timer.delay, Fire()), (0, Spawned(200 + i))])
        assert r.state.status is Status.ONLINE
    return r, delays


def expected_backoff(start: float, n: int) -> list[float]:
    out = [start]
    while len(out) < n:
        out.append(min(out[-1] * BACKOFF_FACTOR, BACKOFF_CAP))
    return out


def test_backoff_constants_are_pm2s() -> None:
    assert (BACKOFF_FACTOR, BACKOFF_CAP, BACKOFF_RESET) == (1.5, 15.0, 30.0)


@pytest.mark.parametrize(
    "uptime",
    [0.2, 2.0],
    ids=["unstable-runs", "stable-runs-under-30s"],
)
def test_exp_backoff_grows_and_caps(uptime: float) -> None:
    _, delays = backoff_delays(Policy(exp_backoff=0.1, max_restarts=100), [uptime] * 20)
    assert delays[:5] == pytest.approx([0.1, 0.15, 0.225, 0.3375, 0.50625])
    assert delays == pytest.approx(expected_backoff(0.1, 20))
    assert max(delays) == BACKOFF_CAP
    assert delays[-3:] == [15.0, 15.0, 15.0]
    assert delays.index(15.0) == 13  # 0.1 * 1.5**13 > 15


@pytest.mark.parametrize(
    "healthy_run, reset",
    [(29.9, False), (30.0, True), (120.0, True)],
    ids=["29.9s-keeps-growing", "30s-resets", "2min-resets"],
)
def test_exp_backoff_reset_after_healthy_run(healthy_run: float, reset: bool) -> None:
    r, delays = backoff_delays(Policy(exp_backoff=0.5), [2.0, 2.0, 2.0, healthy_run, 2.0])
    assert delays[:3] == pytest.approx([0.5, 0.75, 1.125])
    if reset:
        assert delays[3:] == pytest.approx([0.5, 0.75])
    else:
        assert delays[3:] == pytest.approx([1.6875, 2.53125])
    assert r.state.unstable_restarts == 0


def test_exp_backoff_takes_precedence_over_restart_delay() -> None:
    _, delays = backoff_delays(Policy(exp_backoff=0.2, restart_delay=7.0), [2.0, 2.0])
    assert delays == pytest.approx([0.2, 0.3])


def test_start_resets_backoff() -> None:
    r, delays = backoff_delays(Policy(exp_backoff=1.0), [2.0, 2.0, 2.0])
    assert delays == pytest.approx([1.0, 1.5, 2.25])
    r.feed([(1, Stop()), (0, Exited(0)), (1, Start()), (0, Spawned(300)), (2, Exited(1))])
    assert r.state.status is Status.WAITING_RESTART
    assert r.last_fx() == ["Announce(exit)", "StartTimer(1)"]


def test_restart_delay_is_constant_without_backoff() -> None:
    _, delays = backoff_delays(Policy(restart_delay=0.7), [2.0, 2.0, 2.0, 40.0])
    assert delays == pytest.approx([0.7, 0.7, 0.7, 0.7])


# ---------------------------------------------------------------- stale timers


def test_stale_kill_timer_after_restart_is_ignored() -> None:
    """restart: the process exits before kill_timeout and is relaunched; the old kill
    timer firing later must not SIGKILL the new process."""
    r = run([*STARTED, (1, Restart()), (0.2, Exited(None, "SIGINT")), (0.1, Spawned(101))])
    assert r.state.status is Status.ONLINE
    kill_timer = 0  # the only StartTimer so far
    before = r.state
    r.feed([(1.3, Fire(kill_timer))])
    assert r.state == before and r.last_fx() == []


@pytest.mark.parametrize(
    "steps, stale_index, status",
    [
        pytest.param(
            [*STARTED, (1, Stop()), (0.1, Exited(0)), (1, Start()), (0, Spawned(101))],
            0,
            Status.ONLINE,
            id="old-kill-timer-after-stop-and-start",
        ),
        pytest.param(
            [*STARTED, (1, Stop()), (0.1, Exited(0)), (1, Start()), (0, Spawned(101)), (1, Stop())],
            0,
            Status.STOPPING,
            id="old-kill-timer-during-a-second-stop",
        ),
        pytest.param(
            [*STARTED, (0.1, Exited(1)), (0.5, Start()), (0, Spawned(101))],
            0,
            Status.ONLINE,
            id="restart-delay-timer-after-start-now",
        ),
        pytest.param(
            [*STARTED, (0.1, Exited(1)), (0.5, Start())],
            0,
            Status.LAUNCHING,
            id="restart-delay-timer-while-launching",
        ),
        pytest.param(
            [*STARTED, (0.1, Exited(1)), (2, Fire()), (0, Spawned(101)), (0.1, Exited(1))],
            0,
            Status.WAITING_RESTART,
            id="first-restart-timer-during-second-wait",
        ),
    ],
)
def test_stale_timeouts_are_ignored(steps: list[Step], stale_index: int, status: Status) -> None:
    r = run(steps, Policy(restart_delay=2.0))
    assert r.state.status is status
    assert r.timers[stale_index] != r.state.timer
    before = r.state
    r.feed([(0.5, Fire(stale_index))])
    assert r.state == before
    assert r.last_fx() == []


def test_current_kill_timer_still_fires_after_a_stale_one() -> None:
    # timers armed: settle (0), kill (1), settle of the second run (2), kill (3)
    r = run([*STARTED, (1, Stop()), (0.1, Exited(0)), (1, Start()), (0, Spawned(101)), (1, Stop())])
    r.feed([(0.5, Fire(1))])
    assert r.last_fx() == []
    r.feed([(1.1, Fire(3))])
    assert r.last_fx() == ["Signal(SIGKILL)", "Announce(kill)"]


@pytest.mark.parametrize("token", [-1, 0, 999], ids=["negative", "zero", "future"])
def test_unknown_timer_tokens_are_ignored(token: int) -> None:
    r = run([*STARTED, (1, Stop())])
    before = r.state
    r.feed([(5, Timeout(token))])
    assert r.state == before and r.last_fx() == []


# ---------------------------------------------------------------- wait_ready / listen_timeout

WAIT_READY = Policy(wait_ready=True, listen_timeout=3.0)


@cases(
    Case(
        "spawned-stays-launching-and-arms-listen-timer",
        [(0, Start()), (0.1, Spawned(100))],
        Status.LAUNCHING,
        {"pid": 100, "started_at": T0 + 0.1},
        ["CancelTimer", "Spawn", "Announce(spawned)", "StartTimer(3)"],
        policy=WAIT_READY,
    ),
    Case(
        "ready-goes-online",
        [(0, Start()), (0.1, Spawned(100)), (1, Ready())],
        Status.ONLINE,
        {"pid": 100, "reason": "ready"},
        ["CancelTimer", "Spawn", "Announce(spawned)", "StartTimer(3)", "CancelTimer", "Announce(online)"],
        policy=WAIT_READY,
    ),
    Case(
        "ready-before-spawned-ignored",
        [(0, Start()), (0, Ready())],
        Status.LAUNCHING,
        {},
        ["CancelTimer", "Spawn"],
        policy=WAIT_READY,
    ),
    Case(
        "listen-timer-after-ready-is-stale",
        [(0, Start()), (0.1, Spawned(100)), (1, Ready()), (2, Fire())],
        Status.ONLINE,
        {},
        ["CancelTimer", "Spawn", "Announce(spawned)", "StartTimer(3)", "CancelTimer", "Announce(online)"],
        policy=WAIT_READY,
    ),
    Case(
        "listen-timeout-stops-as-failed-start",
        [(0, Start()), (0.1, Spawned(100)), (3, Fire())],
        Status.STOPPING,
        {"after_stop": After.FAILED_START, "pid": 100},
        ["CancelTimer", "Spawn", "Announce(spawned)", "StartTimer(3)", *STOP_FX],
        policy=WAIT_READY,
    ),
    Case(
        "ready-too-late-ignored",
        [(0, Start()), (0.1, Spawned(100)), (3, Fire()), (0.1, Ready())],
        Status.STOPPING,
        {"after_stop": After.FAILED_START},
        policy=WAIT_READY,
    ),
    Case(
        "failed-start-exit-relaunches-as-unstable",
        [(0, Start()), (0.1, Spawned(100)), (3, Fire()), (0.2, Exited(None, "SIGINT"))],
        Status.LAUNCHING,
        # uptime 3.2s > min_uptime, but a failed start is unstable all the same
        {"restarts": 1, "unstable_restarts": 1, "after_stop": After.NOTHING, "pid": None},
        ["CancelTimer", "Spawn", "Announce(spawned)", "StartTimer(3)", *STOP_FX, *RELAUNCH_FX],
        policy=WAIT_READY,
    ),
    Case(
        "failed-start-kill-timeout-then-exit",
        [(0, Start()), (0.1, Spawned(100)), (3, Fire()), (1.6, Fire()), (0, Exited(None, "SIGKILL"))],
        Status.LAUNCHING,
        {"restarts": 1, "unstable_restarts": 1},
        policy=WAIT_READY,
    ),
    Case(
        "failed-start-max-restarts-0-errored",
        [(0, Start()), (0.1, Spawned(100)), (3, Fire()), (0.2, Exited(0))],
        Status.ERRORED,
        {"restarts": 0, "after_stop": After.NOTHING},
        policy=replace(WAIT_READY, max_restarts=0),
    ),
    Case(
        "failed-start-autorestart-off-stopped",
        [(0, Start()), (0.1, Spawned(100)), (3, Fire()), (0.2, Exited(0))],
        Status.STOPPED,
        {"restarts": 0, "after_stop": After.NOTHING},
        policy=replace(WAIT_READY, autorestart=False),
    ),
    Case(
        "failed-start-not-saved-by-stop-exit-code",
        [(0, Start()), (0.1, Spawned(100)), (3, Fire()), (0.2, Exited(0))],
        Status.LAUNCHING,
        {"restarts": 1, "unstable_restarts": 1},
        policy=replace(WAIT_READY, stop_exit_codes=frozenset({0})),
    ),
    Case(
        "failed-start-with-restart-delay-waits",
        [(0, Start()), (0.1, Spawned(100)), (3, Fire()), (0.2, Exited(0))],
        Status.WAITING_RESTART,
        {"restarts": 0, "unstable_restarts": 1, "after_stop": After.NOTHING},
        policy=replace(WAIT_READY, restart_delay=1.0),
    ),
    Case(
        "stop-during-failed-start-stops",
        [(0, Start()), (0.1, Spawned(100)), (3, Fire()), (0.1, Stop()), (0.1, Exited(0))],
        Status.STOPPED,
        {"restarts": 0, "unstable_restarts": 0},
        policy=WAIT_READY,
    ),
    Case(
        "crash-before-ready-is-a-crash",
        [(0, Start()), (0.1, Spawned(100)), (0.5, Exited(1))],
        Status.LAUNCHING,
        {"restarts": 1, "unstable_restarts": 1},
        ["CancelTimer", "Spawn", "Announce(spawned)", "StartTimer(3)", *RELAUNCH_FX],
        policy=WAIT_READY,
    ),
    Case(
        "listen-timer-of-crashed-run-is-stale",
        [(0, Start()), (0.1, Spawned(100)), (0.5, Exited(1)), (0, Spawned(101)), (2.5, Fire(0))],
        Status.LAUNCHING,
        {"pid": 101},
        policy=WAIT_READY,
    ),
    Case(
        "stop-while-waiting-for-ready",
        [(0, Start()), (0.1, Spawned(100)), (1, Stop()), (0.1, Exited(0))],
        Status.STOPPED,
        {"restarts": 0},
        ["CancelTimer", "Spawn", "Announce(spawned)", "StartTimer(3)", *STOP_FX, *STOPPED_FX],
        policy=WAIT_READY,
    ),
)
def test_wait_ready(case: Case) -> None:
    check(case)


def test_failed_start_loop_reaches_errored() -> None:
    policy = replace(WAIT_READY, max_restarts=3)
    r = run([(0, Start())], policy)
    for pid in range(100, 200):
        r.feed([(0.1, Spawned(pid)), (3, Fire()), (0.1, Exited(None, "SIGINT"))])
        if r.state.status is not Status.LAUNCHING:
            break
    assert r.state.status is Status.ERRORED
    assert r.count(Spawn) == 4
    assert "failed to become ready" in r.state.reason


# ---------------------------------------------------------------- UpdatePolicy


@cases(
    Case(
        "autorestart-turned-off",
        [*STARTED, (1, UpdatePolicy(Policy(autorestart=False))), (5, Exited(1))],
        Status.STOPPED,
        {"restarts": 0},
    ),
    Case(
        "autorestart-turned-on",
        [*STARTED, (1, UpdatePolicy(Policy())), (5, Exited(1))],
        Status.LAUNCHING,
        {"restarts": 1},
        policy=Policy(autorestart=False),
    ),
    Case(
        "restart-delay-added",
        [*STARTED, (1, UpdatePolicy(Policy(restart_delay=5.0))), (5, Exited(1))],
        Status.WAITING_RESTART,
        {},
        [*STARTED_FX, "Announce(exit)", "StartTimer(5)"],
    ),
    Case(
        "stop-exit-codes-added",
        [*STARTED, (1, UpdatePolicy(Policy(stop_exit_codes=frozenset({2})))), (5, Exited(2))],
        Status.STOPPED,
        {},
    ),
    Case(
        "kill-signal-and-timeout-changed",
        [*STARTED, (1, UpdatePolicy(Policy(kill_signal="SIGTERM", kill_timeout=10.0))), (1, Stop())],
        Status.STOPPING,
        {},
        [*STARTED_FX, "Signal(SIGTERM)", "StartTimer(10)"],
    ),
    Case(
        "max-restarts-lowered",
        [*STARTED, (0.1, Exited(1)), (0, Spawned(101)), (0, UpdatePolicy(Policy(max_restarts=1))), (0.1, Exited(1))],
        Status.ERRORED,
        {"restarts": 1},
    ),
    Case(
        "min-uptime-raised",
        [*STARTED, (0, UpdatePolicy(Policy(min_uptime=10.0, max_restarts=0))), (5, Exited(1))],
        Status.ERRORED,
        {},
    ),
    Case(
        "wait-ready-turned-on-before-spawned",
        [(0, Start()), (0, UpdatePolicy(WAIT_READY)), (0.1, Spawned(100))],
        Status.LAUNCHING,
        {"pid": 100},
        ["CancelTimer", "Spawn", "Announce(spawned)", "StartTimer(3)"],
    ),
    Case(
        "wait-ready-turned-off-while-waiting-online-at-listen-timeout",
        [(0, Start()), (0.1, Spawned(100)), (0, UpdatePolicy(Policy())), (3, Fire())],
        Status.ONLINE,
        {"pid": 100, "after_stop": After.NOTHING},
        policy=WAIT_READY,
    ),
)
def test_update_policy(case: Case) -> None:
    r = check(case)
    assert r.state.policy == next(e for _, e in reversed(case.steps) if isinstance(e, UpdatePolicy)).policy


def test_update_policy_has_no_effects_and_keeps_the_rest() -> None:
    r = run(STARTED)
    before = r.state
    new_policy = Policy(max_restarts=3)
    r.feed([(1, UpdatePolicy(new_policy))])
    assert r.last_fx() == []
    assert r.state == replace(before, policy=new_policy)


# ---------------------------------------------------------------- robustness: every event in every status


def sample_states() -> list[ProcState]:
    policies = [
        Policy(),
        Policy(autorestart=False),
        Policy(wait_ready=True),
        Policy(exp_backoff=0.1, max_restarts=0),
        Policy(restart_delay=1.0, stop_exit_codes=frozenset({0})),
        Policy(watchdog=2.0),
        Policy(watchdog=2.0, wait_ready=True),
    ]
    states: list[ProcState] = []
    for policy in policies:
        for status in Status:
            afters = list(After) if status is Status.STOPPING else [After.NOTHING]
            for after in afters:
                for pid in (None, 42):
                    for started_at in (None, T0 - 0.5, T0 - 100):
                        states.append(
                            ProcState(
                                policy=policy,
                                status=status,
                                pid=pid,
                                started_at=started_at if pid is not None else None,
                                restarts=3,
                                unstable_restarts=2,
                                backoff=0.3 if policy.exp_backoff else 0.0,
                                after_stop=after,
                                timer=5,
                                watchdog=3,
                                watchdog_armed=pid is not None and policy.watchdog is not None,
                                notified=pid is not None and policy.wait_ready,
                            )
                        )
    return states


def sample_events(state: ProcState) -> list[Event]:
    return [
        Start(),
        Stop(),
        Restart(),
        Restart("config changed"),
        Delete(),
        Spawned(77),
        SpawnFailed("boom"),
        Ready(),
        Exited(0),
        Exited(1),
        Exited(None, "SIGKILL"),
        Exited(None, "SIGINT"),
        Exited(1, None, leftovers=True),
        Exited(None, "SIGINT", leftovers=True),
        LeftoverTimeout(42),
        WatchdogPing(),
        WatchdogTrigger(),
        WatchdogTimeout(state.watchdog),
        WatchdogTimeout(state.watchdog - 1),
        ResetCounters(),
        Adopt(7),
        Timeout(state.timer),
        Timeout(state.timer - 1),
        Timeout(state.timer + 1),
        UpdatePolicy(Policy()),
        UpdatePolicy(Policy(autorestart=False, wait_ready=True)),
    ]


SAMPLE = sample_states()


@pytest.mark.parametrize("status", list(Status), ids=[s.name.lower() for s in Status])
def test_every_event_in_every_status_is_handled(status: Status) -> None:
    checked = 0
    for state in SAMPLE:
        if state.status is not status:
            continue
        for event in sample_events(state):
            new, effects = step(state, event, T0)
            check_invariants(state, event, new, effects)
            checked += 1
    assert checked > 100


def test_unknown_event_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        step(ProcState(), object(), T0)  # type: ignore[arg-type]


class FakeRuntime:
    """A tiny stand-in for the supervisor: performs effects, keeps one timer, one process."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.timer: int | None = None
        self.watchdog: int | None = None
        self.alive: int | None = None  # pid of the running process
        self.pending_spawn = False
        self.next_pid = 1

    def perform(self, effects: list[Effect]) -> None:
        for e in effects:
            if isinstance(e, Spawn):
                assert self.alive is None, "spawned a second process while one is alive"
                self.pending_spawn = True
            elif isinstance(e, StartTimer):
                self.timer = e.token
            elif isinstance(e, CancelTimer):
                self.timer = None
            elif isinstance(e, ArmWatchdog):
                self.watchdog = e.token
            elif isinstance(e, DisarmWatchdog):
                self.watchdog = None

    def runtime_events(self, state: ProcState) -> list[Event]:
        """What the world may report now."""
        out: list[Event] = []
        if self.pending_spawn:
            out += [Spawned(self.next_pid), SpawnFailed("nope")]
        if self.alive is not None:
            out += [Exited(self.rng.choice([0, 1, 2])), Exited(None, "SIGKILL")]
            if state.policy.wait_ready:
                out.append(Ready())
            out += [WatchdogPing(), WatchdogTrigger(), Exited(1, None, leftovers=True)]
        if self.timer is not None:
            out.append(Timeout(self.timer))
        if self.watchdog is not None:
            out.append(WatchdogTimeout(self.watchdog))
        return out

    def observe(self, event: Event) -> None:
        if isinstance(event, Spawned):
            self.pending_spawn = False
            self.alive = event.pid
            self.next_pid += 1
        elif isinstance(event, SpawnFailed):
            self.pending_spawn = False
        elif isinstance(event, Exited):
            self.alive = None
        elif isinstance(event, Timeout):
            self.timer = None
        elif isinstance(event, WatchdogTimeout):
            self.watchdog = None


@pytest.mark.parametrize("seed", range(8), ids=lambda s: f"seed={s}")
def test_random_walk_with_a_fake_runtime(seed: int) -> None:
    """Random interleavings of user commands and runtime reports keep the invariants,
    and the machine never gets stuck: once the process is gone and nothing is pending,
    it is never left in launching or stopping."""
    rng = random.Random(seed)
    policies = [Policy(), Policy(wait_ready=True), Policy(restart_delay=0.5), Policy(exp_backoff=0.1), Policy(autorestart=False), Policy(watchdog=1.0), Policy(watchdog=1.0, wait_ready=True)]
    rt = FakeRuntime(rng)
    clock = FakeClock()
    state = ProcState(policy=rng.choice(policies))
    seen: set[Status] = set()
    for _ in range(3000):
        user: list[Event] = [Start(), Stop(), Restart(), UpdatePolicy(rng.choice(policies))]
        world = rt.runtime_events(state)
        if world and rng.random() < 0.7:
            event = rng.choice(world)
        else:
            event = rng.choice(user)
        new, effects = step(state, event, clock.advance(rng.choice([0.0, 0.1, 0.9, 1.1, 5.0, 31.0])))
        check_invariants(state, event, new, effects)
        rt.observe(event)
        rt.perform(effects)
        state = new
        seen.add(state.status)
        if state.status in (Status.LAUNCHING, Status.STOPPING):
            assert rt.alive is not None or rt.pending_spawn, f"stuck in {state.status}: nothing will ever end it"
        if state.status is Status.WAITING_RESTART:
            assert rt.timer == state.timer, "waiting to restart with no timer armed"
        if state.status in (Status.STOPPED, Status.ERRORED):
            # nothing should be left running (a raced spawn is being signalled)
            assert rt.alive is None or state.pid == rt.alive
        if state.watchdog_armed:
            assert rt.watchdog == state.watchdog and rt.alive is not None, "the runtime's watchdog is not the one the machine armed"
    # the walk is worth something only if it went everywhere but (maybe) errored
    assert seen >= set(Status) - {Status.ERRORED}, seen


# ---------------------------------------------------------------- Fail (e.g. a missed watchdog)


def _online() -> list[Step]:
    return [(0, Start()), (0, Spawned(100))]


@pytest.mark.parametrize(
    ("uptime", "unstable", "status"),
    [
        (0.2, 1, Status.LAUNCHING),  # failed soon after the start: an unstable restart
        (5.0, 0, Status.LAUNCHING),  # after a good run: a stable restart
    ],
    ids=["unstable", "stable"],
)
def test_fail_stops_gracefully_then_applies_the_crash_policy(uptime: float, unstable: int, status: Status) -> None:
    r = run([*_online(), (uptime, Fail("watchdog: no WATCHDOG=1 within 1s"))])
    assert r.state.status is Status.STOPPING and r.last_fx() == ["Signal(SIGINT)", "StartTimer(1.6)"]
    r.feed([(0.1, Exited(None, "SIGINT"))])
    assert r.state.status is status
    assert r.state.unstable_restarts == unstable
    assert r.state.restarts == 1
    assert "watchdog" in r.state.reason


def test_fail_loop_reaches_errored_unlike_restart() -> None:
    policy = Policy(max_restarts=2)
    r = run(_online(), policy)
    for _ in range(3):
        r.feed([(0.1, Fail("watchdog")), (0, Exited(None, "SIGINT"))])
        if r.state.status is Status.LAUNCHING:
            r.feed([(0, Spawned(101))])
    assert r.state.status is Status.ERRORED
    # a requested restart never spends the unstable budget
    r2 = run(_online(), policy)
    for _ in range(5):
        r2.feed([(0.1, Restart()), (0, Exited(None, "SIGINT")), (0, Spawned(102))])
    assert r2.state.status is Status.ONLINE


@pytest.mark.parametrize("status", [Status.STOPPED, Status.ERRORED, Status.WAITING_RESTART, Status.STOPPING], ids=lambda s: s.name.lower())
def test_fail_outside_running_is_ignored(status: Status) -> None:
    r = run([(0, Fail("x"))], status=status)
    assert r.state.status is status and r.effects == []


# ---------------------------------------------------------------- readiness: READY=1 or the settle timer


@pytest.mark.parametrize(
    ("steps", "policy", "ready"),
    [
        (STARTED, Policy(), False),  # online, not settled yet
        ([*STARTED, (READY_SETTLE, Fire())], Policy(), True),  # the settle timer
        ([*STARTED, (0.1, Ready())], Policy(), True),  # READY=1 without wait_ready: ready at once
        ([*STARTED, (0.1, Ready()), (0.4, Fire())], Policy(), True),
        ([*STARTED, (READY_SETTLE, Fire()), (0, Restart()), (0, Exited(0)), (0, Spawned(101))], Policy(), False),  # a new run settles again
        ([*STARTED, (0.1, Restart()), (0, Exited(0)), (0, Spawned(101)), (0.4, Fire(0))], Policy(), False),  # the first run's settle timer is stale
        ([(0, Start()), (0, Spawned(100))], Policy(wait_ready=True), False),
        ([(0, Start()), (0, Spawned(100)), (5, Fire())], Policy(wait_ready=True, listen_timeout=10), False),  # no settling with wait_ready
        ([(0, Start()), (0, Spawned(100)), (1, Ready())], Policy(wait_ready=True), True),
        ([(0, Start()), (0, Spawned(100)), (1, Ready()), (0, Stop())], Policy(wait_ready=True), False),  # stopping is never ready
        # wait_ready turned off while waiting: online at the listen timeout, long settled by then
        ([(0, Start()), (0, Spawned(100)), (0, UpdatePolicy(Policy())), (3, Fire())], Policy(wait_ready=True), True),
        ([(0, Start()), (0, Spawned(100)), (0, UpdatePolicy(Policy(listen_timeout=0.2))), (0.2, Fire())], Policy(wait_ready=True, listen_timeout=0.2), False),
    ],
    ids=[
        "online-unsettled", "settled", "ready-1-at-once", "ready-1-then-settle", "new-run-unsettled", "stale-settle-timer",
        "wait-ready-spawned", "wait-ready-never-settles", "wait-ready-ready", "stopping-not-ready",
        "wait-ready-off-late", "wait-ready-off-early",
    ],
)
def test_readiness(steps: list[Step], policy: Policy, ready: bool) -> None:
    assert is_ready(run(steps, policy).state) is ready


def test_wait_ready_off_early_settles_on_its_own_timer() -> None:
    r = run([(0, Start()), (0, Spawned(100)), (0, UpdatePolicy(Policy(listen_timeout=0.2))), (0.2, Fire())], Policy(wait_ready=True, listen_timeout=0.2))
    assert r.state.status is Status.ONLINE and r.last_fx() == ["Announce(online)", "StartTimer(0.3)"]
    r.feed([(0.3, Fire())])
    assert is_ready(r.state)


# ---------------------------------------------------------------- the watchdog

WATCHDOG = Policy(watchdog=2.0)
WATCHDOG_READY = Policy(watchdog=2.0, wait_ready=True)
STARTED_WD_FX = [*STARTED_FX, "ArmWatchdog(2)"]


@cases(
    Case("armed-when-online", STARTED, Status.ONLINE, {"watchdog_armed": True}, STARTED_WD_FX, policy=WATCHDOG),
    Case("no-watchdog-no-arming", STARTED, Status.ONLINE, {"watchdog_armed": False}, STARTED_FX),
    Case(
        "ping-rearms",
        [*STARTED, (1, WatchdogPing())],
        Status.ONLINE,
        {"watchdog_armed": True},
        [*STARTED_WD_FX, "ArmWatchdog(2)"],
        policy=WATCHDOG,
    ),
    Case(
        "expiry-fails-gracefully",
        [*STARTED, (2, Bark())],
        Status.STOPPING,
        {"after_stop": After.FAILED, "watchdog_armed": False},
        [*STARTED_WD_FX, "Announce(watchdog)", *STOP_FX],
        policy=WATCHDOG,
    ),
    Case(
        "expiry-then-exit-is-a-crash",
        [*STARTED, (5, Bark()), (0.1, Exited(None, "SIGINT"))],
        Status.LAUNCHING,
        {"restarts": 1, "unstable_restarts": 0},
        [*STARTED_WD_FX, "Announce(watchdog)", *STOP_FX, *RELAUNCH_FX],
        policy=WATCHDOG,
    ),
    Case(
        "expiry-before-the-ping-is-stale",
        [*STARTED, (1, WatchdogPing()), (1, Bark(0))],
        Status.ONLINE,
        {"watchdog_armed": True},
        [*STARTED_WD_FX, "ArmWatchdog(2)"],
        policy=WATCHDOG,
    ),
    Case(
        "trigger-fails-at-once",
        [*STARTED, (0.1, WatchdogTrigger())],
        Status.STOPPING,
        {"after_stop": After.FAILED, "watchdog_armed": False},
        [*STARTED_WD_FX, "Announce(watchdog)", "DisarmWatchdog", *STOP_FX],
        policy=WATCHDOG,
    ),
    Case(
        "exit-disarms",
        [*STARTED, (1, Exited(1))],
        Status.LAUNCHING,
        {"watchdog_armed": False},
        [*STARTED_WD_FX, "DisarmWatchdog", *RELAUNCH_FX],
        policy=WATCHDOG,
    ),
    Case(
        "expiry-while-stopping-ignored",
        [*STARTED, (1, Stop()), (1, Bark())],
        Status.STOPPING,
        {"after_stop": After.NOTHING},
        [*STARTED_WD_FX, *STOP_FX],
        policy=WATCHDOG,
    ),
    Case(
        "wait-ready-arms-on-ready-not-on-spawn",
        [(0, Start()), (0, Spawned(100)), (1, Ready())],
        Status.ONLINE,
        {"watchdog_armed": True},
        ["CancelTimer", "Spawn", "Announce(spawned)", "StartTimer(3)", "CancelTimer", "Announce(online)", "ArmWatchdog(2)"],
        policy=WATCHDOG_READY,
    ),
    Case(
        "wait-ready-ping-before-ready-arms",
        [(0, Start()), (0, Spawned(100)), (1, WatchdogPing())],
        Status.LAUNCHING,
        {"watchdog_armed": True},
        policy=WATCHDOG_READY,
    ),
    Case(
        "second-ready-does-not-rearm",
        [(0, Start()), (0, Spawned(100)), (1, Ready()), (1, Ready())],
        Status.ONLINE,
        {},
        ["CancelTimer", "Spawn", "Announce(spawned)", "StartTimer(3)", "CancelTimer", "Announce(online)", "ArmWatchdog(2)"],
        policy=WATCHDOG_READY,
    ),
    Case("ping-when-stopped-ignored", [(0, WatchdogPing())], Status.STOPPED, {"watchdog_armed": False}, [], policy=WATCHDOG),
)
def test_watchdog(case: Case) -> None:
    check(case)


def test_watchdog_failures_count_as_unstable_until_errored() -> None:
    r = run(STARTED, Policy(watchdog=1.0, max_restarts=2))
    for pid in range(101, 110):
        r.feed([(0.5, WatchdogTrigger()), (0.1, Exited(None, "SIGINT"))])
        if r.state.status is not Status.LAUNCHING:
            break
        r.feed([(0, Spawned(pid))])
    assert r.state.status is Status.ERRORED and "watchdog" in r.state.reason


# ---------------------------------------------------------------- leftovers of an exited process


@cases(
    Case(
        "crash-with-leftovers-signals-then-relaunches",
        [*STARTED, (5, Exited(1, None, leftovers=True))],
        Status.LAUNCHING,
        {"restarts": 1},
        [*STARTED_FX, "SignalLeftovers(100,SIGINT)", "StartLeftoverTimer(100,1.6)", *RELAUNCH_FX],
    ),
    Case(
        "stopped-with-leftovers-already-signalled",
        [*STARTED, (1, Stop()), (0.1, Exited(None, "SIGINT", leftovers=True))],
        Status.STOPPED,
        {},
        [*STARTED_FX, *STOP_FX, "StartLeftoverTimer(100,1.6)", *STOPPED_FX],
    ),
    Case(
        "leftovers-use-kill-signal-and-timeout",
        [*STARTED, (5, Exited(1, None, leftovers=True))],
        Status.STOPPED,
        {},
        [*STARTED_FX, "SignalLeftovers(100,SIGTERM)", "StartLeftoverTimer(100,5)", "CancelTimer", "Announce(exit)"],
        policy=Policy(kill_signal="SIGTERM", kill_timeout=5.0, autorestart=False),
    ),
    Case(
        "grace-over-sigkill-even-after-a-relaunch",
        [*STARTED, (5, Exited(1, None, leftovers=True)), (0, Spawned(101)), (1.6, LeftoverTimeout(100))],
        Status.ONLINE,
        {"pid": 101},
        [*STARTED_FX, "SignalLeftovers(100,SIGINT)", "StartLeftoverTimer(100,1.6)", *RELAUNCH_FX, "Announce(online)", "StartTimer(0.5)", "SignalLeftovers(100,SIGKILL)"],
    ),
    Case(
        "grace-over-after-delete",
        [*STARTED, (0, Delete()), (0, Exited(0, None, leftovers=True)), (1.6, LeftoverTimeout(100))],
        Status.STOPPED,
        {},
        [*STARTED_FX, *STOP_FX, "StartLeftoverTimer(100,1.6)", "CancelTimer", "Announce(stopped)", "Remove", "SignalLeftovers(100,SIGKILL)"],
    ),
    Case(
        "no-leftovers-no-timer",
        [*STARTED, (5, Exited(1))],
        Status.LAUNCHING,
        {},
        [*STARTED_FX, *RELAUNCH_FX],
    ),
)
def test_leftovers(case: Case) -> None:
    check(case)


# ---------------------------------------------------------------- reset and adopt go through step


@pytest.mark.parametrize("status", list(Status), ids=lambda s: s.name.lower())
def test_reset_counters_in_any_status(status: Status) -> None:
    r = run([(0, ResetCounters())], status=status, restarts=9, unstable_restarts=4, backoff=3.0, timer=2)
    assert (r.state.restarts, r.state.unstable_restarts) == (0, 0)
    assert r.state.status is status and r.state.timer == 2 and r.state.backoff == 3.0
    assert r.effects == []


def test_reset_then_crash_counts_from_zero() -> None:
    r = run([*STARTED, (0.1, Exited(1)), (0, Spawned(101)), (0.1, Exited(1)), (0, Spawned(102)), (1, ResetCounters())], Policy(max_restarts=2))
    assert r.state.status is Status.ONLINE and r.state.restarts == 0
    r.feed([(0.1, Exited(1)), (0, Spawned(103)), (0.1, Exited(1)), (0, Spawned(104))])
    assert r.state.status is Status.ONLINE and r.state.restarts == 2  # the budget was reset too


@pytest.mark.parametrize("previous", [0, 1, 41])
def test_adopt_counts_one_restart_more_than_the_replaced_instance(previous: int) -> None:
    r = run([*STARTED, (1, Adopt(previous))])
    assert r.state.restarts == previous + 1 and r.state.status is Status.ONLINE and r.effects == [] or r.last_fx() == []
    assert r.state.pid == 100
