"""Drawing the process table and log lines for a terminal (standard library only)."""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import Any, TextIO

from corral.units import format_bytes, format_duration

STATUS_COLOURS = {
    "online": "32",
    "launching": "36",
    "stopping": "33",
    "waiting restart": "33",
    "stopped": "90",
    "errored": "31",
}
PREFIX_COLOURS = ("36", "35", "34", "33", "32", "96", "95", "94")

# (header, key, drop priority: higher is dropped first when the terminal is narrow)
COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("id", "id", 0),
    ("name", "name", 0),
    ("namespace", "namespace", 6),
    ("mode", "mode", 4),
    ("pid", "pid", 3),
    ("uptime", "uptime", 2),
    ("↺", "restarts", 1),
    ("status", "status", 0),
    ("health", "health", 3),
    ("cpu", "cpu", 3),
    ("mem", "memory", 2),
    ("user", "user", 5),
)


def use_colour(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return stream.isatty()


def _cell(key: str, p: dict[str, Any]) -> str:
    v = p.get(key)
    if key == "uptime":
        return format_duration(v) if v is not None else "0"
    if key == "cpu":
        return f"{v:.0f}%" if v is not None else "0%"
    if key == "memory":
        return format_bytes(v) if v is not None else "0b"
    if key == "pid":
        return str(v) if v else "0"
    if key == "health":
        return str(v["status"]) if isinstance(v, dict) else "-"
    if key == "mode":
        return "cluster" if v == "cluster" else "fork"
    return str(v) if v is not None else ""


def table(processes: list[dict[str, Any]], *, width: int | None = None, colour: bool = False) -> str:
    if width is None:
        width = shutil.get_terminal_size((120, 24)).columns
    if not processes:
        return "No processes. Start one with: corral start app.py (or an ecosystem file)\n"
    rows = [[_cell(key, p) for _, key, _ in COLUMNS] for p in processes]
    cols = list(range(len(COLUMNS)))
    health_col = next(i for i, col in enumerate(COLUMNS) if col[1] == "health")
    if all(r[health_col] == "-" for r in rows):
        cols.remove(health_col)  # no app has a probe: no column for it

    def total(cs: list[int]) -> int:
        widths = [max(len(COLUMNS[c][0]), *(len(r[c]) for r in rows)) for c in cs]
        return sum(widths) + 3 * len(cs) + 1

    for prio in (6, 5, 4, 3, 2, 1):
        if total(cols) <= width:
            break
        cols = [c for c in cols if COLUMNS[c][2] < prio]
    widths = {c: max(len(COLUMNS[c][0]), *(len(r[c]) for r in rows)) for c in cols}
    status_col = next(i for i, col in enumerate(COLUMNS) if col[1] == "status")

    def line(left: str, mid: str, right: str) -> str:
        return left + mid.join("─" * (widths[c] + 2) for c in cols) + right

    out = [line("┌", "┬", "┐")]
    out.append("│" + "│".join(f" {COLUMNS[c][0]:<{widths[c]}} " for c in cols) + "│")
    out.append(line("├", "┼", "┤"))
    for p, r in zip(processes, rows, strict=True):
        cells = []
        for c in cols:
            text = f"{r[c]:<{widths[c]}}"
            if colour and c == status_col:
                text = f"\x1b[{STATUS_COLOURS.get(str(p.get('status')), '0')}m{text}\x1b[0m"
            elif colour and COLUMNS[c][1] == "name":
                text = f"\x1b[1m{text}\x1b[0m"
            cells.append(f" {text} ")
        out.append("│" + "│".join(cells) + "│")
    out.append(line("└", "┴", "┘"))
    return "\n".join(out) + "\n"


# A process's own fields (not config keys), in the order describe shows them.
STATE_FIELDS = (
    "name", "id", "namespace", "status", "reason", "instance", "mode", "pid", "restarts",
    "unstable_restarts", "uptime", "cpu", "memory", "user", "exit_code", "exit_signal",
)
# Config keys shown elsewhere in describe, or already among the state fields.
_NOT_AS_KEYS = {"name", "namespace", "env", "health", "exec_mode"}


def _state_text(key: str, v: Any) -> str:
    if key == "uptime":
        return format_duration(v) if v is not None else "-"
    if key == "memory":
        return format_bytes(v) if v is not None else "-"
    if key == "cpu":
        return f"{v:.1f}%" if v is not None else "-"
    return "-" if v is None or v == "" else str(v)


def key_text(key: Any, v: Any) -> str:
    """A config value as describe shows it, formatted by the key's declared unit."""
    from corral.config.keys import format_amount

    unit = key.bounds.unit if key.bounds is not None else ""
    if v is None or v == "" or v == [] or v == {}:
        return "-"
    if unit and isinstance(v, int | float) and not isinstance(v, bool):
        return format_amount(v, unit) if v else ("0" if unit == "ms" else "-")
    if isinstance(v, list):
        return " ".join(str(x.get("address", x)) if isinstance(x, dict) else str(x) for x in v)
    return str(v)


def describe(p: dict[str, Any]) -> str:
    from corral.config.keys import KEYS

    rows: list[tuple[str, str]] = [(k, _state_text(k, p[k])) for k in STATE_FIELDS if k in p]
    rows.extend((key.name, key_text(key, p[key.name])) for key in KEYS if key.name in p and key.name not in _NOT_AS_KEYS)
    for stream, path in (p.get("logs") or {}).items():
        rows.append((stream, path or "off"))
    for err in p.get("log_errors") or []:
        rows.append(("log error", err))
    if p.get("log_lines_dropped"):
        rows.append(("log lines lost", f"{p['log_lines_dropped']} (could not be written)"))
    if p.get("log_rotations"):
        rows.append(("log rotations", str(p["log_rotations"])))
    if p.get("last_restart_reason"):
        rows.append(("last restart", str(p["last_restart_reason"])))
    health = p.get("health")
    if isinstance(health, dict):
        text = str(health.get("status"))
        if health.get("last_error"):
            text += f" ({health['last_error']})"
        rows.append(("health", text))
    if p.get("notify_status"):
        rows.append(("app status", str(p["notify_status"])))
    deps = p.get("depends_on") or []
    if deps:
        rows.append(("depends on", ", ".join(f"{d['name']} ({d['condition']})" for d in deps)))
    width = max(len(k) for k, _ in rows)
    out = [f"Describing process with id {p.get('id')} - name {p.get('name')}"]
    out.extend(f"  {k:<{width}} : {v}" for k, v in rows)
    env = p.get("env") or {}
    if env:
        note = " (values of secrets hidden; --env shows them)" if p.get("env_hidden") else ""
        out.append(f"  env{note}:")
        out.extend(f"    {k}={v}" for k, v in env.items())
    events = p.get("events") or []
    if events:
        out.append("  last events:")
        for e in events:
            stamp = time.strftime("%H:%M:%S", time.localtime(e.get("time") or 0))
            who = e["app"] if e.get("instance") is None else f"{e['app']}#{e['instance']}"
            extra = ", ".join(str(x) for x in (f"code {e['code']}" if e.get("code") is not None else "", e.get("signal") or "", e.get("reason") or "") if x)
            out.append(f"    {stamp} {who} {e['kind']}" + (f" ({extra})" if extra else ""))
    return "\n".join(out) + "\n"


def log_prefix(name: str, pid: Any, colour: bool) -> str:
    text = f"{pid}|{name}"
    if not colour:
        return f"{text} | "
    c = PREFIX_COLOURS[sum(map(ord, name)) % len(PREFIX_COLOURS)]
    return f"\x1b[{c}m{text}\x1b[0m | "


def now_str() -> str:
    return time.strftime("%H:%M:%S")


def write(text: str, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout  # looked up now: sys.stdout may have been replaced since import
    out.write(text)
    out.flush()
