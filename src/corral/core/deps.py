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

:func:`validate` turns a file's apps (:class:`~corral.core.appspec.AppSpec`) into a
:class:`Graph` or raises :class:`~corral.core.errors.ConfigError` naming the file, the
app and the key (unknown names, an app depending on itself, cycles, conditions that
can never be met). :func:`start_levels` / :func:`stop_levels` order apps. The start
planner that waits on the conditions is :mod:`corral.core.depplan`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from corral.core.errors import ConfigError

if TYPE_CHECKING:
    from corral.core.appspec import AppSpec

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


def is_one_shot(app: AppSpec) -> bool:
    return not app.autorestart


def has_readiness(app: AppSpec) -> bool:
    return app.wait_ready or app.health is not None


@dataclass(frozen=True)
class Graph:
    """Apps in file order and, per app, what it waits for (conditions resolved)."""

    order: tuple[str, ...]
    needs: Mapping[str, tuple[Dependency, ...]]

    def dependents(self, name: str) -> list[str]:
        return [a for a in self.order if any(d.name == name for d in self.needs.get(a, ()))]


def validate(apps: Sequence[AppSpec], *, file: str | None = None, known: Iterable[str] = ()) -> Graph:
    """Check every app's ``depends_on`` against the others; ConfigError names file, app and key.

    ``known``: names of apps outside ``apps`` that may be depended on (already
    registered with the daemon); their conditions are checked by the daemon.
    """
    by_name = {a.name: a for a in apps}
    outside = set(known) - set(by_name)
    needs: dict[str, tuple[Dependency, ...]] = {}
    for app in apps:
        name = app.name
        deps: list[Dependency] = []
        for item in app.depends_on:
            dep, cond = item.name, item.condition
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
            if cond == HEALTHY and target.health is None:
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


def condition_timeout(app: AppSpec, condition: str) -> float | None:
    """Seconds a dependent waits for ``condition`` of ``app`` once it was launched, from
    the app's own timeouts (``listen_timeout`` for READY=1; the probe's start period,
    interval, failure threshold and timeout for a health probe). None = no limit: a
    one-shot may run as long as it needs, and a spawn that keeps failing ends in
    ``errored``, which fails the dependents anyway."""
    if condition not in (READY, HEALTHY):
        return None
    limits: list[float] = []
    if condition == READY and app.wait_ready:
        limits.append(app.listen_timeout / 1000)
    health = app.health
    if health is not None:
        ms = health.start_period + health.interval * (health.failure_threshold + 1) + health.timeout
        limits.append(ms / 1000)
    return max(limits) if limits else None
