"""Benchmarks of start order and hooks (issue 13).

* ``hook_latency``: event -> webhook delivered. Corral's hook runner (the code the
  daemon runs) POSTs each event to a receiver in another process, which stamps the
  arrival with CLOCK_MONOTONIC (the same clock across processes); latency = arrival
  minus the moment ``emit`` was called. PM2 has no hooks (notifications are PM2 Plus,
  a paid service), so its column is empty.
* ``deps_plan``: the start planner's own cost per dependency edge for a 10-app chain
  (the pure decisions: Begin, then each app's started/online observation), measured
  in-process; the daemon's end-to-end overhead per edge joins this once the planner
  drives ``corral start``.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from harness import REPO
from run import Ctx, Row, benchmark, progress

sys.path.insert(0, str(REPO / "src"))

RECEIVER = textwrap.dedent(
    """
    import sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            sys.stdout.write(f"{time.monotonic()!r}\\n")
            sys.stdout.flush()
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
        def log_message(self, *a):
            pass

    s = HTTPServer(("127.0.0.1", 0), H)
    sys.stdout.write(f"{s.server_address[1]}\\n")
    sys.stdout.flush()
    s.serve_forever()
    """
)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


@benchmark(
    "hook_latency",
    "Event -> webhook delivered",
    "Corral's hook runner (corral.core.hooks.HookRunner, as the daemon runs it) POSTs N `exited` events, 20 ms apart, "
    "to a plain HTTP receiver in another process (http.server, 204 answers); the receiver stamps each arrival with "
    "CLOCK_MONOTONIC, the emitter each `emit` call; latency = arrival - emit. Rate limit set above N so none is held "
    "back. PM2 has no hooks (its notifications are PM2 Plus, a paid service).",
)
def bench_hook_latency(ctx: Ctx) -> list[Row]:
    from corral.core import hooks
    from corral.core.events import EventRing

    n = ctx.pick(300, 60)
    proc = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        spec = hooks.spec_of(hooks.parse_hook({"url": f"http://127.0.0.1:{port}/hook/secret", "events": ["exited"], "rate_limit": n + 10, "retries": 0}))
        emitted: list[float] = []

        async def main() -> None:
            runner = hooks.HookRunner([spec])
            ring = EventRing()
            for i in range(n):
                emitted.append(time.monotonic())
                runner.emit(ring.add("exited", "web", time.time(), code=1, instance=i % 4))
                await asyncio.sleep(0.02)
            deadline = time.monotonic() + 10
            while runner.states[0].delivered + runner.states[0].failed < n and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await runner.close()

        asyncio.run(main())
        arrivals = [float(proc.stdout.readline()) for _ in range(n)]
    finally:
        proc.kill()
        proc.wait()
    lat = [(a - e) * 1000 for a, e in zip(arrivals, emitted, strict=True)]
    med, p99 = statistics.median(lat), percentile(lat, 99)
    progress(f"  hook_latency: median {med:.2f} ms, p99 {p99:.2f} ms over {n} events")
    return [
        Row("event -> webhook delivered, median", "ms", med, None, note=f"{n} events"),
        Row("event -> webhook delivered, p99", "ms", p99, None),
    ]


@benchmark(
    "deps_plan",
    "Start planner cost per dependency edge",
    "A chain of 10 apps (each `depends_on` the previous, `ready` on READY=1): the pure planner "
    "(corral.core.depplan.plan_step) fed Begin, then `started` and `online` for each app in turn, 200 times; the "
    "decision time per edge. The issue's target is the daemon's end-to-end overhead per edge, <= 20 ms; this row is "
    "the planner's share of it. PM2 has no dependencies.",
)
def bench_deps_plan(ctx: Ctx) -> list[Row]:
    from corral.core import depplan, deps
    from corral.core.appspec import from_wire

    apps = [from_wire({"name": f"a{i}", "script": "x.py", "cwd": "/", "wait_ready": True, "listen_timeout": 3000,
                       "depends_on": deps.parse_depends_on([f"a{i - 1}"] if i else None)}) for i in range(10)]
    graph = deps.validate(apps)
    rounds = ctx.pick(200, 50)
    t0 = time.perf_counter()
    for _ in range(rounds):
        state = depplan.new_plan(graph, apps)
        state, _ = depplan.plan_step(state, depplan.Begin(), 0.0)
        for i in range(10):
            state, _ = depplan.plan_step(state, depplan.Observed(f"a{i}", "started"), 0.0)
            state, _ = depplan.plan_step(state, depplan.Observed(f"a{i}", "online"), 0.0)
        assert state.done
    per_edge = (time.perf_counter() - t0) / rounds / 9 * 1000
    progress(f"  deps_plan: {per_edge * 1000:.1f} µs per edge")
    return [Row("planner decision time per edge (10-app chain)", "ms", per_edge, None, corral_target=20.0)]





CHAIN_APP = textwrap.dedent(
    """
    import os, socket, sys, time
    t0 = time.monotonic()
    name = sys.argv[1]
    time.sleep(float(sys.argv[2]))          # the app's own start work
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    addr = os.environ["NOTIFY_SOCKET"]
    s.connect("\\0" + addr[1:] if addr.startswith("@") else addr)
    t1 = time.monotonic()
    s.send(b"READY=1")
    with open(os.path.join(os.environ["STAMPS"], name), "w") as f:
        f.write(f"{t0!r} {t1!r}")
    while True:
        time.sleep(1)
    """
)


@benchmark(
    "deps_chain",
    "Start of a 10-app dependency chain",
    "10 apps, each `depends_on` the previous one with `ready` (`wait_ready`: the app sends READY=1 after 50 ms of "
    "its own start work), started with one `corral start` on a running daemon. Each app stamps CLOCK_MONOTONIC at its "
    "first line and when it sends READY=1. Per edge: the gap from an app's READY=1 to the next app's first line, "
    "with the interpreter's own start (`python -c pass`) measured in the same run for comparison; and, from the daemon's event "
    "ring, READY=1 of one app handled -> the next app spawned: what Corral adds per edge (READY=1 read, the "
    "planner's decision, the spawn). Also the whole chain: from issuing `start` until it returns "
    "(every app ready), vs the sum of the apps' own start times. 5 trials. PM2 has no dependencies.",
)
def bench_deps_chain(ctx: Ctx) -> list[Row]:
    import json as _json
    import os
    import shutil
    import tempfile

    trials = ctx.pick(5, 2)
    py = ctx.python
    boot = []
    for _ in range(10):
        t = time.perf_counter()
        subprocess.run([py, "-c", "pass"], check=True)
        boot.append(time.perf_counter() - t)
    interp = statistics.median(boot)
    gaps: list[float] = []
    totals: list[float] = []
    owns: list[float] = []
    daemon_edges: list[float] = []
    for trial in range(trials):
        work = Path(tempfile.mkdtemp(prefix="bench-corral-chain-"))
        home = work / "home"
        stamps = work / "stamps"
        stamps.mkdir()
        (work / "app.py").write_text(CHAIN_APP)
        lines = []
        for i in range(10):
            lines += ["[[apps]]", f'name = "a{i}"', 'script = "app.py"', f'args = ["a{i}", "0.05"]', f'interpreter = "{py}"', "wait_ready = true", 'listen_timeout = "20s"']
            if i:
                lines.append(f'depends_on = {{ a{i - 1} = "ready" }}')
        (work / "ecosystem.toml").write_text("\n".join(lines) + "\n")
        env = dict(os.environ, CORRAL_HOME=str(home), STAMPS=str(stamps), PYTHONPYCACHEPREFIX=str(REPO / "bench" / ".work" / "pycache"))
        corral = [sys.executable, "-m", "corral"]
        try:
            subprocess.run([*corral, "ping"], env=env, cwd=work, check=True, capture_output=True)
            t0 = time.monotonic()
            subprocess.run([*corral, "start", "ecosystem.toml", "--wait"], env=env, cwd=work, check=True, capture_output=True, timeout=120)
            total = time.monotonic() - t0
            got = {p.name: tuple(map(float, p.read_text().split())) for p in stamps.iterdir()}
            assert len(got) == 10, sorted(got)
            for i in range(1, 10):
                gaps.append(got[f"a{i}"][0] - got[f"a{i - 1}"][1])
            own = sum(b - a for a, b in got.values())
            totals.append(total)
            owns.append(own)
            jl = _json.loads(subprocess.run([*corral, "jlist"], env=env, cwd=work, capture_output=True, text=True).stdout)
            assert all(p["status"] == "online" for p in jl)
            # the daemon's own view: READY=1 of a(i-1) handled -> a(i) spawned (its event ring's times)
            evs = [_json.loads(x) for x in subprocess.run([*corral, "events", "--json", "--nostream", "--lines", "200"], env=env, cwd=work, capture_output=True, text=True).stdout.splitlines()]
            ready = {e["app"]: e["time"] for e in evs if e["kind"] == "ready"}
            started = {e["app"]: e["time"] for e in evs if e["kind"] == "started"}
            for i in range(1, 10):
                daemon_edges.append(started[f"a{i}"] - ready[f"a{i - 1}"])
        finally:
            subprocess.run([*corral, "kill"], env=env, cwd=work, capture_output=True, timeout=60)
            shutil.rmtree(work, ignore_errors=True)
        progress(f"  deps_chain trial {trial + 1}: start returned after {total * 1000:.0f} ms; apps' own start {own * 1000:.0f} ms")
    gap = statistics.median(gaps) * 1000
    total_ms, own_ms = statistics.median(totals) * 1000, statistics.median(owns) * 1000
    ctx.note("deps_chain", f"interpreter start (`python -c pass`, median of 10): {interp * 1000:.1f} ms; READY=1 -> next app's first line (spawn + the next interpreter's start), median over {len(gaps)} edges: {gap:.1f} ms (p90 {percentile(gaps, 90) * 1000:.1f} ms). The chain's total includes every app's interpreter start and the CLI's own; the daemon's share is the first row.")
    return [
        Row("overhead per edge in the daemon (READY=1 handled -> next app spawned), median", "ms", statistics.median(daemon_edges) * 1000, None, corral_target=20.0),
        Row("the same, p90", "ms", percentile(daemon_edges, 90) * 1000, None),
        Row("`start` of the chain until it returns (all ready)", "ms", total_ms, None),
        Row("sum of the apps' own start times (first line -> READY=1)", "ms", own_ms, None),
        Row("chain overhead per edge ((start - sum of own starts) / 9)", "ms", (total_ms - own_ms) / 9, None),
    ]
