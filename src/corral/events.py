"""Process events: the model, a bounded in-memory ring, and counters by kind and reason.

Every state change of an instance is one :class:`ProcessEvent`. The daemon keeps
the last ``RING_SIZE`` in an :class:`EventRing` (for ``describe``, the dashboard
and ``corral events``, which replays them and then follows new ones), counts them
in :class:`EventCounters` (Prometheus ``corral_events_total{kind,reason}``), and
hands each to the hooks (:mod:`corral.hooks`). Pure code: no asyncio, no I/O.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

# The kinds, in the order a life goes through them.
STARTED = "started"  # spawned
ONLINE = "online"  # running (with wait_ready: READY=1 came)
READY = "ready"  # the first passing probe, or READY=1
UNHEALTHY = "unhealthy"
HEALTHY = "healthy"
EXITED = "exited"  # code or signal; a requested stop ends in 'stopped' instead
RESTARTING = "restarting"  # with a reason, one of RESTART_REASONS
ERRORED = "errored"  # restarts used up
STOPPED = "stopped"
RELOADED = "reloaded"
LOG_ROTATED = "log-rotated"
WAITING = "waiting"  # not started yet: waiting for a dependency (depends_on)
BLOCKED = "blocked"  # not started: a dependency failed

KINDS: tuple[str, ...] = (
    STARTED, ONLINE, READY, UNHEALTHY, HEALTHY, EXITED, RESTARTING, ERRORED, STOPPED, RELOADED, LOG_ROTATED, WAITING, BLOCKED,
)
RESTART_REASONS: tuple[str, ...] = ("crash", "memory limit", "cron", "watchdog", "watch", "liveness", "manual", "not ready")

RING_SIZE = 1000
MAX_MESSAGE = 500  # characters of a message kept: an app cannot grow the ring through its exit text


@dataclass(frozen=True)
class ProcessEvent:
    seq: int
    time: float  # wall clock, seconds since the epoch
    kind: str
    app: str
    instance: int | None = None
    pid: int | None = None
    reason: str = ""
    code: int | None = None
    signal: str | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def env(self) -> dict[str, str]:
        """The event as ``CORRAL_EVENT_*`` environment variables (for command hooks)."""
        out = {"CORRAL_EVENT": self.to_json()}
        for k, v in self.to_dict().items():
            out[f"CORRAL_EVENT_{k.upper()}"] = "" if v is None else str(v)
        return out

    def summary(self) -> str:
        """One line for people: ``web#2 exited (code 1): ...``."""
        who = self.app if self.instance is None else f"{self.app}#{self.instance}"
        extra: list[str] = []
        if self.code is not None:
            extra.append(f"code {self.code}")
        if self.signal:
            extra.append(self.signal)
        if self.reason and self.reason != self.message:
            extra.append(self.reason)
        text = f"{who} {self.kind}" + (f" ({', '.join(extra)})" if extra else "")
        return f"{text}: {self.message}" if self.message else text


def restart_reason(trigger: str) -> str:
    """A restart's trigger as one of :data:`RESTART_REASONS` (unknown ones: 'manual')."""
    t = trigger.lower()
    for reason in RESTART_REASONS:
        if reason in t:
            return reason
    if "memory" in t:
        return "memory limit"
    if "exited" in t or "killed" in t or "crash" in t or "spawn" in t:
        return "crash"
    return "manual"


class EventRing:
    """The last ``size`` events, numbered from 1 so a follower can resume after ``seq``."""

    def __init__(self, size: int = RING_SIZE) -> None:
        self._events: deque[ProcessEvent] = deque(maxlen=max(1, size))
        self._seq = 0

    def add(self, kind: str, app: str, now: float, *, instance: int | None = None, pid: int | None = None,
            reason: str = "", code: int | None = None, signal: str | None = None, message: str = "") -> ProcessEvent:
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        self._seq += 1
        event = ProcessEvent(self._seq, now, kind, app, instance, pid, reason[:MAX_MESSAGE], code, signal, message[:MAX_MESSAGE])
        self._events.append(event)
        return event

    @property
    def last_seq(self) -> int:
        return self._seq

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[ProcessEvent]:
        return iter(tuple(self._events))

    def since(self, seq: int) -> list[ProcessEvent]:
        """Events after ``seq`` that are still kept (a slow follower may have missed older ones)."""
        return [e for e in self._events if e.seq > seq]

    def last(self, n: int, app: str | None = None) -> list[ProcessEvent]:
        picked = [e for e in self._events if app is None or e.app == app]
        return picked[-n:] if n > 0 else []


class EventCounters:
    """Counts by (kind, reason) for Prometheus; the reasons are a closed set, so it stays small."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def count(self, event: ProcessEvent) -> None:
        reason = event.reason if event.kind == RESTARTING and event.reason in RESTART_REASONS else ""
        key = (event.kind, reason)
        self.counts[key] = self.counts.get(key, 0) + 1

    def prometheus(self) -> str:
        lines = [
            "# HELP corral_events_total Process events by kind (and reason, for restarts).",
            "# TYPE corral_events_total counter",
        ]
        for (kind, reason), n in sorted(self.counts.items()):
            lines.append(f'corral_events_total{{kind="{kind}",reason="{reason}"}} {n}')
        return "\n".join(lines) + "\n"


def render_lines(events: Iterable[ProcessEvent], *, as_json: bool) -> Iterator[str]:
    """``corral events`` output: JSON lines, or a time and a summary per line."""
    import time as _time

    for e in events:
        if as_json:
            yield e.to_json()
        else:
            stamp = _time.strftime("%Y-%m-%d %H:%M:%S", _time.localtime(e.time)) + f".{int(e.time * 1000) % 1000:03d}"
            yield f"{stamp} {e.summary()}"


# ---------------------------------------------------------------- from the state machine


@dataclass(frozen=True)
class Change:
    """An event to emit for one instance, before the ring numbers and stamps it."""

    kind: str
    reason: str = ""
    code: int | None = None
    signal: str | None = None
    message: str = ""


def transition_events(before: Any, after: Any, event: Any) -> list[Change]:
    """What one :func:`corral.statemachine.step` meant, as events: compare the states
    around it (``ProcState``) and the event fed in. Pure; the supervisor calls it with
    every step it performs and adds app, instance, pid and time."""
    from corral.statemachine import Exited, Restart, Spawned, Status

    out: list[Change] = []
    b, a = before.status, after.status
    if isinstance(event, Exited) and b in (Status.LAUNCHING, Status.ONLINE):
        how = f"killed by {event.signal}" if event.signal else f"exited with code {event.code}"
        out.append(Change(EXITED, code=event.code, signal=event.signal, message=how))
    if a is Status.ERRORED and b is not Status.ERRORED:
        out.append(Change(ERRORED, reason=after.reason, message=after.reason))
        return out
    restarted = after.restarts > before.restarts
    # a delayed relaunch (waiting restart -> launching) was announced at the crash already
    if (restarted and b is not Status.WAITING_RESTART) or (a is Status.WAITING_RESTART and b is not Status.WAITING_RESTART):
        trigger = event.reason if isinstance(event, Restart) else after.reason
        if isinstance(event, Exited) and b in (Status.LAUNCHING, Status.ONLINE):
            trigger = "crash"  # the exit was not asked for
        out.append(Change(RESTARTING, reason=restart_reason(trigger), message=after.reason))
    if isinstance(event, Spawned) and a in (Status.LAUNCHING, Status.ONLINE) and b is Status.LAUNCHING:
        out.append(Change(STARTED, message=f"pid {event.pid}"))
    if a is Status.ONLINE and b is not Status.ONLINE:
        out.append(Change(ONLINE))
        if after.policy.wait_ready:
            out.append(Change(READY, message="READY=1"))
    if a is Status.STOPPED and b in (Status.STOPPING, Status.WAITING_RESTART) and not restarted:
        out.append(Change(STOPPED, message=after.reason))
    return out
