"""The control commands, declared once.

The daemon registers one handler per :class:`Command` (a table keyed by these
objects, checked complete at start-up) and validates every request's
arguments against the declared params (:func:`check_args`) before its handler
runs; docs/protocol.md is generated from this table (``make docs``).

Standard library only: the CLI imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # "str", "int", "bool", "list[str]", "object", "list[object]"
    doc: str
    required: bool = False
    default: Any = None


@dataclass(frozen=True)
class Command:
    name: str
    doc: str
    params: tuple[Param, ...] = field(default=())
    result: str = ""
    changes_state: bool = False
    streaming: bool = False

    def __hash__(self) -> int:  # a key of handler tables; params hold lists (unhashable)
        return hash(self.name)


TARGET = Param("target", "list[str]", "Names, ids, namespaces, or `all`.", required=True)

PING = Command("ping", "Is the daemon alive: its version, pid, uptime, and `connections`, the control connections it accepted since it started (each CLI command opens one).", result="{version, pid, uptime, home, protocol, connections}")

START = Command(
    "start",
    "Register apps (AppSpec objects as plain data, as loaded from an ecosystem file; see App objects in docs/protocol.md) and start those with autostart. An app already known by name is started (if stopped) with its new definition.",
    (
        Param("apps", "list[object]", "App definitions: AppSpec objects as plain data, checked once by the daemon (docs/protocol.md).", required=True),
        Param("client_env", "object", "The caller's environment; apps inherit it, as in PM2.", default={}),
        Param("source", "str", "The ecosystem file the apps come from (used by `reload FILE`).", default=None),
        Param("wait", "bool", "Answer once the started processes have settled (online, errored or stopped); `false` (the CLI's default): once each launched instance is spawned (has a pid) or failed to spawn; apps held back by `depends_on` stay `waiting` and the start order carries on after the reply.", default=True),
    ),
    result="{processes: [the started processes], all: [every process]}",
    changes_state=True,
)

STOP = Command("stop", "Stop instances (kill_signal, kill_timeout, then SIGKILL to the process group).", (TARGET,), "{processes: [process], all: [process]}", True)

RESTART = Command(
    "restart",
    "Restart instances; with update_env, their inherited environment is replaced by client_env.",
    (
        TARGET,
        Param("update_env", "bool", "Replace the inherited environment.", default=False),
        Param("client_env", "object", "The caller's environment.", default={}),
        Param("with_dependents", "bool", "Also restart the apps that depend on the targets (depends_on), after them, in start order.", default=False),
    ),
    "{processes: [process], all: [process]}",
    True,
)

DELETE = Command("delete", "Stop and forget apps.", (TARGET,), "{processes: [process, status `deleted`], all: [process]}", True)

RELOAD = Command(
    "reload",
    "Zero-downtime reload: replace instances one by one (start the replacement, wait until it is ready, then stop the old one gracefully). With `apps`, first apply a changed ecosystem file: new definitions applied, added apps started, apps of the same `source` file that are gone deleted. Fork-mode apps without a shared socket fall back to a rolling restart.",
    (
        Param("target", "list[str]", "Names, ids, namespaces, or `all` (ignored with `apps`).", default=["all"]),
        Param("apps", "list[object]", "App definitions from an ecosystem file: AppSpec objects as plain data.", default=None),
        Param("source", "str", "The ecosystem file the apps come from.", default=None),
        Param("client_env", "object", "The caller's environment.", default={}),
        Param("with_dependents", "bool", "Also reload the apps that depend on the targets (depends_on), after them, in start order.", default=False),
    ),
    "{apps: [{name, mode, replaced, message}], started: [str], deleted: [str], all: [process]}",
    True,
)

SCALE = Command(
    "scale",
    "Change an app's number of instances live; scaling down stops the highest instances gracefully. The daemon's ceiling on instances (`[daemon] max_instances` in corral.toml) holds.",
    (Param("name", "str", "App name.", required=True), Param("count", "str", "`N`, `+N` or `-N`.", required=True)),
    "{processes: [process], added: int, removed: int, all: [process]}",
    True,
)

RESET = Command("reset", "Reset restart counters.", (TARGET,), "{processes: [process], all: [process]}", True)

SIGNAL = Command(
    "signal",
    "Send a signal to instances (their whole process group).",
    (TARGET, Param("signal", "str", "Signal name or number.", required=True)),
    "{processes: [process], all: [process], signal: int}",
    True,
)

LIST = Command("list", "Every instance, in the shape documented in docs/protocol.md.", result="[process]")

DESCRIBE = Command("describe", "Instances in full, including their environment when asked.", (TARGET, Param("show_env", "bool", "Include env values.", default=False)), "[process]")

ENV = Command("env", "The environment an instance runs with.", (Param("id", "int", "Instance id.", required=True),), "{NAME: value}")

FLUSH = Command("flush", "Empty the log files of the named apps (all when no target).", (Param("target", "list[str]", "Names, ids, namespaces, or `all`.", default=["all"]),), "{files: [path]}", True)

RELOAD_LOGS = Command("reload_logs", "Reopen every log file (after external rotation). SIGUSR2 to the daemon does the same.", result="{reopened: int}", changes_state=True)

SAVE = Command("save", "Write the process list to the dump file (the previous one kept as .bak).", (Param("force", "bool", "Save even an empty list.", default=False),), "{path, count}", True)

RESURRECT = Command("resurrect", "Start the apps from the dump file (falling back to .bak when it is missing or corrupt).", (Param("client_env", "object", "The caller's environment.", default={}),), "{processes: [the started processes], all: [process], source}", True)

KILL = Command("kill", "Stop every app gracefully, then stop the daemon.", result="{stopped: int}", changes_state=True)

HEALTH = Command(
    "health",
    "Aggregate health: an app is healthy when every instance is online and its probes pass. Used by `corral healthcheck`.",
    (Param("names", "list[str]", "App names (default: every autostart app).", default=[]),),
    "{healthy: bool, apps: [{name, healthy, reason}]}",
)

HISTORY = Command(
    "history",
    "CPU and memory samples of instances, oldest first (for the monitor and the dashboard). `time` is the daemon's monotonic clock. Without `since`: the last 120 samples. With `since`: those newer than it; where that reaches back before the last 120, one point per 10 s (mean CPU, peak memory) for up to an hour comes first.",
    (
        Param("target", "list[str]", "Names, ids, namespaces, or `all`.", default=["all"]),
        Param("since", "float", "Only samples newer than this daemon-monotonic time (`0`: the whole hour).", default=None),
    ),
    "{id: [{time, cpu, memory}]}",
)

SUBSCRIBE = Command(
    "subscribe",
    "Stream log lines and process events. With `lines`, first sends the last lines of each matched log file.",
    (
        Param("target", "list[str]", "Names, ids, namespaces, or `all`.", default=["all"]),
        Param("logs", "bool", "Send log lines.", default=True),
        Param("events", "bool", "Send process events.", default=False),
        Param("lines", "int", "Last lines to send first.", default=0),
        Param("streams", "list[str]", "`out`, `err` or both.", default=["out", "err"]),
        Param("follow", "bool", "Keep streaming after the tail.", default=True),
        Param("since", "float", "Tail only lines from this Unix time on.", default=None),
        Param("until", "float", "Tail only lines up to this Unix time (no following).", default=None),
        Param("grep", "str", "Only lines matching this regular expression (tail and live).", default=None),
    ),
    "stream of {stream: log|event, ...}",
    streaming=True,
)

EVENTS = Command(
    "events",
    "Stream process events (started, online, ready, unhealthy, healthy, exited, restarting, errored, stopped, reloaded, log-rotated, waiting, blocked): first the last ones the daemon keeps, then live ones.",
    (
        Param("names", "list[str]", "Only these apps (default: every app).", default=[]),
        Param("last", "int", "Kept events to send first.", default=20),
        Param("follow", "bool", "Keep streaming after them.", default=True),
    ),
    "{names, last_seq, events: [event]}, then a stream of {stream: event, seq, time, kind, app, instance, pid, reason, code, signal, message} (the kept ones first)",
    streaming=True,
)

COMMANDS: tuple[Command, ...] = (
    PING,
    START,
    STOP,
    RESTART,
    DELETE,
    RELOAD,
    SCALE,
    RESET,
    SIGNAL,
    LIST,
    DESCRIBE,
    ENV,
    FLUSH,
    RELOAD_LOGS,
    SAVE,
    RESURRECT,
    KILL,
    HEALTH,
    HISTORY,
    EVENTS,
    SUBSCRIBE,
)

BY_NAME: dict[str, Command] = {c.name: c for c in COMMANDS}

_TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": (int, float),
    "bool": bool,
    "object": dict,
    "list[str]": list,
    "list[object]": list,
}


def check_args(cmd: Command, args: dict[str, Any]) -> dict[str, Any]:
    """Validate args against the declaration; returns them with defaults filled in.

    Raises ValueError naming the request field.
    """
    out: dict[str, Any] = {}
    known = {p.name for p in cmd.params}
    for name in args:
        if name not in known:
            raise ValueError(f"unknown field 'args.{name}' for command '{cmd.name}'")
    for p in cmd.params:
        if p.name not in args or args[p.name] is None:
            if p.required:
                raise ValueError(f"field 'args.{p.name}' is required for command '{cmd.name}'")
            out[p.name] = p.default
            continue
        value = args[p.name]
        want = _TYPES[p.type]
        if p.type in ("int", "float") and isinstance(value, bool):
            raise ValueError(f"field 'args.{p.name}' must be {p.type}")
        if p.type == "list[str]" and isinstance(value, str):
            value = [value]
        if not isinstance(value, want):
            raise ValueError(f"field 'args.{p.name}' must be {p.type}, got {type(value).__name__}")
        if p.type == "list[str]" and not all(isinstance(v, str | int) and not isinstance(v, bool) for v in value):
            raise ValueError(f"field 'args.{p.name}' must be a list of strings")
        if p.type == "list[str]":
            value = [str(v) for v in value]
        if p.type == "list[object]" and not all(isinstance(v, dict) for v in value):
            raise ValueError(f"field 'args.{p.name}' must be a list of objects")
        out[p.name] = value
    return out
