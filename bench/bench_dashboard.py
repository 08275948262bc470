"""The web dashboard's cost and speed (``corral dashboard``), registered into bench/run.py.

- first page load in Chromium until the table shows every instance;
- time from a ``kill -9`` to the page showing it (no reload: Server-Sent Events);
- the daemon's CPU with 50 instances and two dashboards attached vs none;
- the dashboard process's RSS;
- `corral ls` latency and the daemon's RSS with the dashboards attached vs without, and
  `pm2 ls` with the same 50 instances side by side (PM2 has no local web dashboard: PM2 Plus
  is a hosted service, so the other rows have no PM2 figure).

Everything is loopback; every process started here belongs to a Tool session or is ended
by its pid in a ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from bench_ops import free_port_block, raw_jlist, start_apps
from harness import APPS, BenchError, Tool, median, now, proc_rss, proc_stat_cpu, wait_until
from run import Ctx, Row, benchmark, progress

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
INSTANCES = 50


class DashboardProc:
    """``python -m corral.dashboard`` for a tool session, with SSE readers attached."""

    def __init__(self, tool: Tool, port: int) -> None:
        self.tool = tool
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.readers: list[threading.Thread] = []
        self.stop_readers = threading.Event()
        self.events = 0

    def start(self) -> DashboardProc:
        self.proc = subprocess.Popen([sys.executable, "-m", "corral.dashboard", "--port", str(self.port)], env=self.tool.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self._status("/api/processes") == 401, 30, what="the dashboard answers")
        return self

    def _status(self, path: str) -> int:
        import http.client

        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            c.request("GET", path)
            return c.getresponse().status
        except OSError:
            return 0

    @property
    def token(self) -> str:
        assert self.tool.home is not None
        return (self.tool.home / "dashboard.token").read_text().strip()

    def attach(self) -> None:
        """A page's live stream, read in a thread (a browser page holds exactly this open)."""
        import http.client

        token = self.token

        def read() -> None:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            c.request("GET", "/stream", headers={"authorization": f"Bearer {token}"})
            r = c.getresponse()
            while not self.stop_readers.is_set():
                line = r.readline()
                if not line:
                    return
                if line.startswith(b"event: "):
                    self.events += 1
            c.close()

        t = threading.Thread(target=read, daemon=True)
        t.start()
        self.readers.append(t)

    def stop(self) -> None:
        self.stop_readers.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _ls_times(tool: Tool, runs: int) -> list[float]:
    tool.cli("ls", stdout=subprocess.DEVNULL)  # warm-up
    out = []
    for _ in range(runs):
        t0 = now()
        tool.cli("ls", stdout=subprocess.DEVNULL)
        out.append(now() - t0)
    return out


def _ls_with_and_without(tool: Tool, dashes: list[DashboardProc], runs: int) -> tuple[list[float], list[float]]:
    """`ls` wall times with the dashboards running and paused (SIGSTOP: they send nothing), in
    blocks with, without, without, with, so that drifting load on the machine hits both alike."""
    times: dict[bool, list[float]] = {True: [], False: []}
    for running in (True, False, False, True):
        for d in dashes:
            assert d.proc is not None
            os.kill(d.proc.pid, signal.SIGCONT if running else signal.SIGSTOP)
        times[running] += _ls_times(tool, max(2, runs // 2))
    for d in dashes:
        assert d.proc is not None
        os.kill(d.proc.pid, signal.SIGCONT)
    return times[True], times[False]


def _cpu_window(pid: int, seconds: float) -> float:
    c0, t0 = proc_stat_cpu(pid), now()
    time.sleep(seconds)
    return (proc_stat_cpu(pid) - c0) / (now() - t0) * 100


def _start_50(ctx: Ctx, tool: Tool) -> int:
    daemon = tool.start_daemon()
    start_apps(tool, [{"name": "idle", "script": str(APPS / "idle.py"), "interpreter": ctx.python, "instances": INSTANCES}], "dash")
    tool.wait_online(INSTANCES, 120, name="idle")
    return daemon


@contextlib.contextmanager
def _browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _page_loads(browser: Any, dash: DashboardProc, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        ctx = browser.new_context()
        try:
            page = ctx.new_page()
            page.goto(f"{dash.base}/login?token={dash.token}")
            page.wait_for_url(dash.base + "/")
            page.goto("about:blank")
            page.goto(dash.base + "/", wait_until="commit")
            page.wait_for_function(f"() => document.querySelectorAll('tr[data-id]').length === {INSTANCES} && window.corralFirstDraw !== undefined", timeout=30000)
            times.append(page.evaluate("() => window.corralFirstDraw") / 1000)  # from the navigation's start, in the page's clock
        finally:
            ctx.close()
    return times


def _live_updates(browser: Any, tool: Tool, dash: DashboardProc, trials: int) -> list[float]:
    """kill -9 of an instance (wall clock, ms) until the page's row changes (Date.now() in the page)."""
    ctx = browser.new_context()
    out = []
    try:
        page = ctx.new_page()
        page.goto(f"{dash.base}/login?token={dash.token}")
        page.wait_for_function(f"() => document.querySelectorAll('tr[data-id]').length === {INSTANCES}", timeout=30000)
        page.wait_for_selector('#conn[data-state="live"]')
        for i in range(trials):
            procs = [p for p in raw_jlist(tool) if p["status"] == "online"]
            victim = procs[(i * 7) % len(procs)]
            page.evaluate(
                """([id, pid]) => { window.__seen = null;
                  const cell = () => document.querySelector(`tr[data-id='${id}'] td.pid`);
                  const obs = new MutationObserver(() => { const c = cell(); if (window.__seen === null && c && c.textContent !== String(pid)) { window.__seen = Date.now(); obs.disconnect(); } });
                  obs.observe(document.querySelector('#procs tbody'), { childList: true, subtree: true, characterData: true }); }""",
                [victim["id"], victim["pid"]],
            )
            t0 = time.time() * 1000
            os.kill(victim["pid"], signal.SIGKILL)
            page.wait_for_function("() => window.__seen !== null", timeout=15000)
            out.append((page.evaluate("() => window.__seen") - t0) / 1000)
            wait_until(lambda: sum(1 for p in raw_jlist(tool) if p["status"] == "online") == INSTANCES, 30, what="all online again")
            time.sleep(1.5)  # past min_uptime, as the sigkill benchmark
    finally:
        ctx.close()
    return out


@benchmark(
    "dashboard",
    "Web dashboard: page load, live updates, and what it costs the daemon",
    f"One app with {INSTANCES} idle instances (bench/apps/idle.py). Corral first without a dashboard: the daemon's RSS, and its CPU over a window. Then two `corral dashboard` processes, each with "
    "a live stream attached (what an open page holds), and the same figures again, plus each dashboard's RSS, and `corral ls` with the dashboards running and paused. Then, "
    "in Chromium (Playwright, one browser): the first load of the process table (from the navigation's start until all "
    f"{INSTANCES} rows are drawn, by the page's own clock; a fresh logged-in context each time), and `kill -9` of an instance until the page's "
    "row changes (a MutationObserver stamps Date.now() in the page; the kill is stamped with the same wall clock). "
    f"PM2: `pm2 ls` with the same {INSTANCES} instances, for the side-by-side `ls` row; PM2 has no local web "
    "dashboard (PM2 Plus is hosted), so the other rows have no PM2 figure.",
)
def bench_dashboard(ctx: Ctx) -> list[Row]:
    runs = ctx.pick(10, 4)
    window = ctx.pick(20.0, 6.0)
    loads_n = ctx.pick(10, 3)
    trials = ctx.pick(7, 3)
    corral, pm2 = ctx.tools()
    dashes: list[DashboardProc] = []
    with corral.session():
        daemon = _start_50(ctx, corral)
        time.sleep(ctx.pick(3.0, 1.0))
        rss_none = proc_rss(daemon) / 1048576
        cpu_none = _cpu_window(daemon, window)
        try:
            base = free_port_block(2)
            for k in range(2):
                d = DashboardProc(corral, base + k).start()
                dashes.append(d)
                d.attach()
            wait_until(lambda: all(d.events >= 2 for d in dashes), 30, what="both dashboards stream")
            time.sleep(ctx.pick(3.0, 1.0))
            d_cpu0 = [proc_stat_cpu(d.proc.pid) for d in dashes if d.proc is not None]
            t_cpu0 = now()
            cpu_two = _cpu_window(daemon, window)
            dash_cpu = max((proc_stat_cpu(d.proc.pid) - c0) / (now() - t_cpu0) * 100 for d, c0 in zip(dashes, d_cpu0, strict=True) if d.proc is not None)
            rss_two = proc_rss(daemon) / 1048576
            dash_rss = [proc_rss(d.proc.pid) / 1048576 for d in dashes if d.proc is not None]
            with_ls, without_ls = _ls_with_and_without(corral, dashes, runs)
            ls_two, ls_none = median(with_ls) * 1000, median(without_ls) * 1000
            progress(f"  dashboard: daemon CPU {cpu_none:.2f}% -> {cpu_two:.2f}%, RSS {rss_none:.1f} -> {rss_two:.1f} MiB, ls {ls_none:.1f} -> {ls_two:.1f} ms")
            if not os.path.exists(CHROMIUM):
                raise BenchError(f"{CHROMIUM} is missing (apt-get install chromium)")
            with _browser() as browser:
                loads = _page_loads(browser, dashes[0], loads_n)
                live = _live_updates(browser, corral, dashes[0], trials)
            progress(f"  dashboard: page load median {median(loads) * 1000:.0f} ms, live update median {median(live) * 1000:.0f} ms")
        finally:
            for d in dashes:
                d.stop()
    with pm2.session():
        _start_50(ctx, pm2)
        time.sleep(ctx.pick(3.0, 1.0))
        ls_pm2 = median(_ls_times(pm2, runs)) * 1000
    ctx.note("dashboard", f"Without a dashboard: daemon RSS {rss_none:.1f} MiB, daemon CPU {cpu_none:.2f}% of a core ({window:g} s windows). `corral ls` with and without: {runs} runs each, in blocks with, without, without, with; \"without\" = the two dashboards paused with SIGSTOP (they send the daemon nothing), so that load drifting on the machine hits both alike.")
    ctx.note("dashboard", f"First page loads (s): {', '.join(f'{x:.3f}' for x in loads)}; live updates (s): {', '.join(f'{x:.3f}' for x in live)}.")
    ctx.note("dashboard", "Each dashboard asks the daemon for `list` every 2 s and at once after an event, and for `history` every 5 s, whatever the number of pages open (one shared view per dashboard process).")
    return [
        Row("first page load until all rows are drawn (median)", "ms", median(loads) * 1000, None, corral_target=500),
        Row("kill -9 until the page shows it (median)", "ms", median(live) * 1000, None, corral_target=500),
        Row(f"daemon CPU, {INSTANCES} instances, two dashboards attached", "% of a core", cpu_two, None, note=f"none attached: {cpu_none:.2f}%"),
        Row("daemon CPU added by two dashboards", "% of a core", max(0.0, cpu_two - cpu_none), None, corral_target=1.0),
        Row("dashboard process RSS (larger of the two)", "MiB", max(dash_rss), None, corral_target=80),
        Row("dashboard process CPU, one page attached (larger of the two)", "% of a core", dash_cpu, None, corral_target=5.0),
        Row(f"`ls` median, {INSTANCES} instances, two dashboards attached", "ms", ls_two, ls_pm2, target=0.3),
        Row(f"`ls` median, {INSTANCES} instances, dashboards paused", "ms", ls_none, ls_pm2, note="for the with/without comparison"),
        Row("daemon RSS, two dashboards attached", "MiB", rss_two, None, note=f"without: {rss_none:.1f} MiB"),
        Row("daemon RSS added by two dashboards", "MiB", max(0.0, rss_two - rss_none), None, corral_target=1.0),
    ]
