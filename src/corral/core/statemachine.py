"""The process state machine: pure code, no asyncio, no OS calls.

``step(state, event, now) -> (state, effects)`` decides; the runtime
(``corral.daemon.supervisor``) performs the effects (spawn, signal, timers)
and feeds what happens back in as events.  Keeping the two apart makes the
restart policy testable with a fake clock, table-driven.

States are PM2's: launching, online, stopping, stopped, errored, waiting restart.

Restart policy, as PM2 defines it:

* an exit the user did not ask for restarts the instance unless
  ``autorestart`` is off or the exit code is in ``stop_exit_codes``;
* an exit within ``min_uptime`` of the start (judged from the time the
  exit was *observed*) is unstable; after ``max_restarts`` unstable
  restarts in a row, the next unstable exit marks the instance ``errored``;
  a stable run resets the count;
* the restart waits ``restart_delay``, or with ``exp_backoff_restart_delay``
  a delay that starts there, grows by 1.5x per crash, is capped at
  ``BACKOFF_CAP`` and is reset after a run of ``BACKOFF_RESET`` seconds.

Readiness and the watchdog, as systemd defines them:

* an instance is *ready* (for a rolling reload) once it sent ``READY=1``, or,
  without ``wait_ready`` and without ``READY=1``, once it stayed online for
  ``Policy.settle`` seconds (the settle timer);
* with ``watchdog_sec`` the watchdog is armed when the instance comes online
  (with ``wait_ready``: when it is ready), re-armed by each ``WATCHDOG=1``; its
  expiry or ``WATCHDOG=trigger`` is a failure: a graceful stop, then the
  restart policy as for a crash.

When the main process is gone but its group or tree lives on (``Exited`` with
``leftovers``), the leftovers get the stop signal and, ``kill_timeout`` later,
SIGKILL (the leftover timer, one per exited process, never stale).

The states, the policy, the events and the effects are frozen dataclasses in
:mod:`corral.core.statemachine_types`, re-exported here.
"""

from __future__ import annotations

from dataclasses import replace

from corral.core.statemachine_types import (
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
    Result,
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
)

__all__ = [
    "Adopt",
    "After",
    "Announce",
    "ArmWatchdog",
    "BACKOFF_CAP",
    "BACKOFF_FACTOR",
    "BACKOFF_RESET",
    "CancelTimer",
    "Delete",
    "DisarmWatchdog",
    "Effect",
    "Event",
    "Exited",
    "Fail",
    "LeftoverTimeout",
    "Policy",
    "ProcState",
    "READY_SETTLE",
    "Ready",
    "Remove",
    "ResetCounters",
    "Restart",
    "Result",
    "Signal",
    "SignalLeftovers",
    "Spawn",
    "SpawnFailed",
    "Spawned",
    "Start",
    "StartLeftoverTimer",
    "StartTimer",
    "Status",
    "Stop",
    "Timeout",
    "UpdatePolicy",
    "WatchdogPing",
    "WatchdogTimeout",
    "WatchdogTrigger",
    "RUNNING",
    "is_ready",
    "step",
]

RUNNING = (Status.LAUNCHING, Status.ONLINE)


def _arm(state: ProcState, delay: float, **changes: object) -> Result:
    token = state.timer + 1
    new = replace(state, timer=token, **changes)  # type: ignore[arg-type]
    return new, [StartTimer(token, delay)]


def _launch(state: ProcState, now: float, *, count_restart: bool, reason: str) -> Result:
    new = replace(
        state,
        status=Status.LAUNCHING,
        pid=None,
        started_at=None,
        restarts=state.restarts + (1 if count_restart else 0),
        after_stop=After.NOTHING,
        timer=state.timer + 1,  # any armed timer is now stale
        reason=reason,
        notified=False,
        settled=False,
    )
    new, disarm = _disarm_watchdog(new)  # a new run arms its own
    return new, [CancelTimer(), *disarm, Spawn()]


def _arm_watchdog(state: ProcState) -> Result:
    if state.policy.watchdog is None:
        return state, []
    token = state.watchdog + 1
    return replace(state, watchdog=token, watchdog_armed=True), [ArmWatchdog(token, state.policy.watchdog)]


def _disarm_watchdog(state: ProcState) -> Result:
    if not state.watchdog_armed:
        return state, []
    return replace(state, watchdog=state.watchdog + 1, watchdog_armed=False), [DisarmWatchdog()]


def _watchdog_failed(state: ProcState, why: str) -> Result:
    """A missed watchdog is a failure, not a requested restart: the restart policy applies."""
    if state.status not in RUNNING:
        return state, []
    stopped, disarm = _disarm_watchdog(state)
    new, effects = _begin_stop(stopped, After.FAILED, f"watchdog: {why}")
    return new, [Announce("watchdog", f"failed: {why}"), *disarm, *effects]


def _online(state: ProcState, now: float, announce: Announce) -> Result:
    """Come online; readiness follows READY=1 or the settle timer; the watchdog starts
    now, or with wait_ready once the app said it is ready."""
    new = replace(state, status=Status.ONLINE)
    effects: list[Effect] = [announce]
    if not new.notified:
        remaining = new.policy.settle - (now - new.started_at) if new.started_at is not None else new.policy.settle
        if remaining <= 0:
            new = replace(new, settled=True)
        else:
            new, armed = _arm(new, remaining)
            effects += armed
    if not new.policy.wait_ready:
        new, armed = _arm_watchdog(new)
        effects += armed
    return new, effects


def is_ready(state: ProcState) -> bool:
    """Ready to serve: READY=1 received, or (without wait_ready) settled."""
    if state.status is not Status.ONLINE:
        return False
    if state.policy.wait_ready or state.notified:
        return state.notified
    return state.settled


def _begin_stop(state: ProcState, after: After, reason: str) -> Result:
    new, effects = _arm(
        state,
        state.policy.kill_timeout,
        status=Status.STOPPING,
        after_stop=after,
        reason=reason,
    )
    return new, [Signal(state.policy.kill_signal), *effects]


def _describe_exit(code: int | None, sig: str | None) -> str:
    if sig:
        return f"killed by {sig}"
    return f"exited with code {code}"


def _on_crash(state: ProcState, now: float, code: int | None, sig: str | None, *, failed_start: bool = False, failure: str | None = None) -> Result:
    """The instance ended without being asked to: apply the restart policy."""
    p = state.policy
    how = "failed to become ready" if failed_start else (failure or _describe_exit(code, sig))
    uptime = now - state.started_at if state.started_at is not None else 0.0
    base = replace(state, pid=None, exit_code=code, exit_signal=sig, after_stop=After.NOTHING)
    if not p.autorestart:
        new = replace(base, status=Status.STOPPED, timer=state.timer + 1, reason=f"{how}; autorestart is off")
        return new, [CancelTimer(), Announce("exit", new.reason)]
    if sig is None and code is not None and code in p.stop_exit_codes and not failed_start and failure is None:
        new = replace(base, status=Status.STOPPED, timer=state.timer + 1, reason=f"{how} (a stop exit code)")
        return new, [CancelTimer(), Announce("exit", new.reason)]
    unstable = failed_start or uptime < p.min_uptime
    if unstable and state.unstable_restarts >= p.max_restarts:
        new = replace(
            base,
            status=Status.ERRORED,
            timer=state.timer + 1,
            reason=f"{how}; {state.unstable_restarts} unstable restarts (each under min_uptime), giving up",
        )
        return new, [CancelTimer(), Announce("errored", new.reason)]
    unstable_restarts = state.unstable_restarts + 1 if unstable else 0
    if p.exp_backoff is not None:
        if state.backoff == 0.0 or uptime >= BACKOFF_RESET:
            backoff = p.exp_backoff
        else:
            backoff = min(state.backoff * BACKOFF_FACTOR, BACKOFF_CAP)
        delay = backoff
    else:
        backoff = 0.0
        delay = p.restart_delay
    base = replace(base, unstable_restarts=unstable_restarts, backoff=backoff)
    if delay > 0:
        new, effects = _arm(base, delay, status=Status.WAITING_RESTART, reason=f"{how}; restarting in {delay:g}s")
        return new, [Announce("exit", new.reason), *effects]
    new, effects = _launch(base, now, count_restart=True, reason=f"{how}; restarted")
    return new, [Announce("exit", f"{how}; restarting"), *effects]


def _finish_stop(state: ProcState, now: float, code: int | None, sig: str | None, how: str) -> Result:
    """The process of a requested stop is gone: do what was asked after it."""
    after = state.after_stop
    stopped = replace(
        state,
        status=Status.STOPPED,
        pid=None,
        exit_code=code,
        exit_signal=sig,
        after_stop=After.NOTHING,
        timer=state.timer + 1,
    )
    if after is After.RESTART:
        fresh = replace(stopped, unstable_restarts=0, backoff=0.0)
        return _launch(fresh, now, count_restart=True, reason=state.reason or "restarted")
    if after is After.DELETE:
        return stopped, [CancelTimer(), Announce("stopped", "deleted"), Remove()]
    if after is After.FAILED_START:
        return _on_crash(state, now, code, sig, failed_start=True)
    if after is After.FAILED:
        return _on_crash(state, now, code, sig, failure=state.reason or "failed")
    return replace(stopped, reason="stopped"), [CancelTimer(), Announce("stopped", how)]


def step(state: ProcState, event: Event, now: float) -> Result:
    """Decide what an event means for one instance; return the new state and the effects."""
    if isinstance(event, Exited):
        return _exited(state, event, now)
    if isinstance(event, LeftoverTimeout):
        return state, [SignalLeftovers(event.pid, "SIGKILL")]
    if isinstance(event, ResetCounters):
        return replace(state, restarts=0, unstable_restarts=0), []
    if isinstance(event, Adopt):
        return replace(state, restarts=event.restarts + 1), []
    if isinstance(event, WatchdogPing):
        if state.status in RUNNING and state.pid is not None:
            return _arm_watchdog(state)
        return state, []
    if isinstance(event, WatchdogTrigger):
        return _watchdog_failed(state, "the app asked for it (WATCHDOG=trigger)")
    if isinstance(event, WatchdogTimeout):
        if event.token != state.watchdog or not state.watchdog_armed:
            return state, []  # stale
        expired = replace(state, watchdog_armed=False)
        return _watchdog_failed(expired, f"no WATCHDOG=1 within {state.policy.watchdog or 0:g}s")
    return _step(state, event, now)


def _exited(state: ProcState, event: Exited, now: float) -> Result:
    """The main process is gone. Its leftovers get the grace period (the stop signal now unless
    a stop already sent it, SIGKILL after kill_timeout); then the exit itself is judged."""
    gone, effects = _disarm_watchdog(state)
    if event.leftovers:
        pid = state.pid if state.pid is not None else 0
        if state.status is not Status.STOPPING:
            effects = [*effects, SignalLeftovers(pid, state.policy.kill_signal)]
        effects = [*effects, StartLeftoverTimer(pid, state.policy.kill_timeout)]
    new, more = _step(gone, event, now)
    return new, [*effects, *more]


def _step(state: ProcState, event: Event, now: float) -> Result:
    s = state.status

    if isinstance(event, UpdatePolicy):
        return replace(state, policy=event.policy), []

    if isinstance(event, Start):
        if s in (Status.STOPPED, Status.ERRORED):
            fresh = replace(state, unstable_restarts=0, backoff=0.0)
            return _launch(fresh, now, count_restart=False, reason="started")
        if s is Status.WAITING_RESTART:
            return _launch(state, now, count_restart=True, reason="started")
        if s is Status.STOPPING:
            if state.after_stop is After.DELETE:
                return state, []
            return replace(state, after_stop=After.RESTART), []
        return state, []

    if isinstance(event, Stop):
        if s in RUNNING:
            return _begin_stop(state, After.NOTHING, "stop requested")
        if s is Status.WAITING_RESTART:
            return replace(state, status=Status.STOPPED, timer=state.timer + 1, reason="stop requested"), [CancelTimer()]
        if s is Status.STOPPING:
            return replace(state, after_stop=After.NOTHING if state.after_stop is not After.DELETE else After.DELETE), []
        return state, []

    if isinstance(event, Restart):
        if s in RUNNING:
            return _begin_stop(state, After.RESTART, event.reason)
        if s is Status.STOPPING:
            if state.after_stop is After.DELETE:
                return state, []
            return replace(state, after_stop=After.RESTART), []
        fresh = replace(state, unstable_restarts=0, backoff=0.0)
        return _launch(fresh, now, count_restart=True, reason=event.reason)

    if isinstance(event, Fail):
        if s in RUNNING:
            return _begin_stop(state, After.FAILED, event.reason)
        return state, []

    if isinstance(event, Delete):
        if s in RUNNING:
            return _begin_stop(state, After.DELETE, "delete requested")
        if s is Status.STOPPING:
            return replace(state, after_stop=After.DELETE), []
        return replace(state, status=Status.STOPPED, timer=state.timer + 1), [CancelTimer(), Remove()]

    if isinstance(event, Spawned):
        if s is Status.STOPPING:
            # The stop raced the spawn: signal the late process and (re)arm the kill
            # timer for it, since the one armed at the stop may already have fired
            # (its SIGKILL then reached nothing).
            late = replace(state, pid=event.pid, started_at=now)
            new, effects = _arm(late, state.policy.kill_timeout)
            return new, [Signal(state.policy.kill_signal), *effects]
        if s is not Status.LAUNCHING:
            # Spawned while not expecting it: stop it.
            return replace(state, pid=event.pid, started_at=now), [Signal(state.policy.kill_signal)]
        started = replace(state, pid=event.pid, started_at=now, exit_code=None, exit_signal=None)
        if state.policy.wait_ready:
            new, effects = _arm(started, state.policy.listen_timeout)
            return new, [Announce("spawned", f"pid {event.pid}, waiting for READY"), *effects]
        return _online(started, now, Announce("online", f"pid {event.pid}"))

    if isinstance(event, SpawnFailed):
        if s is Status.STOPPING and state.pid is None:
            # The stop raced a spawn that failed: no process will ever exit, so
            # the stop is complete now (otherwise it would hang in stopping).
            return _finish_stop(state, now, None, None, f"could not start: {event.error}")
        if s is not Status.LAUNCHING:
            return state, []
        failed = replace(state, started_at=now)
        new, effects = _on_crash(failed, now, 127, None)
        return replace(new, reason=f"could not start: {event.error}"), [
            Announce("spawn-failed", event.error),
            *effects,
        ]

    if isinstance(event, Ready):
        if s not in RUNNING or state.pid is None or state.notified:
            return state, []
        notified = replace(state, notified=True)
        out: list[Effect] = []
        if s is Status.LAUNCHING:
            notified = replace(notified, status=Status.ONLINE, timer=state.timer + 1, reason="ready")
            out = [CancelTimer(), Announce("online", f"pid {state.pid} ready")]
        if state.policy.wait_ready:
            # like systemd: the watchdog runs once start-up is done
            notified, armed = _arm_watchdog(notified)
            out += armed
        return notified, out

    if isinstance(event, Exited):
        if s is Status.STOPPING:
            return _finish_stop(state, now, event.code, event.signal, _describe_exit(event.code, event.signal))
        if s in RUNNING:
            return _on_crash(state, now, event.code, event.signal)
        return state, []

    if isinstance(event, Timeout):
        if event.token != state.timer:
            return state, []  # stale timer
        if s is Status.STOPPING:
            # Grace period is over: kill the whole group; wait for the exit.
            return replace(state, reason=f"{state.reason}; killed after kill_timeout"), [
                Signal("SIGKILL"),
                Announce("kill", f"no exit within {state.policy.kill_timeout:g}s, sent SIGKILL"),
            ]
        if s is Status.WAITING_RESTART:
            return _launch(state, now, count_restart=True, reason=state.reason)
        if s is Status.ONLINE and state.pid is not None:
            # The settle timer (the only one armed while online).
            return replace(state, settled=True), []
        if s is Status.LAUNCHING and state.pid is not None:
            # The listen timer (the only one armed while launching).
            if not state.policy.wait_ready:
                # wait_ready was turned off while waiting: stop waiting, it is online.
                return _online(replace(state, reason="online (wait_ready turned off)"), now, Announce("online", f"pid {state.pid}"))
            return _begin_stop(state, After.FAILED_START, f"not ready within {state.policy.listen_timeout:g}s")
        return state, []

    raise TypeError(f"unknown event {event!r}")
