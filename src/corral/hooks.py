"""Hooks: tell someone when something happens to an app.

A hook is a table (in an app's ``hooks`` list, or ``[[hooks]]`` in ``corral.toml``)::

    [[hooks]]
    events = ["errored", "unhealthy", "restarting"]   # default: errored, unhealthy, blocked
    apps = ["web"]                # default: every app
    url = "https://hooks.slack.com/services/T000/B000/XXXX"   # POST JSON
    format = "slack"              # or "json" (default; "slack" for hooks.slack.com URLs)
    # command = "./page-me.sh"    # or run a command: the event as JSON on stdin and in CORRAL_EVENT_*
    timeout = "5s"                # per attempt
    retries = 3                   # after the first attempt
    backoff = "1s"                # before the first retry, doubled each time, capped at 60 s
    rate_limit = 10               # deliveries ...
    rate_period = "1m"            # ... per period; the rest are counted and reported with the next one

The decisions (does this event match, is it within the rate limit, retry or give
up, how long to wait) are the pure :func:`hook_step`, tested on a fake clock; the
:class:`HookRunner` performs its effects with asyncio tasks that supervision never
waits for, so a hook that fails or hangs never delays a restart. A URL is shown
only masked (:func:`mask_url`): webhook URLs carry their secret in the path.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from corral.events import KINDS, ProcessEvent
from corral.units import parse_duration_ms

DEFAULT_EVENTS: tuple[str, ...] = ("errored", "unhealthy", "blocked")
FORMATS = ("json", "slack")
BACKOFF_CAP = 60.0
MAX_INFLIGHT = 16  # deliveries of one hook being attempted or waiting to retry; more are dropped
MAX_HOOKS = 64

HOOK_FIELDS = {
    "name": "A name for messages (default: hook-N).",
    "events": f"Event kinds that fire it (default: {', '.join(DEFAULT_EVENTS)}; `all` for every kind).",
    "apps": "Only events of these apps (default: every app the hook applies to).",
    "url": "POST the event as JSON to this http(s) URL (2xx = delivered).",
    "command": "Run this command (a string runs with /bin/sh -c; a list directly): the event as JSON on stdin and in CORRAL_EVENT_* variables; exit 0 = delivered.",
    "format": "`json` (generic) or `slack` (`{\"text\": ...}`); default slack for hooks.slack.com URLs, else json.",
    "timeout": "Time an attempt may take (default 5s); a hanging command is killed.",
    "retries": "Attempts after a failed one (default 3).",
    "backoff": "Wait before the first retry (default 1s), doubled each retry, capped at 60 s.",
    "rate_limit": "At most this many deliveries per `rate_period` (default 10); the others are counted and reported with the next delivery.",
    "rate_period": "The rate limit's window (default 1m).",
}


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class HookSpec:
    name: str
    events: frozenset[str] = frozenset(DEFAULT_EVENTS)
    apps: frozenset[str] = frozenset()  # empty: every app
    url: str | None = None
    command: tuple[str, ...] = ()
    shell: bool = False
    format: str = "json"
    timeout: float = 5.0
    retries: int = 3
    backoff: float = 1.0
    rate_limit: int = 10
    rate_period: float = 60.0

    def matches(self, event: ProcessEvent) -> bool:
        return event.kind in self.events and (not self.apps or event.app in self.apps)

    @property
    def target(self) -> str:
        """What it delivers to, safe to print."""
        return mask_url(self.url) if self.url else ("sh -c " + shlex.quote(self.command[0]) if self.shell else shlex.join(self.command))


def _ms(value: Any, what: str) -> int:
    try:
        ms = parse_duration_ms(value)
    except ValueError as e:
        raise ValueError(f"'{what}': {e}")
    if ms <= 0:
        raise ValueError(f"'{what}' must be more than 0")
    return ms


def _count(value: Any, where: str, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{where}: '{what}' must be a whole number of {minimum} or more, got {value!r}")
    return value


def parse_hook(table: Any, index: int = 0) -> dict[str, Any]:
    """Validate one hook table; returns it normalised (JSON-friendly). ValueError names the field."""
    if not isinstance(table, dict):
        raise ValueError(f"hook #{index + 1}: expected a table with 'url' or 'command', got {table!r}")
    where = f"hook #{index + 1}"
    unknown = sorted(set(table) - set(HOOK_FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown field '{unknown[0]}' (fields: {', '.join(HOOK_FIELDS)})")
    url, command = table.get("url"), table.get("command")
    if (url is None) == (command is None):
        raise ValueError(f"{where}: give exactly one of 'url' or 'command' (two hooks for both)")
    out: dict[str, Any] = {"name": str(table.get("name") or f"hook-{index + 1}")}
    if url is not None:
        if not isinstance(url, str):
            raise ValueError(f"{where}: 'url' must be a string")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{where}: 'url' must be an http:// or https:// URL, got {mask_url(url)}")
        out["url"] = url
    else:
        if isinstance(command, str) and command.strip():
            out["command"] = command  # runs with /bin/sh -c
        elif isinstance(command, list) and command and all(isinstance(c, str) for c in command):
            out["command"] = list(command)
        else:
            raise ValueError(f"{where}: 'command' must be a string or a list of strings")
    events = table.get("events", list(DEFAULT_EVENTS))
    if events == "all" or events == ["all"]:
        events = list(KINDS)
    if isinstance(events, str):
        events = [events]
    if not isinstance(events, list) or not events:
        raise ValueError(f"{where}: 'events' must be a list of event kinds")
    for e in events:
        if e not in KINDS:
            raise ValueError(f"{where}: unknown event {e!r} in 'events' (kinds: {', '.join(KINDS)}, or all)")
    out["events"] = sorted(set(events))
    apps = table.get("apps", [])
    if isinstance(apps, str):
        apps = [apps]
    if not isinstance(apps, list) or not all(isinstance(a, str) for a in apps):
        raise ValueError(f"{where}: 'apps' must be a list of app names")
    out["apps"] = list(apps)
    fmt = table.get("format")
    if fmt is None:
        fmt = "slack" if url and (urlsplit(url).hostname or "").endswith("hooks.slack.com") else "json"
    if fmt not in FORMATS:
        raise ValueError(f"{where}: 'format' is json or slack, got {fmt!r}")
    out["format"] = fmt
    try:  # durations in ms, like every other duration in a normalised app
        out["timeout"] = _ms(table.get("timeout", "5s"), "timeout")
        out["backoff"] = _ms(table.get("backoff", "1s"), "backoff")
        out["rate_period"] = _ms(table.get("rate_period", "1m"), "rate_period")
    except ValueError as e:
        raise ValueError(f"{where}: {e}")
    out["retries"] = _count(table.get("retries", 3), where, "retries", 0)
    out["rate_limit"] = _count(table.get("rate_limit", 10), where, "rate_limit", 1)
    return out


def parse_hooks(value: Any) -> list[dict[str, Any]]:
    """The ``hooks`` key's parser: one table or a list of them."""
    if value is None or value is False:
        return []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"expected a list of hook tables, got {value!r}")
    if len(value) > MAX_HOOKS:
        raise ValueError(f"at most {MAX_HOOKS} hooks")
    return [parse_hook(t, i) for i, t in enumerate(value)]


def spec_of(hook: Mapping[str, Any], *, app: str | None = None) -> HookSpec:
    """A normalised hook as a spec; an app's own hooks only fire for that app."""
    apps = frozenset(hook.get("apps") or ([app] if app else []))
    command = hook.get("command")
    shell = isinstance(command, str)
    return HookSpec(
        name=hook["name"],
        events=frozenset(hook["events"]),
        apps=apps,
        url=hook.get("url"),
        command=(command,) if isinstance(command, str) else tuple(command or ()),
        shell=shell,
        format=hook["format"],
        timeout=hook["timeout"] / 1000,
        retries=hook["retries"],
        backoff=hook["backoff"] / 1000,
        rate_limit=hook["rate_limit"],
        rate_period=hook["rate_period"] / 1000,
    )


# ---------------------------------------------------------------- masking and payloads


def mask_url(url: str) -> str:
    """``https://hooks.slack.com/services/T0/B0/XYZ`` -> ``https://hooks.slack.com/***``:
    the scheme, host and port stay; user info, path, query and fragment do not."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "***"
    if not parts.scheme or not host:
        return "***"
    if ":" in host:
        host = f"[{host}]"
    user = "***@" if parts.username or parts.password else ""
    rest = parts.path.strip("/") or parts.query or parts.fragment
    return f"{parts.scheme}://{user}{host}{port}/" + ("***" if rest else "")


def mask_urls_in(text: str, urls: Iterable[str]) -> str:
    """Replace every URL of ``urls`` in ``text`` (an error message, a log line) by its masked form."""
    for u in sorted({u for u in urls if u}, key=len, reverse=True):
        text = text.replace(u, mask_url(u))
    return re.sub(r"(https?://)[^/\s:@]+:[^/\s@]+@", r"\1***@", text)


def payload(spec: HookSpec, event: ProcessEvent, suppressed: int, host: str) -> dict[str, Any]:
    more = f" ({suppressed} earlier event(s) not sent: rate limit)" if suppressed else ""
    if spec.format == "slack":
        return {"text": f"[corral@{host}] {event.summary()}{more}"}
    return {"source": "corral", "host": host, "hook": spec.name, "event": event.to_dict(), "text": event.summary() + more, "suppressed": suppressed}


# ---------------------------------------------------------------- the pure core


@dataclass(frozen=True)
class Delivery:
    id: int
    event: ProcessEvent
    attempt: int = 1
    suppressed: int = 0  # events dropped by the rate limit before this one


@dataclass(frozen=True)
class HookState:
    sent: tuple[float, ...] = ()  # times of admitted deliveries within the rate period
    suppressed: int = 0
    inflight: Mapping[int, Delivery] = field(default_factory=dict)
    next_id: int = 1
    delivered: int = 0
    failed: int = 0
    dropped: int = 0


@dataclass(frozen=True)
class Emit:
    event: ProcessEvent


@dataclass(frozen=True)
class AttemptDone:
    id: int
    ok: bool
    error: str = ""


@dataclass(frozen=True)
class RetryDue:
    id: int


HookEvent = Emit | AttemptDone | RetryDue


@dataclass(frozen=True)
class Send:
    delivery: Delivery


@dataclass(frozen=True)
class ArmRetry:
    id: int
    delay: float


@dataclass(frozen=True)
class Log:
    message: str


HookEffect = Send | ArmRetry | Log
HookResult = tuple[HookState, list[HookEffect]]


def retry_delay(spec: HookSpec, failed_attempt: int) -> float:
    """Wait after the ``failed_attempt``-th attempt failed: backoff, doubled each time, capped."""
    return float(min(spec.backoff * 2 ** (failed_attempt - 1), BACKOFF_CAP))


def hook_step(spec: HookSpec, state: HookState, event: HookEvent, now: float) -> HookResult:
    """Decide what to do for one hook; return its new state and the effects."""
    if isinstance(event, Emit):
        if not spec.matches(event.event):
            return state, []
        recent = tuple(t for t in state.sent if now - t < spec.rate_period)
        if len(recent) >= spec.rate_limit:
            new = replace(state, sent=recent, suppressed=state.suppressed + 1)
            if state.suppressed == 0:
                return new, [Log(f"hook {spec.name}: rate limit of {spec.rate_limit} per {spec.rate_period:g}s reached; counting the rest")]
            return new, []
        if len(state.inflight) >= MAX_INFLIGHT:
            new = replace(state, sent=recent, suppressed=state.suppressed + 1, dropped=state.dropped + 1)
            return new, [Log(f"hook {spec.name}: {MAX_INFLIGHT} deliveries still pending; {event.event.kind} of {event.event.app} not sent")]
        d = Delivery(state.next_id, event.event, 1, state.suppressed)
        new = replace(state, sent=(*recent, now), suppressed=0, inflight={**state.inflight, d.id: d}, next_id=d.id + 1)
        return new, [Send(d)]
    if isinstance(event, AttemptDone):
        done = state.inflight.get(event.id)
        if done is None:
            return state, []
        d = done
        rest = {k: v for k, v in state.inflight.items() if k != d.id}
        if event.ok:
            return replace(state, inflight=rest, delivered=state.delivered + 1), []
        if d.attempt > spec.retries:
            new = replace(state, inflight=rest, failed=state.failed + 1)
            return new, [Log(f"hook {spec.name} ({spec.target}): {d.event.kind} of {d.event.app} not delivered after {d.attempt} attempt(s): {event.error}")]
        delay = retry_delay(spec, d.attempt)
        nxt = replace(d, attempt=d.attempt + 1)
        return replace(state, inflight={**rest, d.id: nxt}), [ArmRetry(d.id, delay)]
    if isinstance(event, RetryDue):
        due = state.inflight.get(event.id)
        return (state, [Send(due)]) if due is not None else (state, [])
    raise TypeError(f"unknown event {event!r}")


# ---------------------------------------------------------------- delivery (I/O)


async def post_json(url: str, body: bytes, timeout: float) -> tuple[bool, str]:
    """POST ``body`` to ``url`` within ``timeout`` seconds; (2xx?, what happened)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    ssl_ctx: Any = None
    if tls:
        import ssl

        ssl_ctx = ssl.create_default_context()

    async def go() -> tuple[bool, str]:
        reader, writer = await asyncio.open_connection(host, port, ssl=ssl_ctx, server_hostname=host if tls else None)
        try:
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {parts.netloc.rpartition('@')[2]}\r\nUser-Agent: corral-hook\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + body)
            await writer.drain()
            line = await reader.readline()
            fields = line.decode("latin-1", "replace").split()
            if len(fields) < 2 or not fields[1].isdigit():
                return False, "no HTTP answer"
            status = int(fields[1])
            return 200 <= status < 300, f"HTTP {status}"
        finally:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (TimeoutError, OSError):
                pass

    try:
        return await asyncio.wait_for(go(), timeout)
    except TimeoutError:
        return False, f"no answer within {timeout:g}s"
    except (OSError, ValueError) as e:
        return False, mask_urls_in(str(e) or type(e).__name__, [url])


async def run_command(argv: Sequence[str], shell: bool, event: ProcessEvent, body: bytes, timeout: float) -> tuple[bool, str]:
    """Run a command hook: JSON on stdin, CORRAL_EVENT_* in the environment; killed (its
    whole process group) after ``timeout``."""
    env = {**os.environ, **event.env()}
    try:
        if shell:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", argv[0], stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True,
            )
        else:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True,
            )
    except OSError as e:
        return False, f"cannot run it: {e}"
    try:
        _, err = await asyncio.wait_for(proc.communicate(body), timeout)
    except TimeoutError:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await proc.wait()
        return False, f"killed after {timeout:g}s"
    if proc.returncode == 0:
        return True, "exit 0"
    tail = (err or b"").decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
    return False, f"exit {proc.returncode}" + (f": {tail[0][:200]}" if tail[0] else "")


class HookRunner:
    """Performs :func:`hook_step`'s effects for a set of hooks on the running loop.

    :meth:`emit` never blocks and never raises: every delivery is its own task.
    ``log`` receives one line per notable outcome (rate limit reached, given up),
    with URLs masked.
    """

    def __init__(self, specs: Sequence[HookSpec], *, log: Callable[[str], None] = lambda m: None,
                 clock: Callable[[], float] = time.monotonic, host: str | None = None) -> None:
        self.specs = list(specs)
        self.states: list[HookState] = [HookState() for _ in self.specs]
        self.log = log
        self.clock = clock
        self.host = host or socket.gethostname()
        self.tasks: set[asyncio.Task[None]] = set()
        self.timers: set[asyncio.TimerHandle] = set()
        self.closed = False

    def emit(self, event: ProcessEvent) -> None:
        for i in range(len(self.specs)):
            self._feed(i, Emit(event))

    def _feed(self, i: int, event: HookEvent) -> None:
        if self.closed:
            return
        spec = self.specs[i]
        self.states[i], effects = hook_step(spec, self.states[i], event, self.clock())
        for e in effects:
            if isinstance(e, Send):
                task = asyncio.get_running_loop().create_task(self._attempt(i, e.delivery))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            elif isinstance(e, ArmRetry):
                self._arm(i, e)
            else:
                self.log(mask_urls_in(e.message, [s.url for s in self.specs if s.url]))

    def _arm(self, i: int, e: ArmRetry) -> None:
        holder: list[asyncio.TimerHandle] = []

        def due() -> None:
            self.timers.difference_update(holder)
            self._feed(i, RetryDue(e.id))

        holder.append(asyncio.get_running_loop().call_later(e.delay, due))
        self.timers.update(holder)

    async def _attempt(self, i: int, d: Delivery) -> None:
        spec = self.specs[i]
        body = json.dumps(payload(spec, d.event, d.suppressed, self.host)).encode()
        try:
            if spec.url:
                ok, why = await post_json(spec.url, body, spec.timeout)
            else:
                ok, why = await run_command(spec.command, spec.shell, d.event, body, spec.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a hook must never take the daemon down
            ok, why = False, f"{type(e).__name__}: {e}"
        self._feed(i, AttemptDone(d.id, ok, why))

    def stats(self) -> list[dict[str, Any]]:
        return [
            {"name": s.name, "target": s.target, "delivered": st.delivered, "failed": st.failed, "pending": len(st.inflight), "suppressed": st.suppressed}
            for s, st in zip(self.specs, self.states, strict=True)
        ]

    async def close(self) -> None:
        self.closed = True
        for h in self.timers:
            h.cancel()
        for t in list(self.tasks):
            t.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
