"""The reference web app's ``/api/health`` and ``/api/notes`` under Corral, PM2 and plain uvicorn.

Registered with bench/run.py (its EXTENSIONS); shared helpers in cluster_support.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from harness import (
    REPO,
    BenchError,
    Tool,
    median,
    now,
    proc_stat_cpu,
)
from run import Ctx, Row, benchmark, progress

sys.path.insert(0, str(REPO))
from cluster_support import (
    APP_PY_ENV,
    HOST,
    VENV_PY,
    WEBAPP,
    Foreground,
    _distinct_ports,
    answering_pids,
    corral_webapp,
    delete_app,
    have_wrk,
    init_db,
    pm2_webapp,
    point_to_analysis,
    run_wrk,
    run_wrk_spread,
    seed_notes,
    start_file,
    wait_answers,
    warm_apps,
)


@benchmark(
    "webapp",
    "The reference web app: requests/s",
    "examples/webapp (Starlette + SQLAlchemy, SQLite in a temporary folder, 20 notes; `LOG_LEVEL=info`: "
    "one JSON access-log line per request, written through each tool's log pipes) served by `serve.py`: "
    "**Corral** with the app's own ecosystem.toml (`--env production`; cluster mode, one shared socket, "
    "`wait_ready`), 4 instances and 1; **PM2** the way a PM2 user runs a Python server with 4 instances: "
    "fork mode (PM2's cluster mode is Node-only), each instance told to bind the same `PORT` (one binds, the "
    'others exit with "address already in use" and crash-loop), and 1 instance for a fair single-process '
    "figure; **plain `uvicorn webapp.app:app --workers 4`** from examples/webapp, for reference. "
    "`wrk -t1 -c32` for 3 s on `GET /api/health` (runs `SELECT 1`) and on `GET /api/notes` (20 notes, "
    "DB-backed) after a 1 s warm-up, keep-alive; for Corral and plain uvicorn with 4 instances also `/api/health` with "
    "`Connection: close`. All deployments run side by side, idle while another is measured, except PM2's 4 "
    "crash-looping instances, started and deleted in their turn; order: Corral 4, PM2 4, uvicorn 4, Corral 4 "
    "with `reuse_port = true`, PM2 1, Corral 1, then (full runs) Corral 1, PM2 1, PM2 4, Corral 4 again; "
    "median of the two. "
    "Daemon CPU: utime+stime of the daemon over the keep-alive measurements, per 1,000 requests (each one an "
    "access-log line to carry). The instances that answered and the restart counters are read after the load.",
)
def bench_webapp(ctx: Ctx) -> list[Row]:
    warm_apps()
    if not have_wrk():
        raise BenchError("wrk is not installed (apt-get install wrk)")
    seconds = ctx.pick(3, 2)
    close_seconds = ctx.pick(3, 2)
    paths = ("/api/health", "/api/notes")
    # Every deployment but PM2's 4 crash-looping instances runs from the start, idle while another is
    # measured, so that measurements of Corral and PM2 interleave in time (load from other work on the
    # machine drifts); PM2's 4 instances run alone, started and deleted in their turn. Full runs go back
    # over the Corral/PM2 pairs in the reverse order; the references (uvicorn, reuse_port) run once.
    plan = ["corral4", "pm2_4", "uvicorn4", "corral4_reuse_port", "pm2_1", "corral1"]
    if not ctx.quick:
        plan += ["corral1", "pm2_1", "pm2_4", "corral4"]
    instances = {
        "corral4": 4,
        "pm2_4": 4,
        "uvicorn4": 4,
        "corral4_reuse_port": 4,
        "pm2_1": 1,
        "corral1": 1,
    }
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-webapp-", dir="/tmp"))
    db_url = f"sqlite:///{tmp / 'webapp.db'}"
    logs = tmp / "logs"
    logs.mkdir()
    ports = dict(zip(instances, _distinct_ports(len(instances)), strict=True))
    rps: dict[str, dict[str, list[float]]] = {}
    serving: dict[str, int] = {}
    restarts: dict[str, int] = {}
    states: dict[str, str] = {}
    dcpu: dict[str, list[float]] = {}
    spread: dict[str, list[list[int]]] = {}

    def measure(key: str, daemon: int | None) -> None:
        port = ports[key]
        run_wrk(port, "/api/notes", 32, 1.0)
        first = key not in rps
        got = rps.setdefault(key, {})
        cpu0 = proc_stat_cpu(daemon) if daemon else 0.0
        served = 0
        for path in paths:
            res, conns = run_wrk_spread(port, path, 32, seconds)
            got.setdefault(path, []).append(res.rps)
            served += res.requests
            if conns:
                spread.setdefault(key, []).append(conns)
            if res.failures:
                ctx.note(
                    "webapp",
                    f"{key} {path}: {res.failures} failed requests (non-2xx {res.non2xx}, socket errors "
                    f"{res.connect + res.read + res.write + res.timeout})",
                )
        if daemon:
            # ms per 1,000 requests
            dcpu.setdefault(key, []).append((proc_stat_cpu(daemon) - cpu0) / max(served, 1) * 1e6)
        if first and key in ("corral4", "uvicorn4"):
            got["close"] = [run_wrk(port, "/api/health", 32, close_seconds, close=True).rps]
        serving[key] = min(serving.get(key, 99), len(answering_pids(port, "/api/health")))

    def app_state(tool: Tool, key: str) -> None:
        procs = [p for p in tool.jlist() if p.name == key]
        restarts[key] = max(restarts.get(key, 0), sum(p.restarts for p in procs))
        states[key] = ", ".join(f"{s} ×{c}" for s, c in Counter(p.status for p in procs).items())

    try:
        init_db(db_url, tmp)
        with ctx.both() as tools:
            corral, pm2 = tools
            daemons = {t.label: t.daemon_pid() for t in tools}
            progress(
                "webapp: starting Corral 4, Corral 4 reuse_port, Corral 1, PM2 1, uvicorn --workers 4"
            )
            corral_apps = [
                app
                for key in ("corral4", "corral4_reuse_port", "corral1")
                for app in corral_webapp(
                    ports[key],
                    instances[key],
                    db_url,
                    logs,
                    reuse_port=key.endswith("reuse_port"),
                    name=key,
                )
            ]
            start_file(corral, corral_apps, "webapps", "--env", "production")
            start_file(
                pm2,
                [pm2_webapp(ports["pm2_1"], 1, db_url, logs, name="pm2_1")],
                "webapp1",
                "--env",
                "production",
            )
            argv = [
                VENV_PY,
                "-m",
                "uvicorn",
                "webapp.app:app",
                "--host",
                HOST,
                "--port",
                str(ports["uvicorn4"]),
                "--workers",
                "4",
                "--no-access-log",
            ]
            env = dict(
                os.environ,
                **APP_PY_ENV,
                DATABASE_URL=db_url,
                APP_ENV="production",
                LOG_LEVEL="info",
                SHUTDOWN_TIMEOUT="8",
            )
            with Foreground(argv, env, WEBAPP, logs / "uvicorn.log") as uv:
                corral.wait_online(9, 120)
                for key in ("corral4", "corral4_reuse_port", "corral1", "pm2_1", "uvicorn4"):
                    wait_answers([ports[key]], instances[key], now(), 90)
                uv.remember()
                seed_notes(ports["corral1"])
                for key in plan:
                    progress(f"webapp: {key}")
                    if key == "pm2_4":
                        try:
                            start_file(
                                pm2,
                                [pm2_webapp(ports[key], 4, db_url, logs, name=key)],
                                "webapp4",
                                "--env",
                                "production",
                            )
                            wait_answers([ports[key]], 1, now(), 90)
                            # PM2 has no readiness for Python: let the others start (or fail)
                            time.sleep(2.0)
                            measure(key, daemons["PM2"])
                            app_state(pm2, key)
                        finally:
                            with contextlib.suppress(BenchError):
                                delete_app(pm2, key)
                    elif key.startswith("pm2"):
                        measure(key, daemons["PM2"])
                        app_state(pm2, key)
                    elif key.startswith("corral"):
                        measure(key, daemons["Corral"])
                        app_state(corral, key)
                    else:
                        measure(key, None)
                        restarts[key] = 0
        if "pm2_4" in states:
            err_log = logs / "pm2_4-error.log"
            err = err_log.read_text(errors="replace") if err_log.exists() else ""
            inuse = err.count("address already in use")
            ctx.note(
                "webapp",
                f"PM2, 4 fork instances on one port: {serving.get('pm2_4', 0)} instance answered; after each run the "
                f"processes were {states['pm2_4']} (a crash-looping process shows `online` between its crashes) with "
                f'up to {restarts.get("pm2_4", 0)} restarts ("address already in use" {inuse} times in the error '
                "log). Each failed start imports the app again, which takes CPU from the one instance that serves. "
                f"Corral, 4 instances: {states.get('corral4', '?')}, {restarts.get('corral4', '?')} restarts.",
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def r(key: str, path: str) -> float | None:
        values = rps.get(key, {}).get(path)
        return median(values) if values else None

    def d(key: str) -> float | None:
        return median(dcpu[key]) if dcpu.get(key) else None

    rows: list[Row] = []
    for path in paths:
        rows += [
            Row(
                f"`{path}` requests/s, 4 instances",
                "req/s",
                r("corral4", path),
                r("pm2_4", path),
                better="higher",
                target=1.3,
                note="PM2: 4 fork instances told to bind one port",
            ),
            Row(
                f"`{path}` requests/s, 1 instance",
                "req/s",
                r("corral1", path),
                r("pm2_1", path),
                better="higher",
                target=0.9,
            ),
        ]
    rows += [
        Row(
            "`/api/health` with `Connection: close`, 4 instances vs plain uvicorn",
            "req/s",
            r("corral4", "close"),
            r("uvicorn4", "close"),
            better="higher",
            note="PM2 column: `uvicorn --workers 4`; Corral's access log goes through the daemon, uvicorn's "
            "straight to a file",
        ),
        Row("instances answering, 4 configured", "", serving.get("corral4"), serving.get("pm2_4")),
        Row(
            "restarts during the 4-instance run", "", restarts.get("corral4"), restarts.get("pm2_4")
        ),
        Row(
            "daemon CPU per 1,000 requests, 4 instances",
            "ms",
            d("corral4"),
            d("pm2_4"),
            note="PM2: 1 instance serving",
        ),
        Row(
            "daemon CPU per 1,000 requests, 1 instance",
            "ms",
            d("corral1"),
            d("pm2_1"),
        ),
    ]
    for path in paths:
        rows.append(
            Row(
                f"`{path}` requests/s, 4 instances, Corral with `reuse_port = true`",
                "req/s",
                r("corral4_reuse_port", path),
                r("pm2_4", path),
                better="higher",
                note="one SO_REUSEPORT socket per instance; PM2: 4 fork instances, one port",
            )
        )
    for path in paths:
        rows.append(
            Row(
                f"`{path}` keep-alive requests/s, 4 instances vs plain uvicorn",
                "req/s",
                r("corral4", path),
                r("uvicorn4", path),
                better="higher",
                note="PM2 column: `uvicorn --workers 4`, which loses TCP_NODELAY (see below)",
            )
        )
    if spread:
        ctx.note(
            "webapp",
            "How wrk's 32 keep-alive connections were spread over the serving processes (`ss -tnp` halfway "
            "through each measurement; /api/health, /api/notes, per round): "
            + "; ".join(f"{k} {' '.join(str(c) for c in v)}" for k, v in spread.items())
            + ". A keep-alive connection stays with the instance that accepted it, and on a shared socket "
            "an instance that wakes up accepts every pending connection at once (asyncio's accept loop): a burst "
            "of new connections can land on one or two instances (see bench/analysis/cluster.md).",
        )
    for key in ("corral4", "corral4_reuse_port", "corral1", "pm2_4", "pm2_1", "uvicorn4"):
        if key in rps:
            ctx.note(
                "webapp",
                f"{key}: "
                + ", ".join(
                    f"{'`/api/health` Connection: close' if p == 'close' else p} "
                    + " and ".join(f"{x:,.0f}/s" for x in v)
                    for p, v in rps[key].items()
                ),
            )
    ctx.note(
        "webapp",
        "Plain `uvicorn --workers 4` binds the socket in its supervisor without `IPPROTO_TCP`, so asyncio leaves "
        "Nagle's algorithm on for every connection and each keep-alive response after the first waits ~40 ms for "
        "the client's delayed ACK (Kludex/uvicorn#3149): its keep-alive figures measure that, not the app. "
        "`serve.py` builds the inherited socket with `socket.socket(fileno=fd)` and is not affected; the "
        "`Connection: close` row compares the two without it.",
    )
    return point_to_analysis(ctx, "webapp", rows)
