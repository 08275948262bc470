"""``corral-runtime`` vs ``pm2-runtime`` starting the web app's production configuration until all instances answer.

Registered with bench/run.py (its EXTENSIONS); shared helpers in cluster_support.py.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import (
    REPO,
    BenchError,
    Corral,
    median,
    now,
    proc_stat_cpu,
)
from run import Ctx, Row, benchmark

sys.path.insert(0, str(REPO))
from cluster_support import (
    APP_PY_ENV,
    PM2_RUNTIME,
    VENV_PY,
    WEBAPP,
    Foreground,
    corral_runtime_argv,
    corral_webapp,
    dump_apps_toml,
    free_port,
    init_db,
    pm2_webapp,
    point_to_analysis,
    wait_answers,
    warm_apps,
)

# ---------------------------------------------------------------- 4. runtime start


@benchmark(
    "runtime_start",
    "Container start: runtime until 4 instances answer",
    "`corral-runtime ecosystem.toml --only webapp --env production` (a temporary copy of examples/webapp's "
    "ecosystem.toml: free port, cwd examples/webapp, logs and a fresh SQLite database in a temporary folder; "
    "cluster mode, 4 instances on one shared socket, `wait_ready`) vs `pm2-runtime ecosystem.json --env "
    'production` with the same Python app as PM2 runs it: fork mode, 4 instances, `increment_var = "PORT"` '
    "(4 ports), same interpreter and settings; as PM2 has no dependencies, its command runs the app's one-shot "
    "`migrate.py` first (`sh -c 'python migrate.py && exec pm2-runtime ...'`), as corral-runtime runs the "
    "`migrate` app the web app depends on. From launching the runtime until `GET /api/health` has "
    "answered 200 from 4 different pids (8 concurrent pollers, new connection per request; for PM2, from each "
    "of the 4 ports). Trials alternate between the tools (Corral, PM2, PM2, Corral); median. Also: the first "
    "200; the CPU time (utime+stime) of the runtime process itself at that moment, which does not move with "
    "other load on the machine; and, in the first Corral trial, when `corral healthcheck` (polled from then "
    "on) first exits 0. A poller whose answer came from an instance already seen waits 50 ms before the next "
    "request (5 ms otherwise, 10 ms after a refusal), so that polling the shared socket does not load the "
    "instances still starting.",
)
def bench_runtime_start(ctx: Ctx) -> list[Row]:
    warm_apps()
    trials = ctx.pick(4, 1)
    keys = ("all", "first", "rcpu")
    res: dict[str, dict[str, list[float]]] = {
        lbl: {k: [] for k in keys} for lbl in ("Corral", "PM2")
    }
    t_hc: list[float] = []
    for i in range(trials):
        order = ["Corral", "PM2"] if i % 2 == 0 else ["PM2", "Corral"]
        for label in order:
            out = _runtime_trial(label, healthcheck=label == "Corral" and not t_hc)
            for k in keys:
                res[label][k].append(out[k])
            if out.get("hc") is not None:
                t_hc.append(out["hc"])
    for label in ("Corral", "PM2"):
        r = res[label]
        ctx.note(
            "runtime_start",
            f"{label}: launch → 4 answered (s): "
            + ", ".join(f"{t:.2f}" for t in r["all"])
            + "; first answer (s): "
            + ", ".join(f"{t:.2f}" for t in r["first"])
            + "; runtime CPU (s): "
            + ", ".join(f"{t:.2f}" for t in r["rcpu"]),
        )
    if t_hc:
        ctx.note(
            "runtime_start",
            f'Corral: launch → `corral healthcheck` exits 0: {t_hc[0]:.2f} s. Until then it answers "health '
            'starting": the app\'s `[apps.health]` probe (`interval = "10s"`, `start_period = "10s"`) has '
            "not run yet.",
        )
    c, p = res["Corral"], res["PM2"]
    rows = [
        Row(
            "launch → all 4 instances answered `/api/health`",
            "s",
            median(c["all"]),
            median(p["all"]),
            target=1.0,
        ),
        Row("launch → first answer", "s", median(c["first"]), median(p["first"])),
        Row(
            "CPU of the runtime process until all 4 answered",
            "s",
            median(c["rcpu"]),
            median(p["rcpu"]),
        ),
        Row(
            "launch → `corral healthcheck` exits 0",
            "s",
            t_hc[0] if t_hc else None,
            None,
            note="first trial; PM2 has no equivalent",
        ),
    ]
    return point_to_analysis(ctx, "runtime_start", rows)


def _runtime_trial(label: str, healthcheck: bool = False) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-cluster-rt-{label.lower()}-", dir="/tmp"))
    try:
        logs = tmp / "logs"
        logs.mkdir()
        home = tmp / "home"
        home.mkdir()
        db_url = f"sqlite:///{tmp / 'webapp.db'}"
        init_db(db_url, tmp)
        env = {k: v for k, v in os.environ.items() if k not in ("CORRAL_HOME", "PM2_HOME")}
        env["NO_COLOR"] = "1"
        if label == "Corral":
            port = free_port()
            eco = tmp / "ecosystem.toml"
            eco.write_text(dump_apps_toml(corral_webapp(port, 4, db_url, logs)))
            env["CORRAL_HOME"] = str(home)
            env.update(Corral.python_env())
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            argv = [*corral_runtime_argv(), str(eco), "--only", "webapp", "--env", "production"]
            ports = [port]
        else:
            port = free_port(4)
            eco = tmp / "ecosystem.json"
            eco.write_text(
                json.dumps({"apps": [pm2_webapp(port, 4, db_url, logs, increment=True)]}, indent=2)
            )
            env["PM2_HOME"] = str(home)
            # PM2 has no dependencies: a PM2 image runs the one-shot migration in its command,
            # before pm2-runtime, as Corral runs `migrate` before the web instances (depends_on)
            env.update(APP_PY_ENV, DATABASE_URL=db_url)
            migrate = f"cd {shlex.quote(str(WEBAPP))} && {shlex.quote(VENV_PY)} migrate.py"
            argv = ["sh", "-c", f"{migrate} && exec {shlex.quote(str(PM2_RUNTIME))} {shlex.quote(str(eco))} --env production"]
            ports = [port + k for k in range(4)]
        out: dict[str, Any] = {}
        with Foreground(argv, env, tmp, tmp / "runtime.log") as fg:
            try:
                ans = wait_answers(
                    ports,
                    4,
                    fg.t_launch,
                    90,
                    alive=lambda: fg.proc is not None and fg.proc.poll() is None,
                )
            except BenchError as e:
                tail = (tmp / "runtime.log").read_text(errors="replace")[-800:]
                raise BenchError(f"{label}: {e}; runtime output: {tail}") from e
            out["rcpu"] = proc_stat_cpu(fg.pid)
            out["all"] = ans.t_all
            out["first"] = ans.t_first
            fg.remember()
            if healthcheck:
                cli = [*Corral().argv(), "healthcheck"]
                deadline = now() + 30
                while now() < deadline:
                    rc = subprocess.run(
                        cli,
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        timeout=30,
                        check=False,
                    ).returncode
                    if rc == 0:
                        out["hc"] = now() - fg.t_launch
                        break
                    time.sleep(0.05)
            fg.remember()
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
