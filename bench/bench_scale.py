"""Scale: many apps from one file, and one app with many instances.

Registered with bench/run.py (its EXTENSIONS). For each shape, one tool at a time with a fresh
daemon (600 idle interpreters at once would measure the machine, not the managers): from issuing
`start FILE` until a `jlist` shows every instance `online`, then `ls` latency and the daemon's RSS
at that scale.
"""

from __future__ import annotations

import shutil
import subprocess
import time

from harness import AppSpec, median, now, proc_rss, proc_stat_cpu
from run import Ctx, Row, benchmark, idle_app


def _trial(ctx: Ctx, label: str, apps: list[AppSpec], total: int, ls_runs: int) -> dict[str, float]:
    tool = next(t for t in ctx.tools() if t.label == label)
    with tool.session():
        pid = tool.start_daemon()
        cpu0 = proc_stat_cpu(pid)
        t0 = now()
        tool.start_ecosystem(apps)
        returned = now() - t0
        tool.wait_online(total, 300)
        online = now() - t0
        cpu = proc_stat_cpu(pid) - cpu0
        time.sleep(ctx.pick(2.0, 0.5))
        times = []
        for _ in range(ls_runs):
            t1 = now()
            tool.cli("ls", stdout=subprocess.DEVNULL)
            times.append(now() - t1)
        return {
            "online": online,
            "returned": returned,
            "cpu": cpu,
            "ls": median(times),
            "rss": proc_rss(pid) / 2**20,
        }


def _shape(
    ctx: Ctx, what: str, apps: list[AppSpec], total: int, target: float | None = 0.6
) -> tuple[list[Row], str]:
    trials = ctx.pick(2, 1)
    ls_runs = ctx.pick(7, 3)
    got: dict[str, list[dict[str, float]]] = {"Corral": [], "PM2": []}
    for i in range(trials):
        for label in ("Corral", "PM2") if i % 2 == 0 else ("PM2", "Corral"):
            got[label].append(_trial(ctx, label, apps, total, ls_runs))

    def med(label: str, key: str) -> float:
        return median([t[key] for t in got[label]])

    rows = [
        Row(f"{what}: start → all online", "s", med("Corral", "online"), med("PM2", "online"), target=target),
        Row(f"{what}: `start` returns", "s", med("Corral", "returned"), med("PM2", "returned")),
        Row(f"{what}: daemon CPU, start → all online", "s", med("Corral", "cpu"), med("PM2", "cpu")),
        Row(f"{what}: `ls` latency (median of {ls_runs})", "s", med("Corral", "ls"), med("PM2", "ls")),
        Row(f"{what}: daemon RSS", "MiB", med("Corral", "rss"), med("PM2", "rss")),
    ]
    note = f"{what}: " + "; ".join(
        f"{label} all online after " + ", ".join(f"{t['online']:.2f}" for t in got[label]) + " s"
        for label in ("Corral", "PM2")
    )
    return rows, note


@benchmark(
    "scale",
    "Scale: 200 apps from one file, one app with 300 instances",
    "Two shapes, each from an ecosystem file on a fresh daemon, one tool at a time, trials alternating the order: "
    "(a) 200 one-instance apps of `idle.py`; (b) one app of `idle.py` with 300 instances (fork mode for both). "
    "From issuing `start FILE` until a `jlist` shows every instance `online` (polled back to back once `start` "
    "returns); when `start` returns; the daemon's CPU over that time; then the median wall time of `ls` and the "
    "daemon's RSS at that scale. The floor is the interpreters' own start: 200–300 Python processes on 2 cores. "
    "(c) 200 one-instance apps of `/bin/sleep 3600` (`interpreter = \"none\"` for both): a native program that "
    "needs almost no CPU to start, so the time is the managers' own (spawning, bookkeeping, answering `jlist`).",
)
def bench_scale(ctx: Ctx) -> list[Row]:
    napps = ctx.pick(200, 40)
    ninst = ctx.pick(300, 60)
    rows_a, note_a = _shape(ctx, f"{napps} apps", [idle_app(ctx, f"idle-{i}") for i in range(napps)], napps)
    rows_b, note_b = _shape(ctx, f"1 app × {ninst} instances", [idle_app(ctx, "wide", ninst)], ninst)
    native = [native_app(f"sleep-{i}") for i in range(napps)]
    rows_c, note_c = _shape(ctx, f"{napps} native apps", native, napps, target=None)
    for note in (note_a, note_b, note_c):
        ctx.note("scale", note)
    return rows_a + rows_b + rows_c


def native_app(name: str) -> AppSpec:
    """`sleep 3600` run directly: an app whose start costs the machine almost nothing."""
    return AppSpec(name=name, script=shutil.which("sleep") or "/bin/sleep", args=["3600"], interpreter="none")
