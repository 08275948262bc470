"""The design document's Next.js setup under Corral and under PM2's cluster mode: requests/s and reloads under load.

Registered with bench/run.py (its EXTENSIONS).  The app is tests/fixtures/nextjs (Next.js 15, App
Router, ``/api/health``), installed from npm and built once into tests/.cache/nextjs, the cache
tests/e2e/test_nextjs_cluster.py uses (same layout, same build key).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from harness import REPO, BenchError, Tool, median, now
from run import Ctx, Row, benchmark, progress

sys.path.insert(0, str(REPO))
from cluster_support import (
    Load,
    delete_app,
    free_port,
    have_wrk,
    percentile,
    run_wrk,
    wait_http,
    wrk_running,
)

FIXTURE = REPO / "tests" / "fixtures" / "nextjs"
CACHE = REPO / "tests" / ".cache" / "nextjs"
APP_FILES = ("package.json", "next.config.js", "app")
APP = "web"
HEALTH = "/api/health"
INSTANCES = 4


def _fixture_hash() -> str:
    """The build key of tests/e2e/test_nextjs_cluster.py: the app's files, not its ecosystem file."""
    h = hashlib.sha256()
    for path in sorted(p for p in FIXTURE.rglob("*") if p.is_file() and p.name != "ecosystem.config.js"):
        h.update(str(path.relative_to(FIXTURE)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def nextjs_build() -> Path:
    """The fixture app built with `next build` (npm install and build cached in tests/.cache/nextjs)."""
    modules = CACHE / "node_modules"
    if not (modules / "next" / "dist" / "bin" / "next").exists():
        npm = shutil.which("npm")
        if npm is None:
            raise BenchError("npm is not installed")
        progress("nextjs: npm install next@15 (once, into tests/.cache/nextjs)")
        CACHE.mkdir(parents=True, exist_ok=True)
        res = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(CACHE), "next@15", "react@19", "react-dom@19"],
            capture_output=True, text=True, timeout=600, check=False,
        )
        if res.returncode != 0:
            raise BenchError(f"npm install next failed: {res.stderr.strip()[-300:]}")
    build = CACHE / f"build-{_fixture_hash()}"
    if not (build / ".next" / "BUILD_ID").exists():
        progress("nextjs: next build (once per content of tests/fixtures/nextjs)")
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
        for name in APP_FILES:
            src = FIXTURE / name
            if src.is_dir():
                shutil.copytree(src, build / name)
            else:
                shutil.copy2(src, build / name)
        (build / "node_modules").symlink_to(modules)
        res = subprocess.run(
            ["node", "node_modules/next/dist/bin/next", "build"],
            cwd=build, env={**os.environ, "NEXT_TELEMETRY_DISABLED": "1"},
            capture_output=True, text=True, timeout=600, check=False,
        )
        if res.returncode != 0:
            raise BenchError(f"next build failed: {(res.stdout + res.stderr).strip()[-400:]}")
    return build


def ecosystem_for(tool: Tool, build: Path, port: int) -> Path:
    """The design document's file as written, with this run's port and logs of the tool's own."""
    text = (FIXTURE / "ecosystem.config.js").read_text()
    text = text.replace("PORT: 3000", f"PORT: {port}").replace("'logs/", f"'logs-{tool.label.lower()}/")
    path = build / f"ecosystem-{tool.label.lower()}.config.js"
    path.write_text(text)
    return path


def start_in(tool: Tool, build: Path, eco: Path) -> None:
    """`<tool> start <file> --env production` from the app's folder, as its users run it (PM2 resolves
    a script without `cwd` from where it is started)."""
    try:
        res = subprocess.run(
            [*tool.argv(), "start", eco.name, "--env", "production"],
            cwd=build, env=tool.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, timeout=120, check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{tool.label} start {eco.name}: no answer within 120 s") from None
    if res.returncode != 0:
        raise BenchError(f"{tool.label} start {eco.name} exited {res.returncode}: {res.stderr.strip()[-400:]}")


def _online_pids(tool: Tool) -> set[int]:
    return {p.pid for p in tool.jlist() if p.name == APP and p.status == "online" and p.pid}


def _reload(tool: Tool, acc: dict[str, Any]) -> None:
    t0 = now()
    tool.cli("reload", APP, stdout=subprocess.DEVNULL, timeout=180)
    acc["dur"].append(now() - t0)
    tool.wait_online(INSTANCES, 90, name=APP)


def _reloads_closed_loop(tool: Tool, port: int, k: int, acc: dict[str, Any]) -> None:
    before = _online_pids(tool)
    with Load(port, HEALTH, max_seconds=300) as load:
        time.sleep(0.5)
        for _ in range(k):
            _reload(tool, acc)
            time.sleep(0.5)
        time.sleep(0.5)
        load.stop()
    acc["fail"].update(load.kinds)
    acc["ok"] += load.ok
    acc["lat"].extend(load.latencies)
    acc["first"].extend(load.failures)
    acc["secs"] += load.t1 - load.t0
    acc["reloads"] += k
    if k and before & _online_pids(tool):
        raise BenchError(f"{tool.label}: some instances kept their pid across {k} reloads")


def _reloads_wrk(tool: Tool, port: int, k: int, acc: dict[str, Any]) -> None:
    with wrk_running(port, HEALTH, 16, limit=300) as box:
        time.sleep(1.0)
        for _ in range(k):
            _reload(tool, acc)
            time.sleep(0.5)
        time.sleep(1.0)
    r = box[0]
    acc["fail"] += r.failures
    acc["detail"].update({n: v for n, v in (("non-2xx", r.non2xx), ("connect", r.connect), ("read", r.read), ("write", r.write), ("timeout", r.timeout)) if v})
    acc["rps"].append(r.rps)
    acc["max"].append(r.latency_max)
    acc["reloads"] += k


@benchmark(
    "nextjs",
    "Next.js 15, 4 instances in cluster mode",
    "The design document's setup, unchanged: tests/fixtures/nextjs (a Next.js 15 App Router app with "
    "`/api/health`, built once with `next build`) started from its `ecosystem.config.js` with `--env production` "
    "(`script: node_modules/next/dist/bin/next`, `args: start`, `exec_mode: cluster`, `instances: 4`, "
    "`node_args: --max-old-space-size=3072`, JSON logs) by each tool; only the port and the log folder differ. "
    "Under PM2, Node's cluster module in PM2's daemon hands connections to the workers; under Corral, the daemon "
    "is Node's cluster primary and the workers share one socket. Requests/s on `/api/health` from `wrk -t1 -c32` "
    "after a 1 s warm-up, on keep-alive connections and with `Connection: close`, the tools alternating. "
    "Reloads under load: (a) the closed-loop client of the `reload` benchmark (tests/support/httpload.py: 6 "
    "threads sending at once, 2 sending 20 ms after connecting, a new connection per request; a refused or reset "
    "connection, no reply within 5 s, an empty reply or a non-200 is a failed request), `<tool> reload web` back "
    "to back, each once all 4 instances are online again; (b) the same under `wrk -t1 -c16` on keep-alive "
    "connections (failures = non-2xx + socket errors). Reload duration = wall time of the `reload` command.",
)
def bench_nextjs(ctx: Ctx) -> list[Row]:
    if shutil.which("node") is None:
        raise BenchError("node is not installed")
    wrk_ok = have_wrk()
    if not wrk_ok:
        raise BenchError("wrk is not installed (apt-get install wrk)")
    build = nextjs_build()
    seconds = ctx.pick(5, 2)
    rounds = ctx.pick(2, 1)
    reloads_a = ctx.pick(3, 1)
    reloads_b = ctx.pick(2, 1)
    labels = ("Corral", "PM2")
    rps: dict[tuple[str, bool], list[float]] = {(k, c): [] for k in labels for c in (False, True)}
    errors: Counter[str] = Counter()
    a: dict[str, dict[str, Any]] = {k: {"fail": Counter(), "ok": 0, "lat": [], "dur": [], "reloads": 0, "first": [], "secs": 0.0} for k in labels}
    b: dict[str, dict[str, Any]] = {k: {"fail": 0, "detail": Counter(), "rps": [], "max": [], "dur": [], "reloads": 0} for k in labels}
    with ctx.both() as tools:
        ports: dict[str, int] = {}
        try:
            for tool in tools:
                tool.env["NEXT_TELEMETRY_DISABLED"] = "1"
                port = free_port()
                ports[tool.label] = port
                shutil.rmtree(build / f"logs-{tool.label.lower()}", ignore_errors=True)
                progress(f"nextjs: starting 4 instances under {tool.label}")
                start_in(tool, build, ecosystem_for(tool, build, port))
                tool.wait_online(INSTANCES, 90, name=APP)
                wait_http(port, HEALTH, timeout=60)
                run_wrk(port, HEALTH, 32, 1)  # warm-up
            for rnd in range(rounds):
                for tool in tools if rnd % 2 == 0 else tools[::-1]:
                    for close in (False, True):
                        progress(f"nextjs: wrk {'Connection: close' if close else 'keep-alive'}, {tool.label}")
                        r = run_wrk(ports[tool.label], HEALTH, 32, seconds, close=close)
                        rps[(tool.label, close)].append(r.rps)
                        if r.failures:
                            errors[f"{tool.label} {'close' if close else 'keep-alive'}"] += r.failures
            for tool in tools:
                progress(f"nextjs: {reloads_a} reload(s) under the closed-loop client, {tool.label}")
                _reloads_closed_loop(tool, ports[tool.label], reloads_a, a[tool.label])
            for tool in tools[::-1]:
                progress(f"nextjs: {reloads_b} reload(s) under wrk, {tool.label}")
                _reloads_wrk(tool, ports[tool.label], reloads_b, b[tool.label])
        finally:
            for tool in tools:
                with contextlib.suppress(BenchError):
                    delete_app(tool, APP)
    for label in labels:
        s = a[label]
        ctx.note(
            "nextjs",
            f"(a) {label}: {s['reloads']} reloads, {s['ok']:,} requests served in {s['secs']:.0f} s, "
            f"{sum(s['fail'].values())} failed ({dict(s['fail']) or 'none'})"
            f"{'; first: ' + ', '.join(s['first'][:3]) if s['first'] else ''}",
        )
        t = b[label]
        ctx.note(
            "nextjs",
            f"(b) {label}: {t['reloads']} reloads under wrk -c16, {t['fail']} failed ({dict(t['detail']) or 'none'}), "
            f"requests/s {', '.join(f'{x:,.0f}' for x in t['rps'])}; reload durations (s), (a) then (b): "
            f"{', '.join(f'{d:.1f}' for d in a[label]['dur'] + t['dur'])}",
        )
        ctx.note(
            "nextjs",
            f"{label} requests/s, keep-alive: {', '.join(f'{x:,.0f}' for x in rps[(label, False)])}; "
            f"Connection: close: {', '.join(f'{x:,.0f}' for x in rps[(label, True)])}",
        )
    if errors:
        ctx.note("nextjs", f"wrk socket errors or non-2xx while measuring requests/s: {dict(errors)}")
    ca, pa, cb, pb = a["Corral"], a["PM2"], b["Corral"], b["PM2"]
    rows = [
        Row("requests/s on /api/health, keep-alive", "req/s", median(rps[("Corral", False)]), median(rps[("PM2", False)]), better="higher"),
        Row("requests/s on /api/health, Connection: close", "req/s", median(rps[("Corral", True)]), median(rps[("PM2", True)]), better="higher"),
        Row(
            f"(a) new connection per request: failed requests per reload ({ca['reloads']} reloads each)",
            "req",
            sum(ca["fail"].values()) / max(ca["reloads"], 1),
            sum(pa["fail"].values()) / max(pa["reloads"], 1),
            corral_target=0,
        ),
        Row(
            f"(b) keep-alive (wrk -c16): failed requests per reload ({cb['reloads']} reloads each)",
            "req",
            cb["fail"] / max(cb["reloads"], 1),
            pb["fail"] / max(pb["reloads"], 1),
            note="informational: see below",
        ),
        Row("(a) p99 latency during the reloads", "ms", percentile(ca["lat"], 0.99) * 1000, percentile(pa["lat"], 0.99) * 1000),
        Row("(a) max latency during the reloads", "ms", max(ca["lat"], default=float("nan")) * 1000, max(pa["lat"], default=float("nan")) * 1000),
        Row("(b) requests/s during the reloads", "req/s", median(cb["rps"]), median(pb["rps"]), better="higher"),
        Row("reload duration (median), 4 instances", "s", median(ca["dur"] + cb["dur"]), median(pa["dur"] + pb["dur"])),
    ]
    ctx.note(
        "nextjs",
        "Both deployments run at once (the one not measured is idle). Next.js's own server answers under both; "
        "the figures compare how each manager shares the port and replaces the instances. (b) has no target: an "
        "instance that stops closes its idle keep-alive connections (Node's `server.close()`), and a request wrk "
        "sends on such a connection at that moment fails as a `read` error under either manager; browsers and "
        "most HTTP clients retry such an idempotent request on a new connection. (a), a new connection per "
        "request, is what a drained rolling reload must get through with 0 failures.",
    )
    return rows
