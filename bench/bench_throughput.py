"""Shared-socket throughput: a hello-world ASGI app, 1/2/4 instances behind Corral's shared socket vs plain ``uvicorn --workers N``.

Registered with bench/run.py (its EXTENSIONS); shared helpers in cluster_support.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from harness import (
    APPS,
    REPO,
    BenchError,
    Corral,
    median,
)
from run import Ctx, Row, benchmark, progress

sys.path.insert(0, str(REPO))
from cluster_support import (
    APP_PY_ENV,
    HOST,
    VENV_PY,
    Foreground,
    _distinct_ports,
    corral_hello_app,
    delete_app,
    have_wrk,
    point_to_analysis,
    run_wrk,
    start_file,
    wait_http,
    warm_apps,
)

# ---------------------------------------------------------------- 2. throughput: shared socket vs uvicorn --workers


@benchmark(
    "throughput",
    "Shared-socket throughput vs plain uvicorn",
    "The same hello-world ASGI app (bench/apps/cluster_app.py, uvicorn with h11 on asyncio, no access log) with "
    "1, 2 and 4 instances behind Corral's shared socket (cluster mode, the shipped recipe `python -m "
    "corral.contrib.uvicorn cluster_app:app --fd {fd}`) vs plain `uvicorn cluster_app:app --workers N` "
    "(uvicorn's own supervisor, which also shares one socket between its workers), both with the venv's "
    "python. **The PM2 column is plain uvicorn here.** Requests/s from `wrk -t1 -c32` after a 1 s warm-up: on "
    "keep-alive connections (wrk's default; 5 s, two rounds, median), then once, for 2 s each: "
    "with `Connection: close` (a new connection per request, which Nagle's algorithm does not delay: the "
    "manager's own per-request cost, if any), and with Corral's instances running "
    "bench/apps/cluster_uvicorn_nodelay.py (the recipe with TCP_NODELAY restored). All deployments of one N "
    "run at once (idle while another is measured); measurements alternate between them.",
)
def bench_throughput(ctx: Ctx) -> list[Row]:
    if not have_wrk():
        raise BenchError("wrk is not installed (apt-get install wrk)")
    warm_apps()
    seconds = ctx.pick(5, 2)
    extra_seconds = ctx.pick(2, 2)
    rounds = ctx.pick(2, 1)
    keys = ("Corral", "uvicorn", "Corral close", "uvicorn close", "Corral nodelay")
    rows: list[Row] = []
    extra_rows: list[Row] = []
    corral = Corral()
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-tp-", dir="/tmp"))
    try:
        with corral.session():
            corral.start_daemon()
            for n in (1, 2, 4):
                rps: dict[str, list[float]] = {k: [] for k in keys}
                cport, nport, uport = _distinct_ports(3)
                name, nd_name = f"tp{n}", f"tp{n}-nodelay"
                progress(f"throughput: {n} instance(s)")
                try:
                    start_file(
                        corral,
                        [
                            corral_hello_app(cport, n, name),
                            corral_hello_app(nport, n, nd_name, "nodelay"),
                        ],
                        name,
                    )
                    corral.wait_online(2 * n, 60)
                    argv = [
                        VENV_PY,
                        "-m",
                        "uvicorn",
                        "cluster_app:app",
                        "--host",
                        HOST,
                        "--port",
                        str(uport),
                        "--workers",
                        str(n),
                        "--no-access-log",
                    ]
                    env = dict(os.environ, **APP_PY_ENV)
                    with Foreground(argv, env, APPS, tmp / f"uvicorn{n}.log") as uv:
                        for port in (uport, cport, nport):
                            wait_http(port)
                        time.sleep(1.0)  # uvicorn's other workers: no readiness signal to wait for
                        uv.remember()
                        for port in (cport, uport, nport):
                            run_wrk(port, "/", 32, 1.0)
                        for r in range(rounds):
                            plan = [
                                ("Corral", cport, False, seconds),
                                ("uvicorn", uport, False, seconds),
                            ]
                            if (r + n) % 2:
                                plan.reverse()
                            if r == 0:
                                extra = [
                                    ("Corral close", cport, True, extra_seconds),
                                    ("uvicorn close", uport, True, extra_seconds),
                                    ("Corral nodelay", nport, False, extra_seconds),
                                ]
                                plan += extra if n % 2 else extra[1::-1] + extra[2:]
                            for key, port, close, secs in plan:
                                res = run_wrk(port, "/", 32, secs, close=close)
                                if res.failures:
                                    ctx.note(
                                        "throughput",
                                        f"{key}, {n} instance(s): {res.failures} failed requests",
                                    )
                                rps[key].append(res.rps)
                finally:
                    for app in (name, nd_name):
                        with contextlib.suppress(BenchError):
                            delete_app(corral, app)
                ctx.note(
                    "throughput",
                    f"{n} instance(s), requests/s: "
                    + "; ".join(
                        f"{k} " + ", ".join(f"{x:,.0f}" for x in v) for k, v in rps.items()
                    ),
                )
                s = "s" if n > 1 else ""
                rows.append(
                    Row(
                        f"keep-alive requests/s, {n} instance{s}",
                        "req/s",
                        median(rps["Corral"]),
                        median(rps["uvicorn"]),
                        better="higher",
                        target=0.9,
                        note=f"PM2 column: `uvicorn --workers {n}`",
                    )
                )
                extra_rows += [
                    Row(
                        f"`Connection: close` requests/s, {n} instance{s}",
                        "req/s",
                        median(rps["Corral close"]),
                        median(rps["uvicorn close"]),
                        better="higher",
                        target=0.9,
                        note=f"PM2 column: `uvicorn --workers {n}`",
                    ),
                    Row(
                        f"keep-alive requests/s, {n} instance{s}, Corral with TCP_NODELAY restored",
                        "req/s",
                        median(rps["Corral nodelay"]),
                        median(rps["uvicorn"]),
                        better="higher",
                        note=f"cluster_uvicorn_nodelay.py; PM2 column: `uvicorn --workers {n}`",
                    ),
                ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ctx.note(
        "throughput",
        f"wrk -t1 -c32, {seconds} s per keep-alive measurement ({rounds} round(s)), {extra_seconds} s for the "
        "others (one each). On 2 cores, more than 2 instances cannot add throughput (and wrk takes part of a "
        "core): the point is the ratio, not the scaling. uvicorn `--workers 1` serves in one process from a "
        "host and port; `--workers 2` and up bind the socket in a supervisor and hand it down, like Corral.",
    )
    return point_to_analysis(ctx, "throughput", rows + extra_rows)
