"""`corral monit`: a live terminal dashboard, like `pm2 monit`.

Every instance with its status, health, CPU and memory sparklines (from the daemon's
`history`), restarts, uptime and pid; a selected row; the selected app's log tail, followed
through a `subscribe` stream; and keys to restart, reload, stop and scale the selected app.

Threads: the main thread reads keys (stdin in cbreak mode, polled with `select`) and draws
(rich `Live` on the alternate screen); a poller fetches `list` and `history` every interval;
a log reader follows the selected app's logs and reconnects when the selection changes; an
action worker sends the commands, so a slow reload never freezes the screen. They share a
`Monitor` under one lock.

rich is imported only when the dashboard runs (it is the `monitor` extra), never when the
CLI starts. Without a terminal, `run_monit` prints one snapshot and returns.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import re
import select
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corral.core import protocol
from corral.core.errors import CorralError, DaemonError
from corral.core.units import format_bytes, format_duration

SPARKS = "▁▂▃▄▅▆▇█"
LOG_TAIL = 50  # lines asked for when (re)subscribing; the pane shows what fits
LOG_KEEP = 500  # lines kept in memory for the pane
MESSAGE_SECONDS = 4.0  # how long the result of an action stays in the status line
MIN_LOG_LINES = 3
MAX_SPARK = 30
LOG_REDRAW = 0.2  # at most this often a redraw for new log lines between ticks

STATUS_STYLES = {
    "online": "green",
    "launching": "cyan",
    "stopping": "yellow",
    "waiting restart": "yellow",
    "stopped": "bright_black",
    "errored": "bold red",
    "waiting": "yellow",  # not started yet: a dependency is not met (depends_on)
    "blocked": "bold red",  # not started: a dependency failed
}
HEALTH_STYLES = {
    "healthy": "green",
    "unhealthy": "bold red",
    "starting": "yellow",
    "not ready": "yellow",
}

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class _Quit(BaseException):
    """Raised by the SIGTERM/SIGHUP handler to leave the dashboard through its finally blocks."""


# ---------------------------------------------------------------- pure helpers


def sparkline(values: list[float | None], width: int, top: float | None = None, *, relative: bool = False) -> str:
    """The last `width` values as block characters, left-padded with spaces when there are
    fewer samples than columns.

    Scaled from 0 to `top` (or the peak, when higher); with `relative`, from the lowest value
    to the peak, over a range of at least 5% of the peak (centred), so that a slow memory
    climb shows and small noise does not."""
    if width <= 0:
        return ""
    vals = values[-width:]
    known = [v for v in vals if v is not None and math.isfinite(v)]
    peak = max(known, default=0.0)
    low = 0.0
    span = max(top or 0.0, peak)
    if relative and known:
        low = min(known)
        span = max(peak - low, abs(peak) * 0.05)
        low -= (span - (peak - low)) / 2  # a narrow band sits in the middle
    out = []
    for v in vals:
        if v is None or not math.isfinite(v):
            out.append(" ")
        elif span <= 0:
            out.append(SPARKS[0])
        else:
            out.append(SPARKS[max(0, min(7, round((v - low) / span * 7)))])
    return " " * (width - len(out)) + "".join(out)


def clean_line(message: str) -> str:
    """A log line safe to draw: escape sequences and control characters removed, tabs expanded."""
    return _CONTROL.sub("", _ANSI.sub("", message)).expandtabs(4)


def parse_keys(data: bytes) -> list[str]:
    """Split what the terminal sent into key names: letters as themselves, arrows as 'up',
    'down', 'left', 'right', plus 'home', 'end', 'pgup', 'pgdn', 'esc', 'ctrl-c', 'ctrl-l'."""
    keys: list[str] = []
    text = data.decode("utf-8", "replace")
    i = 0
    finals = {"A": "up", "B": "down", "C": "right", "D": "left", "H": "home", "F": "end"}
    tildes = {"1": "home", "7": "home", "4": "end", "8": "end", "5": "pgup", "6": "pgdn"}
    while i < len(text):
        ch = text[i]
        if ch == "\x1b":
            if i + 1 < len(text) and text[i + 1] in "[O":
                j = i + 2
                while j < len(text) and not ("@" <= text[j] <= "~"):
                    j += 1
                seq = text[i + 2 : j + 1]
                i = j + 1
                if seq[-1:] in finals:
                    keys.append(finals[seq[-1]])
                elif seq.endswith("~") and seq[:-1] in tildes:
                    keys.append(tildes[seq[:-1]])
                continue
            keys.append("esc")
            i += 1
            continue
        if ch == "\x03":
            keys.append("ctrl-c")
        elif ch == "\x0c":
            keys.append("ctrl-l")
        elif ch in "\r\n":
            keys.append("enter")
        elif ch >= " ":
            keys.append(ch)
        i += 1
    return keys


HELD_BACK = ("waiting", "blocked")
MAX_HELD_REASON = 32


def _health_text(p: dict[str, Any]) -> str:
    if p.get("status") in HELD_BACK and p.get("reason"):
        # what it waits for, or what blocked it: in the health column, where a started app's readiness is
        reason = str(p["reason"])
        return reason if len(reason) <= MAX_HELD_REASON else reason[: MAX_HELD_REASON - 1] + "…"
    h = p.get("health")
    if isinstance(h, dict) and h.get("status"):
        return str(h["status"])
    if p.get("status") == "online" and p.get("ready") is False:
        return "not ready"
    return "-"


def _status_text(p: dict[str, Any]) -> str:
    s = str(p.get("status") or "?")
    return "waiting" if s == "waiting restart" else s


def _cpu_text(v: Any) -> str:
    if not isinstance(v, int | float):
        return "-"
    return f"{v:.1f}%" if v < 10 else f"{v:.0f}%"


def _mem_text(v: Any) -> str:
    return format_bytes(v) if isinstance(v, int | float) else "-"


def _row_name(p: dict[str, Any], multi: bool) -> str:
    name = str(p.get("name", "?"))
    ns = p.get("namespace")
    if ns and ns != "default":
        name = f"{ns}/{name}"
    if multi:
        name += f" #{p.get('instance', 0)}"
    return name


def _fit(text: str, width: int) -> str:
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    return text[: width - 1] + "…" if width > 1 else text[:width]


# ---------------------------------------------------------------- the shared state


@dataclass
class LogEntry:
    kind: str  # "log", "event", "notice"
    id: Any
    type: str  # "out" / "err" for logs, the event kind for events
    text: str


class Monitor:
    """What the dashboard shows, updated by the background threads."""

    def __init__(self, client: Any, interval: float) -> None:
        self.client = client
        self.interval = interval
        self.lock = threading.RLock()
        self.procs: list[dict[str, Any]] = []
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.loaded = False
        self.show_health = False  # once a health or readiness state is seen, the column stays
        self.fetch_error: str | None = None
        self.selected_id: Any = None
        self.selected_index = 0
        # logs of the selected app
        self.logs: deque[LogEntry] = deque(maxlen=LOG_KEEP)
        self.log_name: str | None = None
        self.log_gen = 0
        self.log_note: str | None = None
        self.log_sock: socket.socket | None = None
        self.log_wake = threading.Event()
        # status line
        self.message: tuple[str, str, float | None] | None = None  # (text, style, expires at)
        self.busy = 0
        # thread plumbing
        self.changed = threading.Event()
        self.poll_now = threading.Event()
        self.stopping = threading.Event()
        self.actions: queue.Queue[tuple[str, str, dict[str, Any], Callable[[Any], str]] | None] = queue.Queue()

    # ------------------------------------------------------------ fetching

    def fetch(self, *, autostart: bool = False) -> None:
        """One `list` + `history`; errors end up in the status line, never raised."""
        try:
            procs = self.client.call("list", autostart=autostart)
            if not isinstance(procs, list):
                raise DaemonError("the daemon sent a malformed process list")
            hist = self.client.call("history", {"target": ["all"]}, autostart=False) if procs else {}
            if not isinstance(hist, dict):
                hist = {}
        except (CorralError, OSError, ValueError) as e:
            with self.lock:
                self.fetch_error = str(e) or type(e).__name__
            self.changed.set()
            return
        with self.lock:
            self.procs = sorted((p for p in procs if isinstance(p, dict)), key=_sort_key)
            self.history = hist
            self.loaded = True
            self.fetch_error = None
            self._reselect()
        self.changed.set()

    def poll_loop(self) -> None:
        while not self.stopping.is_set():
            self.poll_now.wait(self.interval)
            self.poll_now.clear()
            if self.stopping.is_set():
                return
            self.fetch()

    # ------------------------------------------------------------ selection

    def _reselect(self) -> None:
        """Keep the same process selected across refreshes (by id), else the same row."""
        ids = [p.get("id") for p in self.procs]
        if self.selected_id in ids:
            self.selected_index = ids.index(self.selected_id)
        elif self.procs:
            # the selected instance went away: stay on its app if it still has instances
            name = self.log_name
            same = [i for i, p in enumerate(self.procs) if p.get("name") == name]
            if same:
                self.selected_index = min(same, key=lambda i: abs(i - self.selected_index))
            else:
                self.selected_index = max(0, min(self.selected_index, len(self.procs) - 1))
            self.selected_id = self.procs[self.selected_index].get("id")
        else:
            self.selected_index = 0
            self.selected_id = None
        self._follow(self.selected())

    def selected(self) -> dict[str, Any] | None:
        with self.lock:
            if not self.procs:
                return None
            return self.procs[max(0, min(self.selected_index, len(self.procs) - 1))]

    def move(self, delta: int | None = None, *, to: int | None = None) -> None:
        with self.lock:
            if not self.procs:
                return
            n = len(self.procs)
            index = to if to is not None else self.selected_index + (delta or 0)
            self.selected_index = max(0, min(n - 1, index))
            self.selected_id = self.procs[self.selected_index].get("id")
            self._follow(self.selected())

    def _follow(self, p: dict[str, Any] | None) -> None:
        """Point the log reader at the app of `p`; it reconnects when that changes."""
        name = str(p["name"]) if p and p.get("name") is not None else None
        with self.lock:
            if name == self.log_name:
                return
            self.log_name = name
            self.log_gen += 1
            self.logs.clear()
            self.log_note = "connecting…" if name else None
            sock = self.log_sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.log_wake.set()

    # ------------------------------------------------------------ logs

    def log_loop(self) -> None:
        while not self.stopping.is_set():
            with self.lock:
                name, gen = self.log_name, self.log_gen
            if name is None:
                self.log_wake.wait(0.5)
                self.log_wake.clear()
                continue
            failed = self._follow_once(name, gen)
            if failed and not self.stopping.is_set():
                # back off before reconnecting, unless the selection changes
                self.log_wake.wait(1.0)
                self.log_wake.clear()

    def _follow_once(self, name: str, gen: int) -> bool:
        """Follow one app's logs until the stream ends or the selection changes.

        Returns True when the stream failed or ended by itself (the caller waits a little)."""
        try:
            sock = self.client.connect(autostart=False)
        except (CorralError, OSError) as e:
            self._log_note(gen, f"cannot follow logs: {e}")
            return True
        with self.lock:
            if gen != self.log_gen or self.stopping.is_set():
                sock.close()
                return False
            self.log_sock = sock
        try:
            args = {"target": [name], "lines": LOG_TAIL, "logs": True, "events": True, "follow": True}
            sock.sendall(protocol.request("subscribe", args, 1))
            f = sock.makefile("rb")
            first = _read_message(f)
            if first is None:
                raise DaemonError("the daemon closed the log stream")
            from corral.cli.client import unwrap

            unwrap(first)
            self._log_note(gen, None)
            while True:
                msg = _read_message(f)
                if msg is None:
                    break
                if not self._log_message(gen, msg):
                    break
        except (CorralError, OSError, ValueError) as e:
            with self.lock:
                current = gen == self.log_gen
            if current and not self.stopping.is_set():
                self._log_note(gen, f"log stream: {e}")
            return current
        finally:
            with self.lock:
                if self.log_sock is sock:
                    self.log_sock = None
            sock.close()
        with self.lock:
            current = gen == self.log_gen
        if current and not self.stopping.is_set():
            self._log_note(gen, "log stream ended; reconnecting…")
        return current

    def _log_note(self, gen: int, note: str | None) -> None:
        with self.lock:
            if gen == self.log_gen:
                self.log_note = note
        self.changed.set()

    def _log_message(self, gen: int, msg: dict[str, Any]) -> bool:
        kind = msg.get("stream")
        if kind == "end":
            return False
        with self.lock:
            if gen != self.log_gen:
                return False
            if kind == "log":
                self.logs.append(LogEntry("log", msg.get("id"), str(msg.get("type", "out")), clean_line(str(msg.get("message", "")))))
            elif kind == "event":
                text = str(msg.get("message") or msg.get("status") or "")
                self.logs.append(LogEntry("event", msg.get("id"), str(msg.get("kind", "event")), clean_line(text)))
            elif kind == "notice":
                self.logs.append(LogEntry("notice", None, "notice", clean_line(str(msg.get("message", "")))))
        self.changed.set()
        return True

    # ------------------------------------------------------------ actions

    def say(self, text: str, style: str = "", seconds: float | None = MESSAGE_SECONDS) -> None:
        with self.lock:
            self.message = (text, style, time.monotonic() + seconds if seconds is not None else None)
        self.changed.set()

    def act(self, key: str) -> None:
        p = self.selected()
        if p is None:
            self.say("no process selected", "yellow")
            return
        name = str(p.get("name"))
        if key == "r":
            verb = "restarting" if p.get("status") not in ("stopped", "errored") else "starting"
            done = "restarted" if verb == "restarting" else "started"
            self._queue(f"{verb} {name}…", "restart", {"target": [name]}, lambda r: f"{done} {name}")
        elif key == "R":
            self._queue(f"reloading {name}…", "reload", {"target": [name]}, lambda r: _reload_text(name, r))
        elif key == "s":
            self._queue(f"stopping {name}…", "stop", {"target": [name]}, lambda r: f"stopped {name}")
        elif key in ("+", "-"):
            sign = "+1" if key == "+" else "-1"
            self._queue(f"scaling {name} {sign}…", "scale", {"name": name, "count": sign}, lambda r: _scale_text(name, r))

    def _queue(self, pending: str, cmd: str, args: dict[str, Any], done: Callable[[Any], str]) -> None:
        with self.lock:
            self.busy += 1
        self.say(pending, "cyan", None)
        self.actions.put((pending, cmd, args, done))

    def action_loop(self) -> None:
        while True:
            item = self.actions.get()
            if item is None:
                return
            pending, cmd, args, done = item
            try:
                result = self.client.call(cmd, args, autostart=False)
                text, style = done(result), "green"
            except (CorralError, OSError, ValueError) as e:
                what = pending.rstrip("…")
                text, style = f"{what} failed: {e}", "bold red"
            except Exception as e:  # a bug in the result text must not kill the worker
                text, style = f"{cmd}: {type(e).__name__}: {e}", "bold red"
            with self.lock:
                self.busy -= 1
            self.say(text, style)
            self.poll_now.set()

    def status_line(self) -> tuple[str, str]:
        with self.lock:
            if self.message is not None:
                text, style, expires = self.message
                if expires is None or time.monotonic() < expires:
                    return text, style
                self.message = None
            if self.fetch_error:
                return f"daemon: {self.fetch_error}", "bold red"
        return "", ""

    def stop(self) -> None:
        self.stopping.set()
        self.poll_now.set()
        self.log_wake.set()
        self.actions.put(None)
        with self.lock:
            sock = self.log_sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _sort_key(p: dict[str, Any]) -> tuple[Any, ...]:
    pid = p.get("id")
    return (0, pid, "") if isinstance(pid, int) else (1, 0, str(pid))


def _reload_text(name: str, result: Any) -> str:
    if isinstance(result, dict):
        for app in result.get("apps") or []:
            if isinstance(app, dict) and app.get("name") == name and app.get("message"):
                return f"reloaded {name}: {app['message']}"
    return f"reloaded {name}"


def _scale_text(name: str, result: Any) -> str:
    if isinstance(result, dict) and isinstance(result.get("processes"), list):
        n = len(result["processes"])
        return f"scaled {name} to {n} instance{'s' if n != 1 else ''}"
    return f"scaled {name}"


def _read_message(f: Any) -> dict[str, Any] | None:
    line = f.readline()
    if not line:
        return None
    msg = json.loads(line)
    if not isinstance(msg, dict):
        raise DaemonError("the daemon sent a malformed message")
    return msg


# ---------------------------------------------------------------- drawing

# (key, header, right-aligned, drop priority: higher goes first when narrow; 0 never)
_COLUMNS: tuple[tuple[str, str, bool, int], ...] = (
    ("id", "id", True, 0),
    ("name", "name", False, 0),
    ("status", "status", False, 0),
    ("health", "health", False, 3),
    ("pid", "pid", True, 4),
    ("uptime", "uptime", True, 2),
    ("restarts", "↺", True, 1),
    ("cpu", "cpu", True, 0),
    ("mem", "mem", True, 0),
)
_GAP = 2


def _cells(p: dict[str, Any], multi: bool) -> dict[str, str]:
    return {
        "id": str(p.get("id", "")),
        "name": _row_name(p, multi),
        "status": _status_text(p),
        "health": _health_text(p),
        "pid": str(p["pid"]) if p.get("pid") else "-",
        "uptime": format_duration(p.get("uptime")) if p.get("status") == "online" else "-",
        "restarts": str(p.get("restarts", 0)),
        "cpu": _cpu_text(p.get("cpu")),
        "mem": _mem_text(p.get("memory")),
    }


def _layout(rows: list[dict[str, str]], width: int, show_health: bool) -> tuple[list[str], dict[str, int], int]:
    """Which columns fit in `width`, their widths, and the width of each sparkline."""
    cols = [c[0] for c in _COLUMNS if c[0] != "health" or show_health]
    prio = {c[0]: c[3] for c in _COLUMNS}
    head = {c[0]: c[1] for c in _COLUMNS}

    def natural(key: str) -> int:
        return max(len(head[key]), *(len(r[key]) for r in rows)) if rows else len(head[key])

    widths = {k: natural(k) for k in cols}
    widths["name"] = min(max(widths["name"], 4), 24)

    def used(cs: list[str]) -> int:
        # marker column, then the cells, then a gap before each sparkline
        return 2 + sum(widths[c] for c in cs) + _GAP * (len(cs) - 1)

    # drop pid, then health, while the sparklines would be narrower than 6; then the
    # sparklines; then shorten long names; then drop uptime and restarts
    spark = 0
    for level in (99, 4, 3):
        cs = [c for c in cols if prio[c] < level]
        room = width - used(cs) - 2  # a space before each sparkline
        if room >= 2 * 6:
            cols, spark = cs, min(MAX_SPARK, room // 2)
            break
    else:
        cols = [c for c in cols if prio[c] < 3]
        over = used(cols) - width
        if over > 0:  # shorten long names before dropping more
            widths["name"] = max(min(widths["name"], 10), widths["name"] - over)
        for level in (3, 2, 1):
            cs = [c for c in cols if prio[c] < level]
            if used(cs) <= width or level == 1:
                cols = cs
                break
        over = used(cols) - width
        if over > 0:  # still too wide: shorten the names
            widths["name"] = max(4, widths["name"] - over)
    return cols, widths, spark


def render(mon: Monitor, width: int, height: int, *, live: bool = True) -> Any:
    """The whole screen as a rich renderable (every line a single, cropped Text)."""
    from rich.console import Group
    from rich.text import Text

    with mon.lock:
        procs = list(mon.procs)
        history = dict(mon.history)
        sel_index = mon.selected_index
        logs = list(mon.logs)
        log_name = mon.log_name
        log_note = mon.log_note
        loaded = mon.loaded
        fetch_error = mon.fetch_error
    width = max(20, width)
    lines: list[Text] = []

    # header
    online = sum(1 for p in procs if p.get("status") == "online")
    apps = len({p.get("name") for p in procs})
    cpu = sum(p.get("cpu") or 0 for p in procs if isinstance(p.get("cpu"), int | float))
    mem = sum(p.get("memory") or 0 for p in procs if isinstance(p.get("memory"), int | float))
    head = Text("corral monit", style="bold")
    summary = f"  {apps} app{'s' if apps != 1 else ''} · {online}/{len(procs)} online · cpu {_cpu_text(cpu)} · mem {format_bytes(mem)}"
    if fetch_error and loaded:
        summary += " · stale"
    head.append(summary, style="dim" if not fetch_error else "yellow")
    clock = time.strftime("%H:%M:%S")
    if head.cell_len + len(clock) + 1 <= width:
        head.append(" " * (width - head.cell_len - len(clock)) + clock, style="dim")
    lines.append(_crop(head, width))

    # process table
    multi = {n for n in {p.get("name") for p in procs} if sum(1 for q in procs if q.get("name") == n) > 1}
    rows = [_cells(p, p.get("name") in multi) for p in procs]
    if any(r["health"] != "-" for r in rows):
        with mon.lock:
            mon.show_health = True
    show_health = mon.show_health
    cols, widths, spark = _layout(rows, width, show_health)
    right = {c[0]: c[2] for c in _COLUMNS}
    headers = {c[0]: c[1] for c in _COLUMNS}

    def cell(key: str, text: str) -> str:
        w = widths[key]
        text = _fit(text, w)
        return text.rjust(w) if right[key] else text.ljust(w)

    def spark_header(key: str) -> str:
        return cell(key, headers[key]) + (" " + "history".ljust(spark) if spark and key == "cpu" else " " * (spark + 1) if spark else "")

    hdr = Text("  ", style="bold")
    for i, key in enumerate(cols):
        if i:
            hdr.append(" " * _GAP)
        hdr.append(spark_header(key) if key in ("cpu", "mem") else cell(key, headers[key]), style="bold")

    fixed = 1 + 1 + 1 + 1  # header, table header, status line, footer
    avail = max(0, height - fixed - (1 if live else 0))  # minus the log title line
    if not procs:
        table_rows = 1
    elif not live:
        table_rows = len(procs)
    else:
        table_rows = min(len(procs), max(1, avail - MIN_LOG_LINES))
    log_lines = max(0, avail - table_rows)
    sel = max(0, min(sel_index, len(procs) - 1))
    first = max(0, min(sel - table_rows // 2, len(procs) - table_rows))
    if procs and table_rows < len(procs):
        where = f"{first + 1}-{first + table_rows}/{len(procs)}"
        hdr.rstrip()
        if hdr.cell_len + len(where) + 1 <= width:
            hdr.append(" " * (width - hdr.cell_len - len(where)) + where, style="dim")
    lines.append(_crop(hdr, width))

    if not procs:
        if not loaded and fetch_error:
            lines.append(Text(f"  cannot reach the daemon: {fetch_error}", style="red"))
        elif not loaded:
            lines.append(Text("  loading…", style="dim"))
        else:
            lines.append(Text("  no processes: start one with `corral start app.py` (or an ecosystem file)", style="dim"))
    else:
        for index in range(first, first + table_rows):
            p, r = procs[index], rows[index]
            selected = live and index == sel
            line = Text("▶ " if selected else "  ", style="bold cyan")
            for i, key in enumerate(cols):
                if i:
                    line.append(" " * _GAP)
                style = ""
                if key == "status":
                    style = STATUS_STYLES.get(str(p.get("status")), "")
                elif key == "health":
                    style = HEALTH_STYLES.get(r["health"], "dim" if r["health"] == "-" else "")
                    if p.get("status") in HELD_BACK:
                        style = STATUS_STYLES[str(p["status"])]
                elif key == "name":
                    style = "bold"
                elif key == "restarts" and (p.get("restarts") or 0) > 0:
                    style = "yellow"
                line.append(cell(key, r[key]), style=style)
                if key in ("cpu", "mem") and spark:
                    samples = history.get(str(p.get("id"))) or []
                    field = "cpu" if key == "cpu" else "memory"
                    values = [s.get(field) if isinstance(s, dict) else None for s in samples]
                    line.append(" ")
                    graph = sparkline(values, spark, 5.0) if key == "cpu" else sparkline(values, spark, relative=True)
                    line.append(graph, style="cyan" if key == "cpu" else "magenta")
            if selected:
                line.stylize("on grey23")
            lines.append(_crop(line, width))
    if live:
        # log pane
        title = f" logs: {log_name} " if log_name else " logs "
        rule = Text("─" + title, style="bold")
        if log_note:
            rule.append(f"({log_note}) ", style="yellow")
        rule.append("─" * max(0, width - rule.cell_len), style="dim")
        lines.append(_crop(rule, width))
        shown = logs[-log_lines:] if log_lines else []
        ids = {e.id for e in logs if e.kind == "log"}
        for e in shown:
            t = Text()
            if e.kind == "log":
                if len(ids) > 1:
                    t.append(f"{e.id}│ ", style="dim")
                t.append(e.text, style="red" if e.type == "err" else "")
            elif e.kind == "event":
                t.append(f"◆ {e.type}" + (f" ({e.id})" if e.id is not None else "") + (f": {e.text}" if e.text else ""), style="yellow")
            else:
                t.append(f"! {e.text}", style="yellow")
            lines.append(_crop(t, width))
        for _ in range(log_lines - len(shown)):
            lines.append(Text(""))

        # status line and footer
        text, style = mon.status_line()
        lines.append(_crop(Text(text, style=style), width))
        lines.append(_crop(_footer(width), width))
    return Group(*lines)


def _footer(width: int) -> Any:
    from rich.text import Text

    long = (("↑↓/jk", "select"), ("r", "restart"), ("R", "reload"), ("s", "stop"), ("+/-", "scale"), ("q", "quit"))
    short = (("jk", "move"), ("r", "restart"), ("R", "reload"), ("s", "stop"), ("+-", "scale"), ("q", "quit"))
    for keys, sep in ((long, "  "), (short, " ")):
        t = Text()
        for i, (k, what) in enumerate(keys):
            if i:
                t.append(sep)
            t.append(k, style="bold reverse")
            t.append(" " + what, style="dim")
        if t.cell_len <= width:
            return t
    return t


def _crop(t: Any, width: int) -> Any:
    t.no_wrap = True
    t.overflow = "ellipsis"
    t.truncate(width, overflow="ellipsis")
    return t


# ---------------------------------------------------------------- running


def _snapshot(mon: Monitor) -> int:
    from rich.console import Console

    mon.fetch(autostart=True)
    if mon.fetch_error and not mon.loaded:
        raise DaemonError(mon.fetch_error)
    console = Console(highlight=False, soft_wrap=False)
    console.print(render(mon, console.width, 0, live=False))
    return 0


class _Session:
    """The terminal while the dashboard runs: cbreak mode (keys unbuffered, no echo) and the
    signals. Leaving it, however that happens, puts the old terminal modes and handlers back.

    SIGTERM and SIGHUP raise `_Quit` (once) to leave through the finally blocks; SIGWINCH asks
    for a redraw; SIGTSTP (Ctrl-Z) suspends cleanly: normal screen and modes while stopped,
    the dashboard back on `fg`.
    """

    def __init__(self, fd: int) -> None:
        import termios

        self.fd = fd
        self.saved = termios.tcgetattr(fd)
        self.redraw = threading.Event()
        self.suspend = threading.Event()
        self.quitting = False
        self.handlers: dict[int, Any] = {}

    def _quit(self, signum: int, frame: Any) -> None:
        if not self.quitting:
            self.quitting = True
            raise _Quit(signum)

    def _resize(self, signum: int, frame: Any) -> None:
        self.redraw.set()

    def _stop(self, signum: int, frame: Any) -> None:
        self.suspend.set()

    def cbreak(self) -> None:
        import termios
        import tty

        tty.setcbreak(self.fd, termios.TCSANOW)

    def restore(self) -> None:
        import termios

        termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def __enter__(self) -> _Session:
        wanted = {signal.SIGTERM: self._quit, signal.SIGHUP: self._quit, signal.SIGWINCH: self._resize, signal.SIGTSTP: self._stop}
        try:
            for sig, handler in wanted.items():
                self.handlers[sig] = signal.signal(sig, handler)
            self.cbreak()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.quitting = True  # a late SIGTERM must not cut this short
        try:
            self.restore()
        finally:
            for sig, handler in self.handlers.items():
                signal.signal(sig, handler)

    def suspend_now(self, console: Any) -> None:
        """Ctrl-Z: give the shell a normal terminal, stop, and take the screen back on SIGCONT."""
        self.suspend.clear()
        console.set_alt_screen(False)
        console.show_cursor(True)
        self.restore()
        handler = signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        try:
            os.kill(os.getpid(), signal.SIGTSTP)  # stops here until `fg`
        finally:
            signal.signal(signal.SIGTSTP, handler)
        self.cbreak()
        console.set_alt_screen(True)
        console.show_cursor(False)


def run_monit(client: Any, interval: float = 1.0) -> int:
    try:
        import rich  # noqa: F401
    except ImportError:
        raise CorralError("corral monit needs the 'rich' package: pip install 'corral[monitor]' (or pip install rich)")
    if not isinstance(interval, int | float) or not math.isfinite(interval) or interval <= 0:
        interval = 1.0
    interval = max(0.1, float(interval))
    mon = Monitor(client, interval)

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return _snapshot(mon)

    # The first call may start the daemon, as every command does; a failure here is an error
    # for the CLI to print. Later failures (the daemon killed meanwhile) go to the status line.
    mon.fetch(autostart=True)
    if mon.fetch_error and not mon.loaded:
        raise DaemonError(mon.fetch_error)

    from rich.console import Console
    from rich.live import Live

    fd = sys.stdin.fileno()
    console = Console(highlight=False)
    threads = [
        threading.Thread(target=mon.poll_loop, name="monit-poll", daemon=True),
        threading.Thread(target=mon.log_loop, name="monit-logs", daemon=True),
        threading.Thread(target=mon.action_loop, name="monit-actions", daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        with _Session(fd) as session, Live(console=console, screen=True, auto_refresh=False, transient=True) as live:
            _loop(mon, live, console, session)
    except (KeyboardInterrupt, _Quit):
        pass
    finally:
        mon.stop()
        for t in threads:
            t.join(timeout=0.5)
    return 0


def _loop(mon: Monitor, live: Any, console: Any, session: _Session) -> None:
    fd = session.fd
    redraw = session.redraw
    last = -math.inf
    force = True
    while True:
        if session.suspend.is_set():
            session.suspend_now(console)
            force = True
        now = time.monotonic()
        due = now - last >= mon.interval
        fresh = mon.changed.is_set() and now - last >= LOG_REDRAW
        if force or due or fresh or redraw.is_set():
            mon.changed.clear()
            redraw.clear()
            size = console.size
            live.update(render(mon, size.width, size.height), refresh=True)
            last = now
            force = False
        wait = max(0.0, min(0.05 if mon.changed.is_set() else 0.1, last + mon.interval - time.monotonic()))
        try:
            ready, _, _ = select.select([fd], [], [], wait)
        except InterruptedError:
            continue
        if not ready:
            continue
        try:
            data = os.read(fd, 1024)
        except BlockingIOError:
            continue
        if not data:
            return  # the terminal went away
        for key in parse_keys(data):
            if _handle_key(mon, key, console):
                return
        force = True


def _handle_key(mon: Monitor, key: str, console: Any) -> bool:
    """React to one key; True to quit."""
    if key in ("q", "Q", "ctrl-c"):
        return True
    if key in ("down", "j"):
        mon.move(1)
    elif key in ("up", "k"):
        mon.move(-1)
    elif key in ("home", "g"):
        mon.move(to=0)
    elif key in ("end", "G"):
        mon.move(to=len(mon.procs) - 1)
    elif key == "pgdn":
        mon.move(max(1, console.size.height // 3))
    elif key == "pgup":
        mon.move(-max(1, console.size.height // 3))
    elif key in ("r", "R", "s", "+", "-"):
        mon.act(key)
    elif key == "=":  # + without shift
        mon.act("+")
    elif key == "_":
        mon.act("-")
    elif key == "ctrl-l":
        console.clear()
    return False
