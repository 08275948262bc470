"""The start planner of ``depends_on``: pure, in the shape of :mod:`corral.core.statemachine`.

``plan_step(state, event, now) -> (state, effects)``. The runtime
(:mod:`corral.core.startplan`) feeds it what it sees of the apps (started, online,
healthy, exited...) and performs its effects (launch an app, arm a timer, show a
waiting status, report the result). The graph it walks comes from
:func:`corral.core.deps.validate`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from corral.core.deps import (
    COMPLETED,
    COMPLETED_OK,
    CONDITIONS,
    HEALTHY,
    READY,
    STARTED,
    Dependency,
    Graph,
    condition_timeout,
    has_readiness,
    is_one_shot,
    with_dependencies,
)

if TYPE_CHECKING:
    from corral.core.appspec import AppSpec

# ---------------------------------------------------------------- the start planner


@dataclass(frozen=True)
class Facts:
    """What has been seen of one app since the plan launched it."""

    started: bool = False
    online: bool = False
    healthy: bool = False
    exit_code: int | None = None  # of a one-shot's end (None: not ended, or by a signal)
    ended: bool = False
    failure: str = ""  # errored / stopped / unhealthy, as the runtime said it


@dataclass(frozen=True)
class AppInfo:
    one_shot: bool = False
    readiness: bool = False  # wait_ready or a health probe: 'ready' needs more than online
    probe: bool = False  # has a health probe: 'ready' then also needs the first pass
    timeouts: Mapping[str, float | None] = field(default_factory=dict)  # condition -> seconds


@dataclass(frozen=True)
class PlanState:
    needs: Mapping[str, tuple[Dependency, ...]]
    order: tuple[str, ...]
    info: Mapping[str, AppInfo]
    launched: frozenset[str] = frozenset()
    facts: Mapping[str, Facts] = field(default_factory=dict)
    blocked: Mapping[str, str] = field(default_factory=dict)  # app -> why it will not start
    failed: Mapping[str, str] = field(default_factory=dict)  # dependency -> why it failed its dependents
    timers: Mapping[str, int] = field(default_factory=dict)  # dependency -> token of its armed wait timer
    token: int = 0
    done: bool = False


# events


@dataclass(frozen=True)
class Begin:
    pass


@dataclass(frozen=True)
class Observed:
    """Something the runtime saw of an app: ``started``, ``online``, ``healthy``,
    ``unhealthy``, ``exited`` (with ``code``), ``errored`` or ``stopped``."""

    app: str
    what: str
    code: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class WaitTimeout:
    app: str
    token: int


PlanEvent = Begin | Observed | WaitTimeout


# effects


@dataclass(frozen=True)
class Launch:
    app: str


@dataclass(frozen=True)
class ArmWait:
    app: str
    token: int
    delay: float


@dataclass(frozen=True)
class Waiting:
    """Status to show for an app not launched yet: ``waiting for migrate (completed_successfully)``."""

    app: str
    reason: str


@dataclass(frozen=True)
class Blocked:
    """The app will not be started in this plan."""

    app: str
    reason: str


@dataclass(frozen=True)
class Finished:
    ok: bool
    failures: tuple[tuple[str, str], ...]  # (app, reason) for blocked apps and failed dependencies


PlanEffect = Launch | ArmWait | Waiting | Blocked | Finished
PlanResult = tuple[PlanState, list[PlanEffect]]


def new_plan(graph: Graph, apps: Sequence[AppSpec], names: Iterable[str] | None = None) -> PlanState:
    """A plan starting ``names`` (default: every app) and what they need."""
    chosen = with_dependencies(graph, graph.order if names is None else names)
    by_name = {a.name: a for a in apps}
    info: dict[str, AppInfo] = {}
    for n in chosen:
        app = by_name.get(n)
        if app is None:  # not known here: a long-running app without readiness
            info[n] = AppInfo(timeouts=dict.fromkeys(CONDITIONS))
            continue
        info[n] = AppInfo(
            one_shot=is_one_shot(app),
            readiness=has_readiness(app),
            probe=app.health is not None,
            timeouts={c: condition_timeout(app, c) for c in CONDITIONS},
        )
    needs = {n: tuple(d for d in graph.needs.get(n, ()) if d.name in info) for n in chosen}
    return PlanState(needs=needs, order=tuple(chosen), info=info)


def satisfied(dep: Dependency, facts: Facts, info: AppInfo) -> bool:
    c = dep.condition
    if c == STARTED:
        return facts.started
    if c == READY:
        return facts.online and (facts.healthy or not info.probe)
    if c == HEALTHY:
        return facts.healthy
    if c == COMPLETED:
        return facts.ended
    return facts.ended and facts.exit_code == 0


def broken(dep: Dependency, facts: Facts, info: AppInfo) -> str:
    """Why ``dep`` can no longer be met, or ''."""
    if satisfied(dep, facts, info):
        return ""
    if facts.failure:
        return facts.failure
    if facts.ended:
        if dep.condition == COMPLETED_OK:
            return "exited with code " + str(facts.exit_code) if facts.exit_code is not None else "killed by a signal"
        if info.one_shot:
            return "exited before it was " + dep.condition
    return ""


def _unmet(state: PlanState, app: str) -> list[Dependency]:
    return [d for d in state.needs[app] if not satisfied(d, state.facts.get(d.name, Facts()), state.info[d.name])]


def _waiting_text(deps: Sequence[Dependency]) -> str:
    return "waiting for " + ", ".join(f"{d.name} ({d.condition})" for d in deps)


def _advance(state: PlanState, effects: list[PlanEffect], now: float) -> PlanResult:
    """Propagate failures, launch what may start, arm waits, report the end."""
    blocked = dict(state.blocked)
    failed = dict(state.failed)
    launched = set(state.launched)
    timers = dict(state.timers)
    token = state.token
    changed = True
    while changed:
        changed = False
        for app in state.order:
            if app in launched or app in blocked:
                continue
            for d in state.needs[app]:
                why = ""
                if d.name in blocked:
                    why = f"{d.name} was not started ({blocked[d.name]})"
                else:
                    why = broken(d, state.facts.get(d.name, Facts()), state.info[d.name])
                    if why:
                        failed.setdefault(d.name, why)
                        why = f"{d.name} failed: {why}"
                if why:
                    blocked[app] = f"not started: {why}"
                    effects.append(Blocked(app, blocked[app]))
                    changed = True
                    break
    interim = replace(state, blocked=blocked, failed=failed)
    for app in state.order:
        if app in launched or app in blocked:
            continue
        unmet = _unmet(interim, app)
        if not unmet:
            launched.add(app)
            effects.append(Launch(app))
    # arm a wait for every launched app something still waits on, with its own timeout
    for app in state.order:
        if app in launched or app in blocked:
            continue
        for d in _unmet(interim, app):
            if d.name in launched and d.name not in timers:
                limit = state.info[d.name].timeouts.get(d.condition)
                if limit is not None:
                    token += 1
                    timers[d.name] = token
                    effects.append(ArmWait(d.name, token, limit))
    new = replace(interim, launched=frozenset(launched), timers=timers, token=token)
    pending = [a for a in new.order if a not in launched and a not in blocked]
    if not pending and not new.done:
        failures = tuple((a, blocked[a]) for a in new.order if a in blocked) + tuple(
            (a, why) for a, why in failed.items() if a in new.order
        )
        new = replace(new, done=True)
        effects.append(Finished(ok=not failures, failures=failures))
    return new, effects


def plan_step(state: PlanState, event: PlanEvent, now: float) -> PlanResult:
    """Decide what an observation means for the start plan; return the new state and the effects."""
    if state.done:
        return state, []
    effects: list[PlanEffect] = []
    if isinstance(event, Begin):
        new, effects = _advance(state, effects, now)
        for app in new.order:
            if app not in new.launched and app not in new.blocked:
                effects.append(Waiting(app, _waiting_text(_unmet(new, app))))
        return new, effects
    if isinstance(event, WaitTimeout):
        if state.timers.get(event.app) != event.token:
            return state, []
        waits = [d for a in state.order if a not in state.launched and a not in state.blocked for d in _unmet(state, a) if d.name == event.app]
        if not waits:
            return state, []
        limit = max((state.info[event.app].timeouts.get(d.condition) or 0.0) for d in waits)
        facts = replace(state.facts.get(event.app, Facts()), failure=f"not {waits[0].condition} within {limit:g}s")
        state = replace(state, facts={**state.facts, event.app: facts})
        return _advance(state, effects, now)
    if isinstance(event, Observed):
        if event.app not in state.info:
            return state, []
        f = state.facts.get(event.app, Facts())
        w = event.what
        if w == "started":
            f = replace(f, started=True)
        elif w in ("online", "ready"):
            f = replace(f, started=True, online=True)
        elif w == "healthy":
            f = replace(f, healthy=True)
        elif w == "unhealthy":
            if not f.healthy:
                f = replace(f, failure=event.reason or "unhealthy")
            f = replace(f, healthy=False)
        elif w == "exited":
            if state.info[event.app].one_shot:
                f = replace(f, ended=True, exit_code=event.code, online=False)
            else:
                f = replace(f, online=False)
        elif w in ("errored", "stopped"):
            f = replace(f, failure=event.reason or w, online=False)
        else:
            return state, []
        prev = state
        state = replace(state, facts={**state.facts, event.app: f})
        new, effects = _advance(state, effects, now)
        for app in new.order:
            if app in prev.launched or app in prev.blocked or app in new.launched or app in new.blocked:
                continue
            unmet = _unmet(new, app)
            if unmet != _unmet(prev, app):
                effects.append(Waiting(app, _waiting_text(unmet)))
        return new, effects
    raise TypeError(f"unknown event {event!r}")
