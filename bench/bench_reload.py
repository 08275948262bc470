"""Reload under load: Corral reloading uvicorn instances vs PM2 reloading Node cluster workers, under a closed-loop client and wrk.

Registered with bench/run.py (its EXTENSIONS); shared helpers in cluster_support.py.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from harness import (
    REPO,
    BenchError,
    Corral,
    Tool,
    median,
    now,
)
from run import Ctx, Row, benchmark, progress

sys.path.insert(0, str(REPO))
from cluster_support import (
    APP_NAME,
    Load,
    corral_hello_app,
    delete_app,
    free_port,
    have_wrk,
    percentile,
    pm2_hello_app,
    point_to_analysis,
    reload_server,
    start_file,
    wait_http,
    warm_apps,
    wrk_running,
)

# ---------------------------------------------------------------- 1. reload under load


@benchmark(
    "reload",
    "Reload under load (cluster mode)",
    "Corral reloads 2 and 4 instances of a hello-world ASGI app served by `python -m corral.contrib.uvicorn "
    "cluster_app:app --fd {fd}` (cluster mode, one shared socket, `wait_ready = true`, `kill_signal = "
    '"SIGTERM"`); PM2 reloads 2 and 4 workers of a minimal Node http server in its cluster mode '
    "(`pm2 start cluster_hello.js -i N`, with PM2's documented graceful `SIGINT` handler: `server.close()`, "
    "then exit). (a) A closed-loop client in Python opens a new connection per request (`Connection: close`): "
    "6 threads send at once, 2 send 20 ms after connecting (a real network, TLS); a refused or reset "
    "connection, no reply within 5 s, an empty reply or a non-200 is a failed request. `<tool> reload hello` "
    "is issued back to back (0.3 s apart) while the load runs, in blocks Corral, PM2, PM2, Corral: half the "
    "reloads with 2 instances, half with 4. (b) The same with `wrk -t1 -c16` on keep-alive connections; "
    "failures = `Non-2xx or 3xx responses` + `Socket errors` (connect, read, write, timeout). Reload duration "
    "= wall time of the `reload` command (both return once every instance is replaced); median. Max "
    "latency: the slowest request of the run.",
)
def bench_reload(ctx: Ctx) -> list[Row]:
    warm_apps()
    reloads = ctx.pick(10, 2)  # per tool and instance count, for (a): 20 per tool in all
    wrk_reloads = ctx.pick(2, 2)  # per tool and instance count, for (b)
    blocks = 2
    labels = ("Corral", "PM2")
    server = reload_server()
    rows: list[Row] = []
    wrk_ok = have_wrk()
    if not wrk_ok:
        ctx.note(
            "reload",
            "wrk is not installed (`apt-get install wrk`): the keep-alive part (b) was skipped.",
        )
    if server != "contrib":
        ctx.note(
            "reload",
            f"**Corral's instances ran bench/apps/cluster_uvicorn_{server}.py** (BENCH_CLUSTER_UVICORN={server}), "
            "not the shipped `corral.contrib.uvicorn`.",
        )
    total_a = {k: 0 for k in labels}
    total_b = {k: 0 for k in labels}
    count_a = {k: 0 for k in labels}
    count_b = {k: 0 for k in labels}
    with ctx.both() as tools:
        for n in (2, 4):
            a: dict[str, dict[str, Any]] = {
                k: {
                    "fail": Counter(),
                    "ok": 0,
                    "lat": [],
                    "dur": [],
                    "reloads": 0,
                    "first": [],
                    "secs": 0.0,
                }
                for k in labels
            }
            b: dict[str, dict[str, Any]] = {
                k: {"fail": 0, "detail": Counter(), "max": [], "rps": [], "dur": [], "reloads": 0}
                for k in labels
            }
            ports: dict[str, int] = {}
            try:
                for tool in tools:
                    port = free_port()
                    ports[tool.label] = port
                    if isinstance(tool, Corral):
                        start_file(tool, [corral_hello_app(port, n, server=server)], f"hello{n}")
                    else:
                        start_file(tool, [pm2_hello_app(port, n)], f"hello{n}")
                    tool.wait_online(n, 60, name=APP_NAME)
                    wait_http(port)
                progress(f"reload: {n} instances, (a) {reloads} reloads per tool")
                for blk in range(blocks):
                    for tool in tools if blk % 2 == 0 else tools[::-1]:
                        k = reloads // blocks + (reloads % blocks if blk == 0 else 0)
                        _reload_block_a(tool, ports[tool.label], n, k, a[tool.label])
                if wrk_ok:
                    progress(f"reload: {n} instances, (b) wrk, {wrk_reloads} reloads per tool")
                    for blk in range(blocks):
                        for tool in tools if blk % 2 == 0 else tools[::-1]:
                            k = wrk_reloads // blocks + (wrk_reloads % blocks if blk == 0 else 0)
                            _reload_block_b(tool, ports[tool.label], n, k, b[tool.label])
            finally:
                for tool in tools:
                    with contextlib.suppress(BenchError):
                        delete_app(tool, APP_NAME)
            c, p = a["Corral"], a["PM2"]
            for label, s in a.items():
                failed = sum(s["fail"].values())
                total_a[label] += failed
                count_a[label] += s["reloads"]
                ctx.note(
                    "reload",
                    f"(a) {label}, {n} instances: {s['reloads']} reloads, {s['ok']:,} requests served in "
                    f"{s['secs']:.0f} s ({s['ok'] / max(s['secs'], 1e-9):,.0f}/s), {failed} failed "
                    f"({dict(s['fail']) or 'none'}){'; first: ' + ', '.join(s['first'][:3]) if s['first'] else ''}; "
                    f"reload durations (s): {', '.join(f'{d:.2f}' for d in s['dur'])}",
                )
            rows += [
                Row(
                    f"(a) failed requests per reload, {n} instances",
                    "req",
                    sum(c["fail"].values()) / max(c["reloads"], 1),
                    sum(p["fail"].values()) / max(p["reloads"], 1),
                    note=f"{c['reloads']} reloads each",
                ),
                Row(
                    f"(a) max latency, {n} instances",
                    "ms",
                    max(c["lat"], default=float("nan")) * 1000,
                    max(p["lat"], default=float("nan")) * 1000,
                ),
                Row(
                    f"(a) p99 latency, {n} instances",
                    "ms",
                    percentile(c["lat"], 0.99) * 1000,
                    percentile(p["lat"], 0.99) * 1000,
                ),
                Row(
                    f"reload duration (median), {n} instances",
                    "s",
                    median(c["dur"]),
                    median(p["dur"]),
                ),
            ]
            if wrk_ok:
                cb, pb = b["Corral"], b["PM2"]
                for label, s in b.items():
                    total_b[label] += s["fail"]
                    count_b[label] += s["reloads"]
                    ctx.note(
                        "reload",
                        f"(b) {label}, {n} instances: {s['reloads']} reloads under wrk -c16, failures "
                        f"{s['fail']} ({dict(s['detail']) or 'none'}), requests/s during each run "
                        f"{', '.join(f'{r:,.0f}' for r in s['rps'])}; reload durations (s): "
                        f"{', '.join(f'{d:.2f}' for d in s['dur'])}",
                    )
                rows += [
                    Row(
                        f"(b) keep-alive: failed requests per reload, {n} instances",
                        "req",
                        cb["fail"] / max(cb["reloads"], 1),
                        pb["fail"] / max(pb["reloads"], 1),
                        note=f"{cb['reloads']} reloads each",
                    ),
                    Row(
                        f"(b) max latency, {n} instances",
                        "ms",
                        max(cb["max"], default=float("nan")) * 1000,
                        max(pb["max"], default=float("nan")) * 1000,
                    ),
                    Row(
                        f"(b) requests/s during the reloads, {n} instances",
                        "req/s",
                        median(cb["rps"]),
                        median(pb["rps"]),
                        better="higher",
                    ),
                ]
    summary = [
        Row(
            f"(a) new connection per request: failed requests in {count_a['Corral']} reloads",
            "req",
            total_a["Corral"],
            total_a["PM2"],
            corral_target=0,
        )
    ]
    if wrk_ok:
        summary.append(
            Row(
                f"(b) keep-alive (wrk -c16): failed requests per reload ({count_b['Corral']} reloads)",
                "req",
                total_b["Corral"] / max(count_b["Corral"], 1),
                total_b["PM2"] / max(count_b["PM2"], 1),
                target=1.0,
                note="fewer than PM2",
            )
        )
    ctx.note(
        "reload",
        "The two tools serve different runtimes (uvicorn on Python's asyncio vs Node): the failed requests compare "
        "the managers and their reload recipes; latency and throughput also reflect the servers (and, for "
        "Corral's keep-alive figures, uvicorn's lost TCP_NODELAY on `--fd` sockets: see the `throughput` "
        "benchmark). A Node app without a SIGINT handler dies at once on `pm2 reload`, failing the requests it "
        'holds: the PM2 app here has the handler PM2\'s documentation recommends. "timeout" = no reply within 5 s.',
    )
    return point_to_analysis(ctx, "reload", summary + rows)


def _online_pids(tool: Tool, name: str) -> set[int]:
    return {p.pid for p in tool.jlist() if p.name == name and p.status == "online" and p.pid}


def _reload_block_a(tool: Tool, port: int, n: int, k: int, acc: dict[str, Any]) -> None:
    before = _online_pids(tool, APP_NAME)
    with Load(port, "/", max_seconds=240) as load:
        time.sleep(0.5)
        for _ in range(k):
            t0 = now()
            tool.cli("reload", APP_NAME, stdout=subprocess.DEVNULL, timeout=120)
            acc["dur"].append(now() - t0)
            time.sleep(0.3)
        time.sleep(0.5)
        load.stop()
    acc["fail"].update(load.kinds)
    acc["ok"] += load.ok
    acc["lat"].extend(load.latencies)
    acc["reloads"] += k
    acc["first"].extend(load.failures)
    acc["secs"] += load.t1 - load.t0
    after = tool.wait_online(n, 30, name=APP_NAME)
    if k and before & {p.pid for p in after}:
        raise BenchError(f"{tool.label}: some instances kept their pid across {k} reloads")


def _reload_block_b(tool: Tool, port: int, n: int, k: int, acc: dict[str, Any]) -> None:
    with wrk_running(port, "/", 16, limit=240) as box:
        time.sleep(1.0)
        for _ in range(k):
            t0 = now()
            tool.cli("reload", APP_NAME, stdout=subprocess.DEVNULL, timeout=120)
            acc["dur"].append(now() - t0)
            time.sleep(0.3)
        time.sleep(1.0)
    r = box[0]
    acc["fail"] += r.failures
    acc["detail"].update(
        {
            k2: v
            for k2, v in (
                ("non-2xx", r.non2xx),
                ("connect", r.connect),
                ("read", r.read),
                ("write", r.write),
                ("timeout", r.timeout),
            )
            if v
        }
    )
    acc["max"].append(r.latency_max)
    acc["rps"].append(r.rps)
    acc["reloads"] += k
    tool.wait_online(n, 30, name=APP_NAME)
