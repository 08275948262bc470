"""The state machine's data: instance states, the policy, events (what happened) and effects (what to do).

Frozen dataclasses only, no logic; :mod:`corral.core.statemachine` decides with
``step(state, event, now) -> (state, effects)`` and re-exports every name here,
so ``from corral.core.statemachine import Exited`` keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

BACKOFF_FACTOR = 1.5
BACKOFF_CAP = 15.0  # seconds, as PM2
BACKOFF_RESET = 30.0  # seconds of healthy run that reset the backoff, as PM2
READY_SETTLE = 0.5  # without wait_ready, an instance counts as ready once up this long


class Status(StrEnum):
    LAUNCHING = "launching"
    ONLINE = "online"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERRORED = "errored"
    WAITING_RESTART = "waiting restart"

    def __str__(self) -> str:
        return self.value


class After(StrEnum):
    """What to do once a requested stop has completed."""

    NOTHING = "nothing"
    RESTART = "restart"
    DELETE = "delete"
    FAILED_START = "failed start"  # the start timed out: apply the crash policy
    FAILED = "failed"  # judged failed while running (watchdog): apply the crash policy


@dataclass(frozen=True)
class Policy:
    autorestart: bool = True
    max_restarts: int = 16
    min_uptime: float = 1.0
    restart_delay: float = 0.0
    exp_backoff: float | None = None
    stop_exit_codes: frozenset[int] = frozenset()
    kill_timeout: float = 1.6
    kill_signal: str = "SIGINT"
    wait_ready: bool = False
    listen_timeout: float = 3.0
    watchdog: float | None = None  # seconds (watchdog_sec); None: no watchdog
    settle: float = READY_SETTLE


@dataclass(frozen=True)
class ProcState:
    policy: Policy = field(default_factory=Policy)
    status: Status = Status.STOPPED
    pid: int | None = None
    started_at: float | None = None
    restarts: int = 0
    unstable_restarts: int = 0
    backoff: float = 0.0
    after_stop: After = After.NOTHING
    timer: int = 0  # token of the armed timer; a Timeout with another token is stale
    exit_code: int | None = None
    exit_signal: str | None = None
    reason: str = ""
    notified: bool = False  # READY=1 received from the current run
    settled: bool = False  # online for Policy.settle seconds in the current run
    watchdog: int = 0  # token of the watchdog timer; a WatchdogTimeout with another token is stale
    watchdog_armed: bool = False


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class Start:
    """Start a stopped or errored instance (also: start now, while waiting to restart)."""


@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class Restart:
    reason: str = "restart requested"


@dataclass(frozen=True)
class Delete:
    pass


@dataclass(frozen=True)
class Spawned:
    pid: int


@dataclass(frozen=True)
class SpawnFailed:
    error: str


@dataclass(frozen=True)
class Ready:
    """READY=1 from the instance."""


@dataclass(frozen=True)
class Exited:
    code: int | None
    signal: str | None = None
    leftovers: bool = False  # the process group or a descendant outlived the main process


@dataclass(frozen=True)
class Timeout:
    token: int


@dataclass(frozen=True)
class UpdatePolicy:
    policy: Policy


@dataclass(frozen=True)
class Fail:
    """The runtime judged a running instance failed (e.g. a missed watchdog): stop it
    gracefully, then treat its end as a crash (restart policy, unstable counting)."""

    reason: str


@dataclass(frozen=True)
class WatchdogPing:
    """WATCHDOG=1 from the instance."""


@dataclass(frozen=True)
class WatchdogTrigger:
    """WATCHDOG=trigger from the instance: fail now."""


@dataclass(frozen=True)
class WatchdogTimeout:
    token: int


@dataclass(frozen=True)
class LeftoverTimeout:
    """The grace period of the leftovers of exited process ``pid`` is over."""

    pid: int


@dataclass(frozen=True)
class ResetCounters:
    """``corral reset``: restart counters back to zero."""


@dataclass(frozen=True)
class Adopt:
    """This instance replaces one (rolling reload) that had ``restarts`` restarts: it counts one more."""

    restarts: int


Event = (
    Start | Stop | Restart | Delete | Spawned | SpawnFailed | Ready | Exited | Timeout | UpdatePolicy | Fail
    | WatchdogPing | WatchdogTrigger | WatchdogTimeout | LeftoverTimeout | ResetCounters | Adopt
)

# ---------------------------------------------------------------- effects


@dataclass(frozen=True)
class Spawn:
    pass


@dataclass(frozen=True)
class Signal:
    signal: str


@dataclass(frozen=True)
class StartTimer:
    token: int
    delay: float


@dataclass(frozen=True)
class CancelTimer:
    pass


@dataclass(frozen=True)
class Remove:
    """The instance is stopped and deleted: forget it."""


@dataclass(frozen=True)
class Announce:
    """A process event for the event stream and the daemon log."""

    kind: str
    message: str


@dataclass(frozen=True)
class ArmWatchdog:
    token: int
    delay: float


@dataclass(frozen=True)
class DisarmWatchdog:
    pass


@dataclass(frozen=True)
class SignalLeftovers:
    """Signal what is left of exited process ``pid``: its group and the tree recorded for it."""

    pid: int
    signal: str


@dataclass(frozen=True)
class StartLeftoverTimer:
    pid: int
    delay: float


Effect = Spawn | Signal | StartTimer | CancelTimer | Remove | Announce | ArmWatchdog | DisarmWatchdog | SignalLeftovers | StartLeftoverTimer

Result = tuple[ProcState, list[Effect]]
