"""Corral and PM2 side by side: one command, one report.

    .venv/bin/python bench/run.py [--quick] [--only NAME[,NAME]] [--write docs/benchmarks.md]

Installs PM2 with npm into bench/.work/pm2 (once), gives each tool a fresh
temporary home per benchmark, runs the same apps (bench/apps/) under both,
and prints (or writes) a Markdown report.  See bench/README.md.

Adding a benchmark: write a function ``f(ctx) -> list[Row]`` decorated with
``@benchmark(name, title, what)``; it is run in registration order, and its
rows become one table.  Extra explanations go in ``ctx.notes[name]``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shlex
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    APPS,
    PM2,
    REPO,
    WORK,
    AppSpec,
    ChildWatcher,
    Corral,
    Tool,
    corral_snapshot,
    ensure_pm2,
    median,
    now,
    proc_rss,
    proc_sched_cpu,
    proc_stat_cpu,
    real_python,
    wait_until,
)

# ---------------------------------------------------------------- results


@dataclass
class Row:
    """One measured quantity for both tools.

    ``better`` says which way is good ("lower" or "higher"); ``target`` is the
    Corral/PM2 ratio to meet (<= for lower, >= for higher), or None for an
    informational row.  ``corral_target`` is an absolute bound on Corral's own
    figure (e.g. 0 lines lost).
    """

    metric: str
    unit: str
    corral: float | None
    pm2: float | None
    better: str = "lower"
    target: float | None = None
    corral_target: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.corral is None or self.pm2 is None or self.pm2 == 0:
            return None
        return self.corral / self.pm2

    @property
    def met(self) -> bool | None:
        checks: list[bool] = []
        if self.target is not None:
            r = self.ratio
            if r is None:
                return False
            checks.append(r <= self.target if self.better == "lower" else r >= self.target)
        if self.corral_target is not None:
            if self.corral is None:
                return False
            checks.append(self.corral <= self.corral_target)
        return all(checks) if checks else None

    def target_text(self) -> str:
        parts = []
        if self.target is not None:
            parts.append(f"{'≤' if self.better == 'lower' else '≥'} {self.target:g}× PM2")
        if self.corral_target is not None:
            parts.append(f"Corral ≤ {self.corral_target:g}")
        return ", ".join(parts) or "—"


@dataclass
class Result:
    name: str
    title: str
    what: str
    rows: list[Row] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    load: str = (
        ""  # /proc/loadavg (1 min) before and after: other work on the machine skews figures
    )


@dataclass
class Benchmark:
    name: str
    title: str
    what: str
    func: Callable[[Ctx], list[Row]]


REGISTRY: list[Benchmark] = []


def benchmark(
    name: str, title: str, what: str
) -> Callable[[Callable[[Ctx], list[Row]]], Callable[[Ctx], list[Row]]]:
    def register(func: Callable[[Ctx], list[Row]]) -> Callable[[Ctx], list[Row]]:
        REGISTRY.append(Benchmark(name, title, what, func))
        return func

    return register


@dataclass
class Ctx:
    quick: bool
    python: str
    notes: dict[str, list[str]] = field(default_factory=dict)

    def note(self, bench: str, text: str) -> None:
        self.notes.setdefault(bench, []).append(text)

    def tools(self) -> list[Tool]:
        return [Corral(), PM2()]

    def pick(self, full: Any, quick: Any) -> Any:
        return quick if self.quick else full

    @contextlib.contextmanager
    def both(self) -> Iterator[list[Tool]]:
        """Both tools at once, each in a fresh session with its daemon running (killed on the way out)."""
        with contextlib.ExitStack() as stack:
            tools = [stack.enter_context(t.session()) for t in self.tools()]
            for t in tools:
                t.start_daemon()
            yield tools


def idle_app(ctx: Ctx, name: str, instances: int = 1) -> AppSpec:
    return AppSpec(
        name=name, script=str(APPS / "idle.py"), instances=instances, interpreter=ctx.python
    )


def progress(msg: str) -> None:
    sys.stderr.write(f"bench: {msg}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------- 1. ls latency


@benchmark(
    "ls",
    "`ls` latency with 10 apps",
    "Median wall time of `corral ls` and `pm2 ls` (a subprocess each, output to /dev/null) with 10 idle apps "
    "online; 2 warm-up calls per session are not counted. One tool at a time (another manager's apps would add "
    "to the processes Corral scans), in blocks Corral, PM2, PM2, Corral, each with a fresh daemon, so that "
    "drifting background load on the machine hits both alike.",
)
def bench_ls(ctx: Ctx) -> list[Row]:
    runs = ctx.pick(20, 6)
    blocks = 2
    labels = ("Corral", "PM2")
    ls: dict[str, list[float]] = {k: [] for k in labels}
    ls_cpu: dict[str, list[float]] = {k: [] for k in labels}
    d_cpu: dict[str, list[float]] = {k: [] for k in labels}
    jl: dict[str, list[float]] = {k: [] for k in labels}
    ls50: dict[str, list[float]] = {k: [] for k in labels}
    d_cpu50: dict[str, list[float]] = {k: [] for k in labels}
    for block in range(blocks):
        tools = ctx.tools()
        for tool in tools if block % 2 == 0 else tools[::-1]:
            with tool.session():
                daemon = tool.start_daemon()
                tool.start_ecosystem([idle_app(ctx, f"idle-{i}") for i in range(10)])
                tool.wait_online(10, 60)
                for _ in range(2):
                    tool.cli("ls", stdout=subprocess.DEVNULL)
                wall, cpu, dcpu = _time_cli(tool, "ls", runs // blocks, daemon)
                ls[tool.label] += wall
                ls_cpu[tool.label] += cpu
                d_cpu[tool.label] += dcpu
                jl[tool.label] += _time_cli(tool, "jlist", runs // blocks, daemon)[0]
                # Scaling, for information: 40 more apps, 50 in all.
                tool.start_ecosystem([idle_app(ctx, f"idle-{i}") for i in range(10, 50)])
                tool.wait_online(50, 60)
                time.sleep(1.0)
                tool.cli("ls", stdout=subprocess.DEVNULL)
                wall, _cpu, dcpu = _time_cli(tool, "ls", max(3, runs // (2 * blocks)), daemon)
                ls50[tool.label] += wall
                d_cpu50[tool.label] += dcpu
    floor = {
        "Corral": _startup_floor([sys.executable, "-c", "pass"], runs),
        "PM2": _startup_floor(["node", "-e", "0"], runs),
    }

    def ms(values: list[float]) -> float:
        return median(values) * 1000

    c, p = ls["Corral"], ls["PM2"]
    ctx.note(
        "ls",
        f"{len(c)} runs each. Corral min/max {min(c) * 1000:.1f}/{max(c) * 1000:.1f} ms; "
        f"PM2 min/max {min(p) * 1000:.1f}/{max(p) * 1000:.1f} ms. "
        "CPU rows: user+sys of the CLI process (getrusage of the child) and of the daemon (/proc/<pid>/stat, "
        "10 ms ticks, averaged over the runs) per call; unlike wall time they do not move with other load on "
        "the machine. The last row is the bare interpreter start (`python -c pass` vs `node -e 0`): the floor "
        "under each CLI.",
    )
    return [
        Row("`ls` median", "ms", ms(ls["Corral"]), ms(ls["PM2"]), target=0.3),
        Row("`ls`: CPU of the CLI process (median)", "ms", ms(ls_cpu["Corral"]), ms(ls_cpu["PM2"])),
        Row(
            "`ls`: CPU of the daemon per call",
            "ms",
            mean(d_cpu["Corral"]) * 1000,
            mean(d_cpu["PM2"]) * 1000,
        ),
        Row("`jlist` median", "ms", ms(jl["Corral"]), ms(jl["PM2"])),
        Row("`ls` median with 50 apps", "ms", ms(ls50["Corral"]), ms(ls50["PM2"])),
        Row(
            "`ls` with 50 apps: CPU of the daemon per call",
            "ms",
            mean(d_cpu50["Corral"]) * 1000,
            mean(d_cpu50["PM2"]) * 1000,
        ),
        Row("interpreter start alone (median)", "ms", floor["Corral"], floor["PM2"]),
    ]


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _time_cli(
    tool: Tool, verb: str, runs: int, daemon: int
) -> tuple[list[float], list[float], list[float]]:
    """Wall times, CLI CPU times and the daemon's CPU (total / runs, repeated) of ``runs`` calls."""
    wall, cpu = [], []
    d0 = proc_stat_cpu(daemon)
    for _ in range(runs):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = now()
        tool.cli(verb, stdout=subprocess.DEVNULL)
        wall.append(now() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    per_call = (proc_stat_cpu(daemon) - d0) / max(runs, 1)
    return wall, cpu, [per_call] * runs


def _startup_floor(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = now()
        subprocess.run(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30, check=False
        )
        times.append(now() - t0)
    return median(times) * 1000


# ---------------------------------------------------------------- 2. daemon RSS


@benchmark(
    "rss",
    "Daemon RSS, idle, with 0, 10 and 50 apps",
    "VmRSS of the daemon process alone (Corral: pid in `$CORRAL_HOME/corral.pid`; PM2: `$PM2_HOME/pm2.pid`) "
    "after N separate one-instance idle apps are all `online` (polled with `jlist`, 60 s deadline) and a settle "
    "period; median of 3 samples 2 s apart. A fresh daemon for each N; one `jlist` is always made, so both "
    "daemons have served a listing. For information, the daemon's CPU (all its threads, from "
    "/proc/<pid>/task/*/schedstat, in ns) over those 6 s of idling; then, with 50 apps that have "
    '`max_memory_restart = "1G"` (so Corral samples every tree every second), the daemon\'s CPU over 12 s.',
)
def bench_rss(ctx: Ctx) -> list[Row]:
    settle = ctx.pick(3.0, 1.0)
    idle_window = ctx.pick(6.0, 1.5)
    rows: list[Row] = []
    idle_rows: list[Row] = []
    for n in (0, 10, 50):
        rss: dict[str, float] = {}
        idle_cpu: dict[str, float] = {}
        for tool in ctx.tools():
            with tool.session():
                pid = tool.start_daemon()
                if n:
                    tool.start_ecosystem([idle_app(ctx, f"idle-{i}") for i in range(n)])
                    tool.wait_online(n, 60)
                else:
                    tool.jlist()
                time.sleep(settle)
                cpu0, t0 = proc_sched_cpu(pid), now()
                samples = []
                for _ in range(3):
                    samples.append(proc_rss(pid))
                    time.sleep(idle_window / 3)
                rss[tool.label] = median(samples) / 2**20
                idle_cpu[tool.label] = (proc_sched_cpu(pid) - cpu0) / (now() - t0) * 100
        rows.append(
            Row(
                f"daemon RSS, {n} apps",
                "MiB",
                rss["Corral"],
                rss["PM2"],
                target=0.5 if n == 50 else None,
            )
        )
        idle_rows.append(
            Row(
                f"daemon CPU while idle, {n} apps",
                "% of a core",
                idle_cpu["Corral"],
                idle_cpu["PM2"],
            )
        )
    # 50 apps sampled every second: with a memory limit Corral samples every tree each second
    # (without one, every 5 s); PM2's worker checks memory every 30 s whatever the setting.
    every_second: dict[str, float] = {}
    window = ctx.pick(12.0, 3.0)
    for tool in ctx.tools():
        with tool.session():
            pid = tool.start_daemon()
            apps = [idle_app(ctx, f"idle-{i}") for i in range(50)]
            for a in apps:
                a.max_memory_restart = "1G"
            tool.start_ecosystem(apps)
            tool.wait_online(50, 60)
            time.sleep(settle)
            cpu0, t0 = proc_sched_cpu(pid), now()
            time.sleep(window)
            every_second[tool.label] = (proc_sched_cpu(pid) - cpu0) / (now() - t0) * 100
    idle_rows.append(
        Row(
            "daemon CPU while idle, 50 apps sampled every second (`max_memory_restart`)",
            "% of a core",
            every_second["Corral"],
            every_second["PM2"],
            corral_target=0.2,
            note="PM2 checks memory every 30 s",
        )
    )
    return rows + idle_rows


# ---------------------------------------------------------------- 3. 20 instances online


@benchmark(
    "start20",
    "Time until 20 instances are online",
    "One app with 20 instances (`start idle.py --name idle20 -i 20`, fork mode for both; PM2 picks fork mode for a "
    "Python interpreter) on an already running daemon: from issuing `start` until a `jlist` shows all 20 `online` "
    "(polled back to back as soon as `start` returns, 60 s deadline). Second row: until all 20 app processes "
    "exist as children of the daemon (read from /proc every 5 ms), i.e. without the CLIs' latency. Both daemons "
    "run side by side, trials alternate between the tools; median over the trials; the app is deleted between "
    "trials.",
)
def bench_start20(ctx: Ctx) -> list[Row]:
    trials = ctx.pick(5, 1)
    t_jl: dict[str, list[float]] = {"Corral": [], "PM2": []}
    t_sp: dict[str, list[float]] = {"Corral": [], "PM2": []}
    t_ret: dict[str, list[float]] = {"Corral": [], "PM2": []}
    cpu: dict[str, list[float]] = {"Corral": [], "PM2": []}
    with ctx.both() as tools:
        daemons = {t.label: t.daemon_pid() for t in tools}
        for i in range(trials):
            for tool in tools if i % 2 == 0 else tools[::-1]:
                spec = idle_app(ctx, "idle20", 20)
                with ChildWatcher(daemons[tool.label], "idle.py") as watch:
                    cpu0 = proc_stat_cpu(daemons[tool.label])
                    t0 = now()
                    tool.start_script(spec)
                    t_ret[tool.label].append(now() - t0)
                    tool.wait_online(20, 60, name="idle20")
                    t_jl[tool.label].append(now() - t0)
                    cpu[tool.label].append(proc_stat_cpu(daemons[tool.label]) - cpu0)
                    wait_until(lambda w=watch: w.time_of_nth(20), 10, what="20 children in /proc")
                    t_sp[tool.label].append((watch.time_of_nth(20) or t0) - t0)
                tool.cli("delete", "all", stdout=subprocess.DEVNULL)
                wait_until(lambda t=tool: not t.jlist(), 30, what="empty process list")
                time.sleep(0.5)
    for label in ("Corral", "PM2"):
        ctx.note(
            "start20", f"{label}: each trial (s): " + ", ".join(f"{t:.3f}" for t in t_jl[label])
        )
    ctx.note(
        "start20",
        f"{trials} trial(s) per tool. `corral start` answers once the daemon has spawned the instances "
        "and prints the table (pids, `online`); `pm2 start` answers once it has launched them.",
    )
    return [
        Row(
            "start → `jlist` shows 20 online",
            "s",
            median(t_jl["Corral"]),
            median(t_jl["PM2"]),
            target=0.45,
        ),
        Row("start → 20 processes exist (/proc)", "s", median(t_sp["Corral"]), median(t_sp["PM2"])),
        Row("`start` command returns", "s", median(t_ret["Corral"]), median(t_ret["PM2"])),
        Row(
            "daemon CPU from `start` to all online (incl. the `jlist` polls)",
            "s",
            median(cpu["Corral"]),
            median(cpu["PM2"]),
        ),
    ]


# ---------------------------------------------------------------- 4. SIGKILL recovery


@benchmark(
    "sigkill",
    "SIGKILL of an instance until its replacement is online",
    "One idle app per tool. `kill -9` its pid, then poll `jlist` back to back until the app is `online` with a "
    "new pid. Second row: until the replacement process exists as a child of the daemon (/proc, every 5 ms), "
    "without the CLIs' latency. Both daemons run side by side, trials alternate; median over the trials; 1.5 s "
    "between trials so each restart counts as stable (min_uptime is 1 s for both).",
)
def bench_sigkill(ctx: Ctx) -> list[Row]:
    trials = ctx.pick(5, 3)
    t_jl: dict[str, list[float]] = {"Corral": [], "PM2": []}
    t_sp: dict[str, list[float]] = {"Corral": [], "PM2": []}
    restarts: dict[str, float] = {}
    with ctx.both() as tools:
        daemons = {t.label: t.daemon_pid() for t in tools}
        for tool in tools:
            tool.start_script(idle_app(ctx, "victim"))
            tool.wait_online(1, 30, name="victim")
        for i in range(trials):
            time.sleep(1.5)
            for tool in tools if i % 2 == 0 else tools[::-1]:
                old = tool.wait_online(1, 30, name="victim")[0].pid
                assert old
                with ChildWatcher(daemons[tool.label], "idle.py") as watch:
                    time.sleep(0.05)  # let the watcher see the current child first
                    t0 = now()
                    os.kill(old, signal.SIGKILL)

                    def replaced(t: Tool = tool, old_pid: int = old) -> bool:
                        return any(
                            p.name == "victim"
                            and p.status == "online"
                            and p.pid
                            and p.pid != old_pid
                            for p in t.jlist()
                        )

                    wait_until(replaced, 30, interval=0.005, what="a new online pid")
                    t_jl[tool.label].append(now() - t0)
                    wait_until(
                        lambda w=watch, o=old: w.time_of_nth(1, exclude={o}),
                        10,
                        what="the new child in /proc",
                    )
                    t_sp[tool.label].append((watch.time_of_nth(1, exclude={old}) or t0) - t0)
        for tool in tools:
            restarts[tool.label] = float(
                next(p.restarts for p in tool.jlist() if p.name == "victim")
            )
    for label in ("Corral", "PM2"):
        ctx.note(
            "sigkill", f"{label}: each trial (s): " + ", ".join(f"{t:.3f}" for t in t_jl[label])
        )
    return [
        Row(
            "kill -9 → `jlist` shows new pid online",
            "s",
            median(t_jl["Corral"]),
            median(t_jl["PM2"]),
            target=0.5,
        ),
        Row(
            "kill -9 → new process exists (/proc)", "s", median(t_sp["Corral"]), median(t_sp["PM2"])
        ),
        Row(
            "restart counter afterwards",
            "",
            restarts["Corral"],
            restarts["PM2"],
            note=f"expected {trials}",
        ),
    ]


# ---------------------------------------------------------------- 5. log throughput


@benchmark(
    "logs",
    "Log throughput",
    "An app (bench/apps/flood.py) makes N numbered lines of 100 bytes in memory, notes the time (CLOCK_MONOTONIC) "
    "in a marker file, writes them all to stdout as fast as the pipe takes them, and exits (`--no-autorestart`; "
    "default log format for both: no timestamps, no prefix). Throughput = N / (time the default out log holds "
    "N×100 bytes − the app's first write); the file size is polled every 2 ms (180 s deadline, or until it stops "
    "growing for 5 s after the app exited). Daemon CPU = utime+stime of the daemon pid from /proc/<pid>/stat, "
    "from just before `start` to the end. Lines lost = N minus distinct well-formed sequence numbers in the file. "
    "Both daemons run side by side, trials alternate; the median trial by throughput is shown, lost lines are "
    "the worst trial.",
)
def bench_logs(ctx: Ctx) -> list[Row]:
    lines = ctx.pick(1_000_000, 100_000)
    trials = ctx.pick(3, 1)
    rows: list[Row] = []
    for label, script, interp in (
        ("Python app (flood.py)", "flood.py", ctx.python),
        ("Node app (flood.js)", "flood.js", "node"),
    ):
        runs: dict[str, list[dict[str, float]]] = {"Corral": [], "PM2": []}
        with ctx.both() as tools:
            daemons = {t.label: t.daemon_pid() for t in tools}
            for i in range(trials):
                for tool in tools if i % 2 == 0 else tools[::-1]:
                    runs[tool.label].append(
                        _flood_once(
                            tool,
                            daemons[tool.label],
                            f"flood{i}",
                            str(APPS / script),
                            interp,
                            lines,
                        )
                    )
        stats: dict[str, dict[str, float]] = {}
        for tool_label, rs in runs.items():
            rs.sort(key=lambda r: r["write_seconds"])
            mid = rs[len(rs) // 2]
            stats[tool_label] = {
                "write": mid["write_seconds"],
                "seconds": mid["seconds"],
                "throughput": lines / mid["write_seconds"],
                "cpu": mid["cpu"],
                "lost": max(r["lost"] for r in rs),
                "dup": max(r["dup"] for r in rs),
                "bad": max(r["bad"] for r in rs),
                "peak": max(r["peak_rss"] for r in rs) / 2**20,
            }
            ctx.note(
                "logs",
                f"{tool_label}, {label}: first write → all in file (s) "
                + ", ".join(f"{r['write_seconds']:.3f}" for r in rs)
                + "; daemon CPU (s) "
                + ", ".join(f"{r['cpu']:.2f}" for r in rs)
                + f"; lost {[r['lost'] for r in rs]}, duplicated {[r['dup'] for r in rs]}, "
                f"malformed {[r['bad'] for r in rs]}",
            )
        c, p = stats["Corral"], stats["PM2"]
        main = label.startswith("Python")
        sfx = "" if main else " — Node app"
        rows += [
            Row(
                f"throughput{sfx}",
                "lines/s",
                c["throughput"],
                p["throughput"],
                better="higher",
                target=2.0 if main else None,
            ),
            Row(f"first write → {lines:,} lines in the file{sfx}", "s", c["write"], p["write"]),
            Row(
                f"`start` issued → {lines:,} lines in the file{sfx}",
                "s",
                c["seconds"],
                p["seconds"],
            ),
            Row(f"daemon CPU{sfx}", "s", c["cpu"], p["cpu"]),
            Row(
                f"lines per daemon CPU-second{sfx}",
                "lines/s",
                lines / c["cpu"] if c["cpu"] else None,
                lines / p["cpu"] if p["cpu"] else None,
                better="higher",
            ),
            Row(
                f"lines lost (worst trial){sfx}",
                "lines",
                c["lost"],
                p["lost"],
                corral_target=0 if main else None,
            ),
            Row(
                f"duplicated + malformed lines{sfx}",
                "lines",
                c["dup"] + c["bad"],
                p["dup"] + p["bad"],
            ),
            Row(f"peak daemon RSS during the flood{sfx}", "MiB", c["peak"], p["peak"]),
        ]
    ctx.note(
        "logs",
        f"N = {lines:,} lines per trial, {trials} trial(s) per tool. The Node rows run bench/apps/flood.js (the same "
        "bytes) under both tools, in PM2's own runtime; in fork mode PM2 reads a Node app's stdout through the same "
        "pipes as a Python app's (only cluster mode, Node only, would route logs over IPC). Daemon CPU is counted "
        "in clock ticks (10 ms).",
    )
    return rows


def _flood_once(
    tool: Tool, daemon: int, name: str, script: str, interp: str, lines: int
) -> dict[str, float]:
    assert tool.home is not None
    out_log = tool.default_out_log(name)
    marker = tool.home / f"{name}.t0"
    want = lines * 100
    cpu0 = proc_stat_cpu(daemon)
    peak = proc_rss(daemon)
    t0 = time.monotonic()
    tool.start_script(
        AppSpec(
            name=name,
            script=script,
            args=[str(lines), str(marker)],
            interpreter=interp,
            autorestart=False,
        )
    )
    deadline = t0 + 180
    last_size, last_change = -1, time.monotonic()
    exited_at: float | None = None
    next_status = time.monotonic() + 1.0
    while True:
        size = out_log.stat().st_size if out_log.exists() else 0
        t = time.monotonic()
        peak = max(peak, proc_rss(daemon))
        if size >= want:
            break
        if size != last_size:
            last_size, last_change = size, t
        # Only once the file has stopped growing for a second: has the app exited? (jlist costs
        # the daemon CPU, so it is not called while the flood is on.)
        if t - last_change > 1.0 and t > next_status:
            next_status = t + 1.0
            if exited_at is None and all(
                p.status != "online" for p in tool.jlist() if p.name == name
            ):
                exited_at = t
        if exited_at is not None and t - last_change > 5:
            break
        if t > deadline:
            break
        time.sleep(0.002)
    t_end = time.monotonic()
    cpu = proc_stat_cpu(daemon) - cpu0
    try:
        first_write = float(marker.read_text())
    except (OSError, ValueError):
        first_write = t0
    lost, dup, bad = count_lines(out_log, lines)
    tool.cli("delete", name, stdout=subprocess.DEVNULL)
    for p in out_log.parent.glob(f"{name}-*.log"):
        p.unlink()
    return {
        "seconds": t_end - t0,
        "write_seconds": t_end - first_write,
        "cpu": cpu,
        "lost": lost,
        "dup": dup,
        "bad": bad,
        "peak_rss": peak,
    }


def count_lines(path: Path, expected: int) -> tuple[int, int, int]:
    """(lost, duplicated, malformed) among the numbered 100-byte lines of a log file."""
    seen = bytearray(expected)
    dup = bad = 0
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return expected, 0, 0
    for line in data.split(b"\n"):
        if not line:
            continue
        if len(line) != 99 or line[10:11] != b" " or not line[:10].isdigit():
            bad += 1
            continue
        i = int(line[:10])
        if i >= expected:
            bad += 1
        elif seen[i]:
            dup += 1
        else:
            seen[i] = 1
    return expected - sum(seen), dup, bad


# ---------------------------------------------------------------- report


def fmt(value: float | None, unit: str) -> str:
    if value is None or value != value:
        return "—"
    if unit == "lines/s":
        return f"{value:,.0f}"
    if unit in ("lines", ""):
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if unit == "s" else f"{value:.2f}"


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "?"


def machine_info() -> dict[str, str]:
    info: dict[str, str] = {}
    info["cores"] = str(os.cpu_count())
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?"
            )
        info["cpu"] = model
    except OSError:
        info["cpu"] = "?"
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(ln for ln in f if ln.startswith("MemTotal")).split()[1])
        info["ram"] = f"{kb / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        info["ram"] = "?"
    info["kernel"] = platform.release()
    info["python"] = f"{platform.python_version()} ({real_python()})"
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    info["node"] = node.stdout.strip()
    info["pm2"] = PM2().version()
    info["corral"] = Corral().version()
    git = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    info["commit"] = git.stdout.strip() or "?"
    return info


def render(
    results: list[Result],
    info: dict[str, str],
    command: str,
    quick: bool,
    notes: dict[str, list[str]],
    started: dt.datetime,
    elapsed: float,
) -> str:
    out: list[str] = []
    out.append("# Benchmarks: Corral vs PM2\n")
    out.append(
        "Generated by `bench/run.py` (see `bench/README.md`). Both tools run in the same run, one after the "
        "other, on the same machine, with the same apps (`bench/apps/`), each with a fresh temporary "
        "`CORRAL_HOME` / `PM2_HOME`. Python apps run under both tools with the same interpreter binary "
        f"(`--interpreter {info['python'].split('(')[-1].rstrip(')')}`).\n"
    )
    if quick:
        out.append(
            "> **Quick run** (`--quick`): reduced counts, a smoke check, not the reference figures.\n"
        )
    out.append(f"- Date: {started.strftime('%Y-%m-%d %H:%M %Z').strip()} (took {elapsed:.0f} s)")
    out.append(f"- Command: `{command}`")
    out.append(
        f"- Machine: {info['cores']} cores ({info['cpu']}), {info['ram']} RAM, Linux {info['kernel']}"
    )
    out.append(
        f"- Python {info['python']}, Node {info['node']}, PM2 {info['pm2']}, Corral {info['corral']} from the {info['corral_source']}; repository HEAD {info['commit']}"
    )
    out.append("")
    out.append("## Summary\n")
    out.append("| benchmark | measure | Corral | PM2 | Corral/PM2 | target | met |")
    out.append("|---|---|---:|---:|---:|---|---|")
    for r in results:
        if r.error:
            out.append(f"| {r.title} | — | — | — | — | — | error |")
        for row in r.rows:
            if row.met is None:
                continue
            out.append(
                f"| {r.title} | {row.metric} | {fmt(row.corral, row.unit)} {row.unit} | {fmt(row.pm2, row.unit)} {row.unit} | "
                f"{_ratio(row)} | {row.target_text()} | {_met(row)} |"
            )
    out.append("")
    for r in results:
        out.append(f"## {r.title}\n")
        out.append(f"{r.what}\n")
        if r.error:
            out.append(f"**Failed:** `{r.error}`\n")
        if r.rows:
            out.append("| measure | Corral | PM2 | Corral/PM2 | target | met |")
            out.append("|---|---:|---:|---:|---|---|")
            for row in r.rows:
                unit = f" {row.unit}" if row.unit else ""
                note = f" ({row.note})" if row.note else ""
                out.append(
                    f"| {row.metric}{note} | {fmt(row.corral, row.unit)}{unit} | {fmt(row.pm2, row.unit)}{unit} | "
                    f"{_ratio(row)} | {row.target_text()} | {_met(row)} |"
                )
            out.append("")
        extra = list(notes.get(r.name, []))
        if r.load:
            extra.append(
                f"Took {r.seconds:.0f} s; load average (1 min) {r.load} on {info['cores']} cores."
            )
        for n in extra:
            out.append(f"- {n}")
        if extra:
            out.append("")
        # A hand-written "why / what to do" note, shown while the benchmark misses its target.
        analysis = Path(__file__).resolve().parent / "analysis" / f"{r.name}.md"
        missed = r.error is not None or any(row.met is False for row in r.rows)
        if missed and analysis.exists():
            out.append(analysis.read_text().rstrip() + "\n")
    return "\n".join(out).rstrip() + "\n"


def _ratio(row: Row) -> str:
    r = row.ratio
    return "—" if r is None else f"{r:.2f}×"


def _met(row: Row) -> str:
    m = row.met
    return "—" if m is None else ("**yes**" if m else "**no**")



KEEP_MARKER = "<!-- Sections below this line are measured by their own scripts; bench/run.py --write keeps them. -->"


def write_report(path: Path, report: str) -> None:
    """Write the report, keeping what stands below KEEP_MARKER in the file it replaces."""
    kept = ""
    if path.exists():
        old = path.read_text()
        if KEEP_MARKER in old:
            kept = old[old.index(KEEP_MARKER) :]
    path.write_text(report.rstrip("\n") + ("\n\n" + kept if kept else "\n"))


def render_saved(path: Path) -> str:
    raw = json.loads(path.read_text())
    fields = {f for f in Row.__dataclass_fields__}
    results = []
    for r in raw["results"]:
        rows = [Row(**{k: v for k, v in row.items() if k in fields}) for row in r["rows"]]
        results.append(
            Result(
                r["name"],
                r["title"],
                r["what"],
                rows,
                r.get("error"),
                r.get("seconds", 0.0),
                r.get("load", ""),
            )
        )
    return render(
        results,
        raw["machine"],
        raw["command"],
        raw["quick"],
        raw["notes"],
        dt.datetime.fromisoformat(raw["started"]),
        raw["elapsed"],
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Benchmarks: Corral vs PM2, side by side.")
    ap.add_argument("--quick", action="store_true", help="smaller counts: a smoke check")
    ap.add_argument(
        "--only", help="comma-separated benchmark names: " + ", ".join(b.name for b in REGISTRY)
    )
    ap.add_argument(
        "--write", metavar="PATH", help="write the Markdown report there (default: print it)"
    )
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    ap.add_argument(
        "--corral-ref",
        metavar="REF",
        help="benchmark Corral's src/ at this git commit (extracted with git archive) instead of the working tree",
    )
    ap.add_argument(
        "--pm2",
        default="pm2",
        help="npm spec to install when bench/.work/pm2 is empty (default: pm2)",
    )
    ap.add_argument(
        "--render",
        metavar="JSON",
        help="run nothing: rebuild the report from a saved raw file (e.g. bench/.work/last-results.json), "
        "picking up edits to bench/analysis/*.md",
    )
    ns = ap.parse_args(argv)
    if ns.render:
        report = render_saved(Path(ns.render))
        if ns.write:
            write_report(Path(ns.write), report)
            progress(f"wrote {ns.write} from {ns.render}")
        else:
            print(report)
        return 0
    if ns.list:
        for b in REGISTRY:
            print(f"{b.name:10} {b.title}")
        return 0
    chosen = REGISTRY
    if ns.only:
        names = [n.strip() for n in ns.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in {b.name for b in REGISTRY}]
        if unknown:
            ap.error(f"unknown benchmark(s) {unknown}; known: {[b.name for b in REGISTRY]}")
        chosen = [b for b in REGISTRY if b.name in names]

    ensure_pm2(ns.pm2)
    WORK.mkdir(parents=True, exist_ok=True)
    corral_source = "working tree"
    if ns.corral_ref:
        Corral.src, sha = corral_snapshot(ns.corral_ref)
        corral_source = f"code at commit {sha[:12]} (`--corral-ref {ns.corral_ref}`)"
    else:
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=False,
        )
        if dirty.stdout.strip():
            corral_source = "working tree, with uncommitted changes in src/"
    Corral().warm_up()
    started = dt.datetime.now().astimezone()
    t_start = now()
    ctx = Ctx(quick=ns.quick, python=real_python())
    results: list[Result] = []
    for b in chosen:
        progress(f"{b.name}: {b.title}")
        res = Result(b.name, b.title, b.what)
        load0 = loadavg()
        t0 = now()
        try:
            res.rows = b.func(ctx)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # one failed benchmark does not lose the others
            res.error = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        res.seconds = now() - t0
        res.load = f"{load0} → {loadavg()}"
        results.append(res)
        for row in res.rows:
            progress(
                f"  {row.metric}: Corral {fmt(row.corral, row.unit)} / PM2 {fmt(row.pm2, row.unit)} {row.unit}  met={row.met}"
            )
        progress(f"  ({res.seconds:.1f} s)")
    elapsed = now() - t_start

    command = ".venv/bin/python bench/run.py" + (
        "".join(" " + shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    )
    info = machine_info()
    info["corral_source"] = corral_source
    report = render(results, info, command, ns.quick, ctx.notes, started, elapsed)
    raw = {
        "started": started.isoformat(),
        "elapsed": elapsed,
        "command": command,
        "quick": ns.quick,
        "machine": info,
        "results": [
            {
                **{k: v for k, v in asdict(r).items() if k != "rows"},
                "rows": [{**asdict(row), "ratio": row.ratio, "met": row.met} for row in r.rows],
            }
            for r in results
        ],
        "notes": ctx.notes,
    }
    (WORK / "last-results.json").write_text(json.dumps(raw, indent=2))
    if not ns.quick and not ns.only:
        (WORK / "last-full-results.json").write_text(json.dumps(raw, indent=2))
    if ns.write:
        write_report(Path(ns.write), report)
        progress(f"wrote {ns.write} (raw figures in {WORK / 'last-results.json'})")
    else:
        print(report)
    return 1 if any(r.error for r in results) else 0


# More benchmarks live in their own modules next to this file; they register themselves
# with `from run import benchmark, Ctx, Row, ...` when imported here.
EXTENSIONS = ("bench_reload", "bench_throughput", "bench_webapp", "bench_runtime_start", "bench_ops", "bench_scale", "bench_dashboard", "bench_events", "bench_logs_json", "bench_nextjs")


def _load_extensions() -> None:
    import importlib

    sys.modules.setdefault("run", sys.modules[__name__])
    for name in EXTENSIONS:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise


_load_extensions()

if __name__ == "__main__":
    sys.exit(main())
