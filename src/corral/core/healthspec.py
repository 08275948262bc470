"""Health probe configuration and the pure health state machine.

A probe is declared per app as a ``health`` table::

    [apps.health]
    http = "/api/health"          # a path (on the app's socket or PORT), or a URL with {port}
    # tcp = "127.0.0.1:{port}"    # or a TCP connect
    # exec = "./check.sh"         # or a command: exit 0 = healthy
    interval = "10s"
    timeout = "3s"
    start_period = "0s"
    failure_threshold = 3
    success_threshold = 1
    expect_status = "200-399"
    expect_body = "ok"
    liveness = false              # restart after failure_threshold (off by default)

Defaults follow Kubernetes probes (10 s period, 3 failures, 1 success) with
Docker's ``start_period``.  ``health_step`` is pure: tested with a fake clock.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from typing import Any

from corral.core.units import parse_duration_ms

HEALTH_KEYS = {
    "http": "URL or path probed with GET; healthy on an expected status (and body).",
    "tcp": "HOST:PORT connected to; healthy when the connection opens.",
    "exec": "Command run in the app's cwd and env; healthy on exit 0.",
    "interval": "Time between probes (default 10s).",
    "timeout": "Time a probe may take (default 3s).",
    "start_period": "Failures during this time after a start do not count (default 0s).",
    "failure_threshold": "Failures in a row before unhealthy (default 3).",
    "success_threshold": "Successes in a row before healthy again (default 1).",
    "expect_status": "Healthy HTTP statuses, e.g. `200`, `200-399` (default 200-399).",
    "expect_body": "A substring the HTTP body must contain.",
    "liveness": "Restart the instance once unhealthy (default false: readiness only).",
}


@dataclass(frozen=True)
class HealthSpec:
    kind: str  # "http", "tcp" or "exec"
    target: str | list[str]
    interval: float = 10.0
    timeout: float = 3.0
    start_period: float = 0.0
    failure_threshold: int = 3
    success_threshold: int = 1
    status_min: int = 200
    status_max: int = 399
    expect_body: str | None = None
    liveness: bool = False


def parse_health(table: Any) -> dict[str, Any] | None:
    """Validate a ``health`` table; returns it normalised (durations in ms). ValueError names the field."""
    if table is None or table is False:
        return None
    if not isinstance(table, dict):
        raise ValueError(f"expected a table with one of http, tcp or exec, got {table!r}")
    if "kind" in table and "target" in table:  # already normalised (e.g. sent to the daemon)
        table = dict(table)
        table[str(table.pop("kind"))] = table.pop("target")
        lo, hi = table.pop("status_min", 200), table.pop("status_max", 399)
        table["expect_status"] = f"{lo}-{hi}"
        if table.get("expect_body") is None:
            table.pop("expect_body", None)
    unknown = set(table) - set(HEALTH_KEYS)
    if unknown:
        raise ValueError(f"unknown field 'health.{sorted(unknown)[0]}' (fields: {', '.join(HEALTH_KEYS)})")
    kinds = [k for k in ("http", "tcp", "exec") if table.get(k)]
    if len(kinds) != 1:
        raise ValueError("give exactly one of 'health.http', 'health.tcp' or 'health.exec'")
    kind = kinds[0]
    target = table[kind]
    out: dict[str, Any] = {"kind": kind}
    if kind == "exec":
        if isinstance(target, str):
            try:
                target = shlex.split(target)
            except ValueError as e:
                raise ValueError(f"'health.exec': {e}")
        if not isinstance(target, list) or not target or not all(isinstance(a, str) for a in target):
            raise ValueError("'health.exec' must be a command string or a list of strings")
    elif not isinstance(target, str):
        raise ValueError(f"'health.{kind}' must be a string")
    elif kind == "http" and not (target.startswith("/") or target.startswith("http://")):
        raise ValueError(f"'health.http' must be a path ('/health') or an http:// URL, got {target!r}")
    elif kind == "tcp" and ":" not in target:
        raise ValueError(f"'health.tcp' must be HOST:PORT, got {target!r}")
    out["target"] = target
    for key, default in (("interval", 10_000), ("timeout", 3_000), ("start_period", 0)):
        try:
            out[key] = parse_duration_ms(table.get(key, default))
        except ValueError as e:
            raise ValueError(f"'health.{key}': {e}")
    if out["interval"] <= 0:
        raise ValueError("'health.interval' must be more than 0")
    if out["timeout"] <= 0:
        raise ValueError("'health.timeout' must be more than 0")
    for key, default in (("failure_threshold", 3), ("success_threshold", 1)):
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"'health.{key}' must be a whole number of 1 or more, got {value!r}")
        out[key] = value
    status = str(table.get("expect_status", "200-399"))
    lo, _, hi = status.partition("-")
    if not lo.strip().isdigit() or (hi and not hi.strip().isdigit()):
        raise ValueError(f"'health.expect_status' must be like 200 or 200-399, got {status!r}")
    out["status_min"], out["status_max"] = int(lo), int(hi or lo)
    if out["status_min"] > out["status_max"]:
        raise ValueError(f"'health.expect_status': {status!r} is reversed (write it low-high)")
    body = table.get("expect_body")
    if body is not None and not isinstance(body, str):
        raise ValueError("'health.expect_body' must be a string")
    out["expect_body"] = body
    liveness = table.get("liveness", False)
    if not isinstance(liveness, bool):
        raise ValueError("'health.liveness' must be true or false")
    out["liveness"] = liveness
    return out


@dataclass(frozen=True)
class HealthState:
    status: str = "starting"  # starting, healthy, unhealthy
    failures: int = 0
    successes: int = 0
    checks: int = 0
    since: float = 0.0  # when the probed thing (re)started
    last_change: float = 0.0
    last_error: str | None = None
    last_latency_ms: float | None = None


def health_step(state: HealthState, ok: bool, error: str | None, latency_ms: float, now: float, spec: HealthSpec) -> tuple[HealthState, bool]:
    """One probe result in; the new state and whether the status changed."""
    s = replace(state, checks=state.checks + 1, last_latency_ms=latency_ms)
    if ok:
        s = replace(s, successes=s.successes + 1, failures=0, last_error=None)
        if s.status != "healthy" and s.successes >= spec.success_threshold:
            return replace(s, status="healthy", last_change=now), True
        return s, False
    s = replace(s, failures=s.failures + 1, successes=0, last_error=error)
    if s.status == "starting" and now - s.since < spec.start_period:
        return replace(s, failures=0), False
    if s.status != "unhealthy" and s.failures >= spec.failure_threshold:
        return replace(s, status="unhealthy", last_change=now), True
    return s, False
