"""Start order between apps (``depends_on``): parsing, validation, ordering and a pure planner.

Pure code, no asyncio, no OS calls. An app's ``depends_on`` is a list of app names
or a table ``{name = condition}``; the conditions are

* ``started``: the dependency's process was spawned;
* ``ready``: it is online and, when it has a readiness signal (``wait_ready``:
  READY=1) or a health probe, that signal came (the probe passed once);
* ``healthy``: its health probe passes (an app without a ``health`` table cannot be);
* ``completed``: a one-shot app (``autorestart = false``) exited, with any code;
* ``completed_successfully``: a one-shot app exited with code 0.

A bare name means ``completed_successfully`` for a one-shot app and ``ready``
otherwise. Compose's spellings (``service_started``, ``service_healthy``,
``service_completed_successfully``) are accepted too.

:func:`validate` turns a file's apps into a :class:`Graph` or raises
:class:`~corral.errors.ConfigError` naming the file, the app and the key (unknown
names, an app depending on itself, cycles, conditions that can never be met).
:func:`start_levels` / :func:`stop_levels` order apps; :func:`plan_step` is the
start planner, in the shape of :mod:`corral.statemachine`:
``plan_step(state, event, now) -> (state, effects)``. The runtime feeds it what it
sees of the apps (started, online, healthy, exited...) and performs its effects
(launch an app, arm a timer, show a waiting status, report the result).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from corral.errors import ConfigError

STARTED = "started"
READY = "ready"
HEALTHY = "healthy"
COMPLETED = "completed"
COMPLETED_OK = "completed_successfully"
CONDITIONS: tuple[str, ...] = (STARTED, READY, HEALTHY, COMPLETED, COMPLETED_OK)
DEFAULT = "default"  # a bare name: resolved by validate() from the dependency's kind

# Compose's names, and a few obvious spellings.
CONDITION_ALIASES: dict[str, str] = {
    "service_started": STARTED,
    "service_healthy": HEALTHY,
    "service_completed_successfully": COMPLETED_OK,
    "online": READY,
    "completed-successfully": COMPLETED_OK,
    "success": COMPLETED_OK,
}

KEY = "depends_on"


@dataclass(frozen=True, order=True)
class Dependency:
    name: str
    condition: str = DEFAULT


# ---------------------------------------------------------------- the key's parser


def parse_condition(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"a condition is one of {', '.join(CONDITIONS)}, got {value!r}")
    s = value.strip().lower()
    s = CONDITION_ALIASES.get(s, s)
    if s not in CONDITIONS:
        raise ValueError(f"unknown condition {value!r} (one of {', '.join(CONDITIONS)})")
    return s


def parse_depends_on(value: Any) -> list[dict[str, str]]:
    """The ``depends_on`` key's parser (ValueError on bad input): a name, a list of
    names, or a table ``{name = condition}``; a condition may also be a table
    ``{condition = "..."}`` as compose writes it. Returns ``[{name, condition}]``
    (JSON-friendly: it goes to the daemon and into the dump file)."""
    if value is None or value is False:
        return []
    items: list[tuple[Any, Any]]
    if isinstance(value, str):
        items = [(value, DEFAULT)]
    elif isinstance(value, list | tuple):
        items = [(v, DEFAULT) for v in value]
    elif isinstance(value, dict):
        items = list(value.items())
    else:
        raise ValueError(f"expected a list of app names or a table {{name = condition}}, got {value!r}")
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for name, cond in items:
        if isinstance(name, dict) and set(name) == {"name", "condition"}:  # already normalised (sent to the daemon)
            name, cond = name["name"], name["condition"]
        elif isinstance(name, dict) and len(name) == 1:  # [{migrate = "completed"}] in YAML lists
            ((name, cond),) = name.items()
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"expected an app name, got {name!r}")
        name = name.strip()
        if isinstance(cond, dict):
            if set(cond) != {"condition"}:
                raise ValueError(f"dependency {name!r}: expected {{condition = \"...\"}}, got {cond!r}")
            cond = cond["condition"]
        condition = DEFAULT if cond == DEFAULT else parse_condition(cond)
        if name in seen:
            raise ValueError(f"{name!r} is named twice")
        seen.add(name)
        out.append({"name": name, "condition": condition})
    return out


# ---------------------------------------------------------------- validation


def is_one_shot(app: Mapping[str, Any]) -> bool:
    return not app.get("autorestart", True)


def has_readiness(app: Mapping[str, Any]) -> bool:
    return bool(app.get("wait_ready")) or bool(app.get("health"))


@dataclass(frozen=True)
class Graph:
    """Apps in file order and, per app, what it waits for (conditions resolved)."""

    order: tuple[str, ...]
    needs: Mapping[str, tuple[Dependency, ...]]

    def dependents(self, name: str) -> list[str]:
        return [a for a in self.order if any(d.name == name for d in self.needs.get(a, ()))]


def app_dependencies(app: Mapping[str, Any]) -> list[dict[str, str]]:
    raw = app.get(KEY) or []
    return list(raw)


def validate(apps: Sequence[Mapping[str, Any]], *, file: str | None = None, known: Iterable[str] = ()) -> Graph:
    """Check every app's ``depends_on`` against the others; ConfigError names file, app and key.

    ``known``: names of apps outside ``apps`` that may be depended on (already
    registered with the daemon); their conditions are checked by the daemon.
    """
    by_name = {str(a["name"]): a for a in apps}
    outside = set(known) - set(by_name)
    needs: dict[str, tuple[Dependency, ...]] = {}
    for app in apps:
        name = str(app["name"])
        deps: list[Dependency] = []
        for item in app_dependencies(app):
            dep, cond = item["name"], item["condition"]
            if dep == name:
                raise ConfigError("an app cannot depend on itself", file=file, app=name, key=KEY)
            target = by_name.get(dep)
            if target is None:
                if dep in outside:
                    deps.append(Dependency(dep, READY if cond == DEFAULT else cond))
                    continue
                others = ", ".join(n for n in by_name if n != name) or "none"
                raise ConfigError(f"no app named {dep!r} (apps: {others})", file=file, app=name, key=KEY)
            if cond == DEFAULT:
                cond = COMPLETED_OK if is_one_shot(target) else READY
            if cond == HEALTHY and not target.get("health"):
                raise ConfigError(
                    f"{dep!r} can never be healthy: it has no health probe (add a [health] table to it, or use 'ready')",
                    file=file, app=name, key=KEY,
                )
            if cond in (COMPLETED, COMPLETED_OK) and not is_one_shot(target):
                raise ConfigError(
                    f"{dep!r} never completes: it is restarted when it exits (set autorestart = false on it, or use 'ready')",
                    file=file, app=name, key=KEY,
                )
            deps.append(Dependency(dep, cond))
        needs[name] = tuple(deps)
    cycle = find_cycle(list(by_name), needs)
    if cycle:
        raise ConfigError(f"dependency cycle: {' -> '.join(cycle)}", file=file, app=cycle[0], key=KEY)
    return Graph(order=tuple(by_name), needs=needs)


def find_cycle(order: Sequence[str], needs: Mapping[str, Sequence[Dependency]]) -> list[str] | None:
    """A cycle as ``[a, b, ..., a]``, the first found in file order, or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(order, WHITE)
    for root in order:
        if color[root] != WHITE:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path = [root]
        color[root] = GREY
        while stack:
            node, i = stack[-1]
            edges = [d.name for d in needs.get(node, ()) if d.name in color]
            if i < len(edges):
                stack[-1] = (node, i + 1)
                nxt = edges[i]
                if color[nxt] == GREY:
                    return path[path.index(nxt):] + [nxt]
                if color[nxt] == WHITE:
                    color[nxt] = GREY
                    stack.append((nxt, 0))
                    path.append(nxt)
            else:
                color[node] = BLACK
                stack.pop()
                path.pop()
    return None


# ---------------------------------------------------------------- ordering


def with_dependencies(graph: Graph, names: Iterable[str]) -> list[str]:
    """``names`` and everything they need, transitively, in file order."""
    want: set[str] = set()
    todo = list(names)
    while todo:
        n = todo.pop()
        if n in want:
            continue
        want.add(n)
        todo.extend(d.name for d in graph.needs.get(n, ()) if d.name in graph.needs)
    return [n for n in graph.order if n in want]


def with_dependents(graph: Graph, names: Iterable[str]) -> list[str]:
    """``names`` and every app that needs them, transitively, in start order."""
    want = set(names)
    changed = True
    while changed:
        changed = False
        for app, deps in graph.needs.items():
            if app not in want and any(d.name in want for d in deps):
                want.add(app)
                changed = True
    return [n for level in start_levels(graph, want) for n in level]


def start_levels(graph: Graph, names: Iterable[str] | None = None) -> list[list[str]]:
    """Apps grouped in waves: each wave needs only apps of earlier waves (file order within one)."""
    chosen = set(graph.order if names is None else names)
    placed: dict[str, int] = {}

    def level(n: str) -> int:
        # over the whole graph: an app left out still orders the ones around it
        # (worker -> web -> cache: worker stops before cache even when web is not named)
        if n not in placed:
            inner = [level(d.name) for d in graph.needs.get(n, ()) if d.name in graph.needs]
            placed[n] = 1 + max(inner, default=-1)
        return placed[n]

    waves: dict[int, list[str]] = {}
    for n in graph.order:
        if n in chosen:
            waves.setdefault(level(n), []).append(n)
    return [waves[k] for k in sorted(waves)]


def stop_levels(graph: Graph, names: Iterable[str] | None = None) -> list[list[str]]:
    """The reverse of :func:`start_levels`: dependents stop before what they need."""
    return [list(w) for w in reversed(start_levels(graph, names))]


# ---------------------------------------------------------------- timeouts


def condition_timeout(app: Mapping[str, Any], condition: str) -> float | None:
    """Seconds a dependent waits for ``condition`` of ``app`` once it was launched, from
    the app's own timeouts (``listen_timeout`` for READY=1; the probe's start period,
    interval, failure threshold and timeout for a health probe). None = no limit: a
    one-shot may run as long as it needs, and a spawn that keeps failing ends in
    ``errored``, which fails the dependents anyway."""
    if condition not in (READY, HEALTHY):
        return None
    limits: list[float] = []
    if condition == READY and app.get("wait_ready"):
        limits.append(float(app.get("listen_timeout", 3000)) / 1000)
    health = app.get("health")
    if health:
        ms = health["start_period"] + health["interval"] * (health["failure_threshold"] + 1) + health["timeout"]
        limits.append(ms / 1000)
    return max(limits) if limits else None


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


def new_plan(graph: Graph, apps: Sequence[Mapping[str, Any]], names: Iterable[str] | None = None) -> PlanState:
    """A plan starting ``names`` (default: every app) and what they need."""
    chosen = with_dependencies(graph, graph.order if names is None else names)
    by_name = {str(a["name"]): a for a in apps}
    info: dict[str, AppInfo] = {}
    for n in chosen:
        app = by_name.get(n, {})
        info[n] = AppInfo(
            one_shot=is_one_shot(app),
            readiness=has_readiness(app),
            probe=bool(app.get("health")),
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
