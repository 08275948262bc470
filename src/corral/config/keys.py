"""Every app config key, declared once.

Each :class:`Key` carries its canonical name, how a value is parsed and
normalised, its default, PM2's names for it, a one-line doc, its range
(``bounds``) and its ``corral start`` flags.  The validator
(``corral.config.loader.normalize_app``), the CLI's ``start`` options
(``corral.cli.keyflags``), ``describe``'s rendering and ``docs/config.md``
(``corral.config.docs``) are all built from :data:`KEYS`, so they cannot
drift apart.
"""

from __future__ import annotations

import math
import shlex
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from corral.core.units import parse_duration_ms, parse_size

Parser = Callable[[Any], Any]


@dataclass(frozen=True)
class Flag:
    """A ``corral start`` option that sets a key, spelled as PM2's CLI spells it.

    ``kind`` says how the option takes its value:

    - ``value``: one value (``--kill-timeout 5s``);
    - ``switch``: no value, sets the key to ``const`` (``--no-autorestart``);
    - ``append``: repeatable, each value may hold several separated by commas;
    - ``variadic``: several values after one option (``--stop-exit-codes 0 3``), commas too;
    - ``optional``: a value or none (``--watch`` = ``const``, ``--watch src``), repeatable.
    """

    names: tuple[str, ...]
    kind: str = "value"
    const: Any = True
    # Turns the command-line text into what the key's parser takes (PM2's own units).
    convert: Callable[[str], Any] | None = None
    # PM2's CLI has this option; False: Corral's own.
    pm2: bool = True
    # Also applied to the apps of an ecosystem file, as PM2 does.
    on_files: bool = False
    help: str = ""


@dataclass(frozen=True)
class Bounds:
    """The range a numeric key accepts, inclusive; ``unit`` is how values are shown."""

    low: float
    high: float
    unit: str = ""  # "ms", "bytes" or "" (a plain number)
    note: str = ""

    def check(self, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return  # symbolic values ("max") and "off" (None) are the parser's business
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value!r}")
        if not self.low <= value <= self.high:
            note = f" {self.note}" if self.note else ""
            raise ValueError(f"must be from {self.show(self.low)} to {self.show(self.high)}{note}, got {self.show(value)}")

    def show(self, value: float) -> str:
        return format_amount(value, self.unit)


def format_amount(value: float, unit: str) -> str:
    """A number in the unit a key is declared in: ``30d``, ``1500 ms``, ``64T``, ``1024``."""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:g}" + (f" {unit}" if unit == "ms" else "")
    n = int(value)
    if len(str(abs(n))) > 24:
        return f"a number of {len(str(abs(n)))} digits"
    if unit == "ms" and n:
        for suffix, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
            if n % size == 0:
                return f"{n // size}{suffix}"
        return f"{n} ms"
    if unit == "bytes" and n:
        for suffix, size in (("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024)):
            if n % size == 0:
                return f"{n // size}{suffix}"
        return f"{n} bytes"
    return str(n)


# Ranges shared by several keys.
MAX_INSTANCES = 1024
DURATION = Bounds(0, 30 * 86_400_000, "ms")
SIZE = Bounds(0, 64 * 1024**4, "bytes")
MAX_NUMBER_TEXT = 64  # characters: a longer string is no number a key takes


@dataclass(frozen=True)
class Key:
    name: str
    parser: Parser
    default: Any
    doc: str
    type_doc: str
    aliases: tuple[str, ...] = ()
    # "active", or a short note saying which later work makes it act.
    status: str = "active"
    # Values PM2 accepts that turn the key off (e.g. "/dev/null" for log files).
    examples: tuple[str, ...] = field(default=())
    # The ``corral start`` options that set it.
    flags: tuple[Flag, ...] = ()
    # The range of a numeric key.
    bounds: Bounds | None = None

    def parse(self, value: Any) -> Any:
        """The value normalised and checked against the key's range; ValueError says why not."""
        if self.bounds is not None and isinstance(value, str) and len(value) > MAX_NUMBER_TEXT:
            raise ValueError(f"expected {self.type_doc}, got a string of {len(value)} characters")
        try:
            out = self.parser(value)
        except OverflowError:
            raise ValueError(f"{short(value)} is out of range")
        if self.bounds is not None:
            self.bounds.check(out)
        return out


def short(value: Any, limit: int = 40) -> str:
    """``repr`` of a value, cut to ``limit`` characters for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------- parsers


def scalar_str(value: int | float | str) -> str:
    """A number as text the way JavaScript prints it: ``3000.0`` is ``"3000"``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return str(value)


def p_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        raise ValueError(f"expected a string, got {value!r}")
    if isinstance(value, int | float):
        return scalar_str(value)
    raise ValueError(f"expected a string, got {type(value).__name__} {value!r}")


def p_opt_str(value: Any) -> str | None:
    if value is None:
        return None
    return p_str(value)


def p_interpreter(value: Any) -> str | None:
    """A program, or ``none`` (any case) to run the script directly; empty means the default."""
    if value is None:
        return None
    s = p_str(value).strip()
    if not s:
        return None
    if s.lower() == "none":
        return "none"
    return s


def p_namespace(value: Any) -> str:
    s = p_str(value).strip()
    if not s:
        raise ValueError("must not be empty")
    if any(c in s for c in "\0\n"):
        raise ValueError(f"{s!r} is not a valid namespace (no newlines)")
    return s


def p_name(value: Any) -> str:
    name = p_str(value).strip()
    if not name:
        raise ValueError("must not be empty")
    if any(c in name for c in "/\\\0\n") or name in {".", ".."}:
        raise ValueError(f"{name!r} is not a valid name (no slashes or newlines)")
    if name == "all":
        raise ValueError("'all' is reserved: it means every app in commands")
    if name.isdigit():
        raise ValueError(f"{name!r} is not a valid name: a number would be read as an id")
    return name


def p_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "yes", "1", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"false", "no", "0", "off"}:
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"expected true or false, got {value!r}")


def p_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected a whole number, got {short(value)}")


def p_nonneg_int(value: Any) -> int:
    n = p_int(value)
    if n < 0:
        raise ValueError(f"must be 0 or more, got {n}")
    return n


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return value


def p_duration(value: Any) -> int:
    return parse_duration_ms(_finite(value))


def p_opt_duration(value: Any) -> int | None:
    """A duration where ``0``, ``false`` or nothing means off (``None``)."""
    if value is None or value is False:
        return None
    return parse_duration_ms(_finite(value)) or None


def p_opt_size(value: Any) -> int | None:
    """A size where ``0``, ``false`` or nothing means off (``None``)."""
    if value is None or value is False:
        return None
    return parse_size(_finite(value)) or None


def pm2_seconds(text: str) -> Any:
    """PM2's ``--watch-delay``: a bare number is seconds (``4``), or a duration (``4000ms``, ``2s``)."""
    t = text.strip()
    try:
        return float(t) * 1000 if t.replace(".", "", 1).isdigit() else t
    except ValueError:
        return t


def p_args(value: Any) -> list[str]:
    """A string (split like a shell would) or a list of scalars."""
    if value is None:
        return []
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as e:
            raise ValueError(f"cannot split {value!r} into arguments: {e}")
    if isinstance(value, list | tuple):
        out = []
        for item in value:
            if isinstance(item, bool) or item is None or isinstance(item, dict | list):
                raise ValueError(f"every argument must be a string or number, got {item!r}")
            out.append(scalar_str(item))
        return out
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [scalar_str(value)]
    raise ValueError(f"expected a string or a list of strings, got {value!r}")


def p_env(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"expected a table of NAME = value, got {type(value).__name__}")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k or "=" in k or "\0" in k:
            raise ValueError(f"{k!r} is not a valid environment variable name")
        if isinstance(v, bool):
            out[k] = "true" if v else "false"
        elif v is None:
            out[k] = ""
        elif isinstance(v, int | float | str):
            out[k] = scalar_str(v)
        else:
            raise ValueError(f"variable {k!r} must be a string, number or boolean, got {v!r}")
    return out


def p_instances(value: Any) -> int | str:
    """``4``, ``"4"``, ``"max"``, ``0`` (= max) or ``-N`` (CPUs minus N).

    Kept symbolic ("max", -N) so a saved config moves between machines; the
    number that runs is :func:`resolve_instances`.
    """
    if isinstance(value, str) and value.strip().lower() == "max":
        return "max"
    try:
        n = p_int(value)
    except ValueError:
        raise ValueError(f"expected a number, 'max' or -N (CPUs minus N), got {short(value)}")
    if n == 0:
        return "max"
    return n


def resolve_instances(value: int | str, cpu_count: int) -> int:
    if value == "max":
        return max(1, cpu_count)
    assert isinstance(value, int)
    if value < 0:
        return max(1, cpu_count + value)
    return value


def p_exec_mode(value: Any) -> str:
    s = p_str(value).strip().lower()
    if s in {"fork", "fork_mode"}:
        return "fork"
    if s in {"cluster", "cluster_mode"}:
        return "cluster"
    raise ValueError(f"expected 'fork' or 'cluster', got {value!r}")


def p_signal(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return signal.Signals(value).name
        except ValueError:
            raise ValueError(f"{value} is not a signal number")
    s = p_str(value).strip().upper()
    if not s.startswith("SIG"):
        s = "SIG" + s
    if s not in signal.Signals.__members__:
        raise ValueError(f"unknown signal {value!r} (try SIGINT, SIGTERM, SIGQUIT...)")
    return s


def p_exit_codes(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int | str) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected a list of exit codes, got {value!r}")
    out = []
    for v in value:
        n = p_int(v)
        if not 0 <= n <= 255:
            raise ValueError(f"exit codes are 0 to 255, got {n}")
        out.append(n)
    return out


def p_log_path(value: Any) -> str | None:
    """A log file path; ``/dev/null``, ``NULL`` or ``false`` switch the file off."""
    if value is None or value is False:
        return None
    if value is True:
        return "default"
    s = p_str(value)
    if s.strip().upper() in {"NULL", "/DEV/NULL", "NONE", ""}:
        return None
    return s


def p_log_type(value: Any) -> str:
    s = p_str(value).strip().lower()
    if s in {"json", "raw", "text", "plain"}:
        return "json" if s == "json" else "text"
    raise ValueError(f"expected 'json' or 'text', got {value!r}")


def p_watch(value: Any) -> bool | list[str]:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f"expected true, false or a list of paths, got {value!r}")


def p_str_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f"expected a list of strings, got {value!r}")


def p_cron(value: Any) -> str | None:
    if value is None or value is False:
        return None
    s = p_str(value).strip()
    fields = s.split()
    if len(fields) not in (5, 6):
        raise ValueError(f"expected a cron pattern of 5 or 6 fields, got {value!r}")
    allowed = set("0123456789*/,-?LW#") | set("ABCDEFGHIJKLMNOPQRSTUVWXYZ") | set(
        "abcdefghijklmnopqrstuvwxyz"
    )
    for f in fields:
        if not f or any(c not in allowed for c in f):
            raise ValueError(f"invalid cron field {f!r} in {value!r}")
    from corral.core.cron import validate_cron

    validate_cron(s)
    return s


def p_listen(value: Any) -> list[str]:
    """``HOST:PORT``, ``unix:/path``, or a bare port (``8000`` = ``0.0.0.0:8000``), or a list."""
    if value is None:
        return []
    raw = value if isinstance(value, list) else [value]
    items: list[str] = []
    for item in raw:
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str):
            raise ValueError(f"expected 'HOST:PORT', 'unix:/path' or a port, got {item!r}")
        items.append(f"0.0.0.0:{item}" if item.isdigit() else item)
    for item in items:
        if item.startswith("unix:"):
            if len(item) <= 5:
                raise ValueError(f"{item!r} needs a path after 'unix:'")
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected 'HOST:PORT' or 'unix:/path', got {item!r}")
    return items


def p_port(value: Any) -> int | None:
    if value is None:
        return None
    return p_int(value)


def p_backlog(value: Any) -> int:
    return p_int(value)


def p_health(value: Any) -> dict[str, Any] | None:
    from corral.core.healthspec import parse_health

    return parse_health(value)


def p_memory_mode(value: Any) -> str:
    s = p_str(value).strip().lower()
    if s not in ("pss", "rss"):
        raise ValueError(f"expected 'pss' or 'rss', got {value!r}")
    return s


def p_log_size(value: Any) -> int | None:
    """Like a size, but 0 is kept (it switches a daemon-wide default off)."""
    if value is None or value is False:
        return None
    if value == 0 or (isinstance(value, str) and value.strip() == "0"):
        return 0
    return parse_size(value)


def p_rotate_interval(value: Any) -> str | None:
    if value is None or value is False:
        return None
    from corral.logs.rotate import NAMED_INTERVALS

    s = p_str(value).strip()
    if s.lower() in NAMED_INTERVALS:
        return s.lower()
    return p_cron(s)


def p_opt_nonneg_int(value: Any) -> int | None:
    return None if value is None else p_nonneg_int(value)


def p_opt_bool(value: Any) -> bool | None:
    return None if value is None else p_bool(value)


def p_opt_cpus(value: Any) -> float | None:
    if value is None or value is False:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a number of CPUs such as 0.5 or 2, got {value!r}")
    try:
        n = float(value)
    except ValueError:
        raise ValueError(f"expected a number of CPUs such as 0.5 or 2, got {short(value)}")
    if n <= 0:
        raise ValueError(f"a CPU limit must be more than 0, got {value!r}")
    return n


def p_user(value: Any) -> str | int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    s = p_str(value)
    return int(s) if s.isdigit() else s


def p_any_table(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"expected a table, got {value!r}")
    return dict(value)


def p_depends_on(value: Any) -> list[dict[str, str]]:
    from corral.core.deps import parse_depends_on

    return parse_depends_on(value)


def p_hooks(value: Any) -> list[dict[str, Any]]:
    from corral.core.hooks import parse_hooks

    return parse_hooks(value)


# ---------------------------------------------------------------- the keys


KEYS: tuple[Key, ...] = (
    Key("name", p_name, None, "Name of the app; defaults to the script's file name without extension.", "string", flags=(Flag(("-n", "--name")),)),
    Key("script", p_str, None, "File to run, or a program on PATH (`uvicorn`, `gunicorn`, `npm`...). Required.", "string", ("cmd", "exec")),
    Key("args", p_args, [], "Arguments passed to the script: a string (split like a shell) or a list.", "string or list"),
    Key("interpreter", p_interpreter, None, "Program that runs the script. `none` runs it directly. Default by extension: `.py` -> the active virtualenv's python, else the one of Corral's own virtualenv, else python3; `.js` -> node; `.sh` -> bash; anything else runs directly.", "string", ("exec_interpreter",), flags=(Flag(("--interpreter",)),)),
    Key("interpreter_args", p_args, [], "Arguments for the interpreter, before the script (e.g. `-u`, `-X dev`, `-m`).", "string or list", ("node_args",), flags=(Flag(("--interpreter-args", "--node-args")),)),
    Key("cwd", p_opt_str, None, "Working directory; relative to the ecosystem file's folder. Default: that folder.", "path", flags=(Flag(("--cwd",)),)),
    Key("env", p_env, {}, "Environment variables; any scalar value becomes a string. `env_<name>` tables are merged over it with `--env <name>`.", "table"),
    Key("env_file", p_str_list, [], "Corral's own (PM2 has no such key): dotenv file(s) (`KEY=value` lines) merged below `env` and `env_<name>`; one path or a list, relative to the ecosystem file's folder, later files over earlier ones. A missing file is an error at start (a warning in `ecosystem check`/`convert`/`export`).", "path or list"),
    Key("instances", p_instances, 1, "How many instances: a number, `max` or `0` (one per CPU), `-N` (CPUs minus N).", "int or 'max'", ("instance_count",), flags=(Flag(("-i", "--instances")),), bounds=Bounds(-MAX_INSTANCES, MAX_INSTANCES, note="(0 or 'max': one per CPU; -N: CPUs minus N)")),
    Key("exec_mode", p_exec_mode, "fork", "`fork` or `cluster` (also PM2's `fork_mode`, `cluster_mode`). In cluster mode instances share the app's listening sockets.", "string", flags=(Flag(("--exec-mode",), pm2=False), Flag(("-x", "--execute-command"), "switch", "fork", help="fork mode (PM2's -x)"))),
    Key("instance_var", p_str, "NODE_APP_INSTANCE", "Environment variable holding the instance number (Corral also always sets `CORRAL_INSTANCE`).", "string", flags=(Flag(("--instance-var",), pm2=False),)),
    Key("increment_var", p_opt_str, None, "Environment variable incremented for each instance (e.g. `PORT`: 3000, 3001, ...).", "string", flags=(Flag(("--increment-var",), pm2=False),)),
    Key("namespace", p_namespace, "default", "Namespace: commands accept it in place of names.", "string", flags=(Flag(("--namespace",), on_files=True),)),
    Key("autorestart", p_bool, True, "Restart the app when it exits on its own.", "bool", ("auto_restart",), flags=(Flag(("--no-autorestart",), "switch", False),)),
    Key("autostart", p_bool, True, "Start the app when its ecosystem file is started; `false` only registers it.", "bool", flags=(Flag(("--no-autostart",), "switch", False),)),
    Key("max_restarts", p_nonneg_int, 16, "Unstable restarts in a row (each exit within `min_uptime`) before the app is marked `errored`.", "int", flags=(Flag(("--max-restarts",)),), bounds=Bounds(0, 1_000_000)),
    Key("min_uptime", p_duration, 1000, "Uptime below which an exit counts as unstable (`10s`, `2m`, or ms).", "duration", flags=(Flag(("--min-uptime",), pm2=False),), bounds=DURATION),
    Key("restart_delay", p_duration, 0, "Delay before restarting a crashed app.", "duration", flags=(Flag(("--restart-delay",)),), bounds=DURATION),
    Key("exp_backoff_restart_delay", p_opt_duration, None, "Exponential backoff: first delay; multiplied by 1.5 after each crash, capped at 15 s, reset after 30 s of healthy run.", "duration", flags=(Flag(("--exp-backoff-restart-delay",)),), bounds=DURATION),
    Key("stop_exit_codes", p_exit_codes, [], "Exit codes after which the app is not restarted.", "list of int", flags=(Flag(("--stop-exit-codes",), "variadic"),)),
    Key("kill_timeout", p_duration, 1600, "Grace period after `kill_signal` before the whole process group is killed with SIGKILL.", "duration", flags=(Flag(("-k", "--kill-timeout")),), bounds=DURATION),
    Key("kill_signal", p_signal, "SIGINT", "Signal sent to stop the app (PM2's default: SIGINT). Corral's addition to PM2's keys.", "signal", flags=(Flag(("--kill-signal",), pm2=False),)),
    Key("out_file", p_log_path, "default", "Standard output log file. `/dev/null` or `NULL` switches it off.", "path", ("output", "out_log", "out"), flags=(Flag(("-o", "--output")),)),
    Key("error_file", p_log_path, "default", "Standard error log file. `/dev/null` or `NULL` switches it off.", "path", ("error", "err_file", "err_log", "err"), flags=(Flag(("-e", "--error")),)),
    Key("log_file", p_log_path, None, "Combined log of stdout and stderr (off unless set; `true` = `<home>/logs/<name>.log`).", "path", ("log",), flags=(Flag(("-l", "--log"), "optional", True),)),
    Key("log_date_format", p_opt_str, None, "Prefix each line with its time, in PM2's moment-style tokens (`YYYY-MM-DD HH:mm:ss Z`).", "string", ("log_date",), flags=(Flag(("--log-date-format",)),)),
    Key("time", p_bool, False, "Prefix each log line with an ISO-8601 time (same as a default `log_date_format`).", "bool", flags=(Flag(("--time",), "switch", True),)),
    Key("merge_logs", p_bool, False, "All instances write the same files (no `-<instance>` suffix).", "bool", ("combine_logs",), flags=(Flag(("--merge-logs",), "switch", True),)),
    Key("log_type", p_log_type, "text", "`json` writes one JSON record per line with PM2's keys.", "string", flags=(Flag(("--log-type",)),)),
    Key("disable_logs", p_bool, False, "Switch every log file off (same as `/dev/null` for `out_file`, `error_file` and `log_file`).", "bool", flags=(Flag(("--disable-logs",), "switch", True),)),
    Key("pid_file", p_opt_str, None, "File where each instance's pid is written (`-<instance>` suffix for several).", "path", ("pid", "pid_path"), flags=(Flag(("-p", "--pid")),)),
    Key("uid", p_user, None, "Run as this user (name or number). Needs the daemon to run as root.", "user", ("user",), flags=(Flag(("--uid",), on_files=True),)),
    Key("gid", p_user, None, "Run with this group (name or number). Needs the daemon to run as root.", "group", ("group",), flags=(Flag(("--gid",), on_files=True),)),
    Key("max_memory_restart", p_opt_size, None, "Restart an instance whose process tree (the instance and its descendants) passes this memory (`1G`, `500M`, bytes); sampled every second; a cluster instance is replaced without dropping capacity.", "size", ("max_memory",), flags=(Flag(("--max-memory-restart",)),), bounds=SIZE),
    Key("cron_restart", p_cron, None, "Restart on a cron pattern: 5 fields, or 6 with seconds first as in PM2 (`*/30 * * * * *`); a rolling reload in cluster mode.", "cron", ("cron",), flags=(Flag(("-c", "--cron", "--cron-restart")),)),
    Key("watch", p_watch, False, "Restart when files change: `true` (the cwd) or a list of paths.", "bool or list", (), flags=(Flag(("--watch",), "optional", True, on_files=True),)),
    Key("ignore_watch", p_str_list, [], "Paths or globs ignored by `watch`.", "list", (), flags=(Flag(("--ignore-watch",), "append", on_files=True),)),
    Key("watch_delay", p_duration, 1000, "Debounce delay for `watch`.", "duration", (), flags=(Flag(("--watch-delay",), convert=pm2_seconds, help="a bare number is seconds, as in PM2 (4 or 4000ms)"),), bounds=DURATION),
    Key("wait_ready", p_bool, False, "An instance is `launching` until it reports ready (sd_notify READY=1).", "bool", (), flags=(Flag(("--wait-ready",), "switch", True),)),
    Key("listen_timeout", p_duration, 3000, "With `wait_ready`: time to report ready before the start counts as failed.", "duration", (), flags=(Flag(("--listen-timeout",)),), bounds=DURATION),
    Key("listen", p_listen, [], "Sockets the daemon binds and shares with every instance in cluster mode: `HOST:PORT`, `unix:/path` or a bare port (`8000` = `0.0.0.0:8000`).", "string or list", (), flags=(Flag(("--listen",), "append", pm2=False),)),
    Key("port", p_port, None, "PM2's port: sets `PORT` in the environment (unless `env` sets it); in cluster mode it also means `listen = \"0.0.0.0:<port>\"`.", "int", flags=(Flag(("--port",), pm2=False),), bounds=Bounds(0, 65535)),
    Key("health", p_health, None, "Health probe table: one of `http` (a path or URL, `{port}`), `tcp` or `exec`, with `interval`, `timeout`, `start_period`, `failure_threshold`, `success_threshold`, `expect_status`, `expect_body`, `liveness` (see docs/health.md).", "table"),
    Key("memory_limit_mode", p_memory_mode, "pss", "What `max_memory_restart` measures over the instance's process tree: `pss` (shared pages split between the processes sharing them; falls back to rss where the kernel has no smaps_rollup) or `rss`.", "string"),
    Key("listen_names", p_str_list, [], "Names of the `listen` sockets, in order (default `http`, `sock1`, ...): `LISTEN_FDNAMES`, `CORRAL_FD_<NAME>`, `{fd:NAME}`.", "list"),
    Key("reuse_port", p_bool, False, "Each instance binds its own SO_REUSEPORT socket instead of sharing the daemon's (the kernel balances; a stopping instance drops its own queue).", "bool"),
    Key("backlog", p_backlog, 2048, "Listen backlog of the shared sockets.", "int", bounds=Bounds(1, 65535)),
    Key("memory_max", p_opt_size, None, "Hard memory limit through a cgroup v2 (`memory.max`) when the machine delegates one; otherwise a notice, and only `max_memory_restart` applies.", "size", bounds=SIZE),
    Key("cpu_max", p_opt_cpus, None, "Hard CPU limit in CPUs (`0.5`, `2`) through a cgroup v2 (`cpu.max`) when available.", "float", bounds=Bounds(0.01, MAX_INSTANCES)),
    Key("log_max_size", p_log_size, None, "Rotate a log file before it passes this size (`10M`); off by default. Daemon-wide default: `[logs] max_size` in corral.toml; `0` switches that default off for one app.", "size", ("max_size",), bounds=SIZE),
    Key("log_rotate_interval", p_rotate_interval, None, "Also rotate on a schedule: a cron pattern, or `daily`, `hourly`, `weekly`, `monthly`.", "cron", ("rotateInterval",)),
    Key("log_retain", p_opt_nonneg_int, None, "Rotated files kept per log (oldest deleted first); default 30.", "int", ("retain",), bounds=Bounds(0, 100_000)),
    Key("log_compress", p_opt_bool, None, "gzip rotated files (done off the event loop); default false.", "bool", ("compress",)),
    Key("log_date_suffix", p_opt_str, None, "Date in rotated file names, in moment tokens; default `YYYY-MM-DD_HH-mm-ss` (`app-out__2026-11-28_10-30-00.log`).", "string", ("dateFormat",)),
    Key("watchdog_sec", p_opt_duration, None, "With this set, an instance that sends no sd_notify `WATCHDOG=1` within it is restarted (systemd's WatchdogSec).", "duration", bounds=DURATION),
    Key("depends_on", p_depends_on, [], "Apps this one waits for before it starts: a list of names, or a table `{name = condition}` with `started`, `ready`, `healthy`, `completed`, `completed_successfully` (see docs/dependencies.md). Corral's own key: PM2 has none.", "list or table"),
    Key("hooks", p_hooks, [], "Commands or webhooks run on this app's events, with a timeout, retries and a rate limit (see docs/events.md).", "list of tables"),
)



def camel_case(name: str) -> str:
    """PM2's automatic alias: ``max_memory_restart`` -> ``maxMemoryRestart``.

    Like PM2 (``lib/tools/Config.js``), a one-letter part keeps its case.
    """
    parts = name.split("_")
    return parts[0] + "".join(p[0].upper() + p[1:] if len(p) > 1 else p for p in parts[1:])


def all_aliases(key: Key) -> tuple[str, ...]:
    """Declared aliases, then the camelCase form of the name and of each alias (as PM2 accepts)."""
    out: list[str] = list(key.aliases)
    for n in (key.name, *key.aliases):
        camel = camel_case(n)
        if camel != n and camel not in out and camel != key.name:
            out.append(camel)
    return tuple(out)


KEY_BY_NAME: dict[str, Key] = {k.name: k for k in KEYS}
ALIASES: dict[str, str] = {}
for _k in KEYS:
    for _alias in all_aliases(_k):
        if _alias in KEY_BY_NAME or _alias in ALIASES:
            raise RuntimeError(f"alias {_alias!r} of {_k.name!r} is declared twice")
        ALIASES[_alias] = _k.name

# Keys PM2 accepts that mean nothing outside Node, accepted and ignored with a notice.
NODE_ONLY_KEYS: dict[str, str] = {
    "source_map_support": "Node source maps do not apply",
    "disable_source_map_support": "Node source maps do not apply",
    "node_version": "Corral does not switch Node versions",
    "vizion": "version metadata is not collected",
    "automation": "PM2 cloud keys do not apply",
    "pmx": "PM2 cloud keys do not apply",
    "trace": "PM2 cloud keys do not apply",
    "disable_trace": "PM2 cloud keys do not apply",
    "instance_id_env": "use instance_var",
    "treekill": "Corral always stops the whole process tree",
    "shutdown_with_message": "Node IPC messages do not apply",
    "force": "duplicate names are refused instead",
    "append_env_to_name": "names stay as written",
    "post_update": "deploy hooks are not run",
    "deep_monitoring": "PM2 cloud keys do not apply",
    "filter_env": "the environment is passed as configured",
    "min_uptime_restart": "use min_uptime",
    "monitoring": "resource monitoring is always on",
    "name_prefix": "names stay as written",
    "install_url": "PM2 modules are not installed",
    "watch_options": "chokidar options do not apply",
    "kill_retry_time": "Corral waits kill_timeout, then kills the whole process group",
    "windowsHide": "Windows only",
    "v8": "PM2 cloud keys do not apply",
    "event_loop_inspector": "PM2 cloud keys do not apply",
    "io": "PM2 cloud keys do not apply",
    "username": "set by PM2 itself; use uid to run as another user",
    "execute_command": "PM2 internal",
    "write": "PM2 internal",
}
