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
    "Corral's hook runner (corral.hooks.HookRunner, as the daemon runs it) POSTs N `exited` events, 20 ms apart, "
    "to a plain HTTP receiver in another process (http.server, 204 answers); the receiver stamps each arrival with "
    "CLOCK_MONOTONIC, the emitter each `emit` call; latency = arrival - emit. Rate limit set above N so none is held "
    "back. PM2 has no hooks (its notifications are PM2 Plus, a paid service).",
)
def bench_hook_latency(ctx: Ctx) -> list[Row]:
    from corral import hooks
    from corral.events import EventRing

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
    "(corral.deps.plan_step) fed Begin, then `started` and `online` for each app in turn, 200 times; the "
    "decision time per edge. The issue's target is the daemon's end-to-end overhead per edge, <= 20 ms; this row is "
    "the planner's share of it. PM2 has no dependencies.",
)
def bench_deps_plan(ctx: Ctx) -> list[Row]:
    from corral import deps

    apps = [{"name": f"a{i}", "autorestart": True, "wait_ready": True, "listen_timeout": 3000, "health": None,
             "depends_on": deps.parse_depends_on([f"a{i - 1}"] if i else None)} for i in range(10)]
    graph = deps.validate(apps)
    rounds = ctx.pick(200, 50)
    t0 = time.perf_counter()
    for _ in range(rounds):
        state = deps.new_plan(graph, apps)
        state, _ = deps.plan_step(state, deps.Begin(), 0.0)
        for i in range(10):
            state, _ = deps.plan_step(state, deps.Observed(f"a{i}", "started"), 0.0)
            state, _ = deps.plan_step(state, deps.Observed(f"a{i}", "online"), 0.0)
        assert state.done
    per_edge = (time.perf_counter() - t0) / rounds / 9 * 1000
    progress(f"  deps_plan: {per_edge * 1000:.1f} µs per edge")
    return [Row("planner decision time per edge (10-app chain)", "ms", per_edge, None, corral_target=20.0)]



