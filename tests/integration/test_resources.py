"""Resource limits on real processes: max_memory_restart over the whole process tree.

The daemon samples every second while some app has a limit; an instance over
it is restarted within two samples (plus the time to stop and start it), with
the reason in `last_restart_reason`.  In cluster mode with a shared socket the
replacement starts first: the service never stops answering.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil
import pytest

from corral.daemon.resources import FAST_INTERVAL
from corral.daemon.sampler import pss_available
from tests.conftest import Corral, pid_alive, wait_until, write
from tests.fixtures.health.helpers import (
    SLEEPER,
    Load,
    free_port,
    server_app,
    start,
    stays,
    use_venv,
)

LIMIT = "60M"
LEAK_MB = 120
# two sample intervals, plus stopping and starting a python process on a busy machine
RESTART_BOUND = 2 * FAST_INTERVAL + 1.5


@pytest.fixture
def corral(corral: Corral) -> Corral:
    return use_venv(corral)


def leaked_at(marker: Path, what: str = "leaking") -> float | None:
    """When the app began to leak (before it crossed the limit: a conservative start for timings)."""
    if not marker.exists():
        return None
    for line in marker.read_text().splitlines():
        if line.startswith(what + " "):
            return float(line.split()[1])
    return None


def test_leak_past_the_limit_restarts_within_two_samples(corral: Corral) -> None:
    marker = corral.cwd / "leak.marker"
    write(corral.cwd / "ok.py", SLEEPER)
    start(
        corral,
        server_app("leaky", free_port(), max_memory_restart=LIMIT, env={"LEAK_MB": str(LEAK_MB), "LEAK_MARKER": str(marker), "LEAK_DELAY": "0.5"}),
        # under its limit: never restarted
        {"name": "calm", "script": "ok.py", "max_memory_restart": "200M"},
    )
    first = corral.proc("leaky")
    t_leak = wait_until(lambda: leaked_at(marker), timeout=15, message="the app leaked")
    p = wait_until(lambda: (p := corral.proc("leaky"))["pid"] != first["pid"] and p["status"] == "online" and p, timeout=10)
    assert p["restarts"] == 1 and p["id"] == first["id"]
    assert p["started_at"] - t_leak < RESTART_BOUND, f"restarted {p['started_at'] - t_leak:.2f}s after the leak"
    reason = p["last_restart_reason"]
    assert reason.startswith("memory ") and " > 60.0mb (pss of 1 processes)" in reason, reason
    assert not pid_alive(first["pid"])
    # the event is in the daemon log too
    assert "memory: restarting: memory " in (corral.home / "corral.log").read_text()
    # the replacement does not leak (the marker exists): it stays; so does the calm app
    stays(lambda: corral.proc("leaky")["restarts"] == 1 and corral.proc("calm")["restarts"] == 0, 2 * FAST_INTERVAL)
    calm = corral.proc("calm")
    assert calm["last_restart_reason"] is None
    assert calm["memory"] is not None and 0 < calm["memory"] < 200 << 20


def test_memory_of_a_child_process_counts(corral: Corral) -> None:
    marker = corral.cwd / "leak.marker"
    app = server_app(
        "parent",
        free_port(),
        max_memory_restart=LIMIT,
        env={"LEAK_MB": str(LEAK_MB), "LEAK_MARKER": str(marker), "LEAK_IN_CHILD": "1"},
    )
    start(corral, app)
    first = corral.proc("parent")
    t_leak = wait_until(lambda: leaked_at(marker), timeout=15, message="the child leaked")
    child = int(wait_until(lambda: leaked_at(marker, "child"), timeout=5))
    p = wait_until(lambda: (p := corral.proc("parent"))["pid"] != first["pid"] and p["status"] == "online" and p, timeout=10)
    assert p["started_at"] - t_leak < RESTART_BOUND
    reason = p["last_restart_reason"]
    assert reason.startswith("memory ") and f"> 60.0mb ({'pss' if pss_available() else 'rss'} of 2 processes)" in reason, reason
    # the parent itself was small: only the tree's total passed the limit; the whole tree went
    wait_until(lambda: not pid_alive(child), timeout=5, message="the old tree is gone")


SHARED = """
import os, sys, time
marker = sys.argv[1]
data = b"x" * (70 << 20)          # touched: 70 MiB in the parent
if os.path.exists(marker):
    while True:
        time.sleep(1)
with open(marker, "w") as f:
    f.write(f"leaking {time.time()}\\n")
pid = os.fork()                    # the child shares every page copy-on-write
if pid == 0:
    while True:
        time.sleep(1)
while True:
    time.sleep(1)
"""


@pytest.mark.skipif(not pss_available(), reason="no smaps_rollup: pss falls back to rss")
def test_memory_limit_mode_pss_counts_shared_pages_once(corral: Corral) -> None:
    write(corral.cwd / "shared.py", SHARED)
    pss_marker, rss_marker = corral.cwd / "pss.marker", corral.cwd / "rss.marker"
    # the tree: 2 x (70 MiB + the interpreter) rss, about 70 MiB + the interpreter pss
    start(
        corral,
        {"name": "bypss", "script": "shared.py", "args": [str(pss_marker)], "max_memory_restart": "110M", "memory_limit_mode": "pss"},
        {"name": "byrss", "script": "shared.py", "args": [str(rss_marker)], "max_memory_restart": "110M", "memory_limit_mode": "rss"},
    )
    wait_until(lambda: leaked_at(pss_marker) and leaked_at(rss_marker), timeout=15)
    p = wait_until(lambda: (p := corral.proc("byrss"))["restarts"] == 1 and p, timeout=2 * RESTART_BOUND)
    assert "(rss of 2 processes)" in p["last_restart_reason"], p["last_restart_reason"]
    # three more samples: the pss tree stays under the limit
    stays(lambda: corral.proc("bypss")["restarts"] == 0, 3 * FAST_INTERVAL)
    mem = corral.proc("bypss")["memory"]
    assert 70 << 20 < mem < 110 << 20, mem


def test_cluster_keeps_serving_during_a_memory_restart(corral: Corral) -> None:
    port = free_port()
    marker = corral.cwd / "leak.marker"
    app = server_app(
        "web",
        None,
        exec_mode="cluster",
        instances=2,
        listen=f"127.0.0.1:{port}",
        wait_ready=True,
        listen_timeout=5000,
        max_memory_restart=LIMIT,
        env={"LEAK_MB": str(LEAK_MB), "LEAK_MARKER": str(marker), "LEAK_INSTANCE": "0", "LEAK_DELAY": "1.0"},
    )
    start(corral, app)
    before = {p["instance"]: p for p in corral.jlist()}
    assert sorted(before) == [0, 1]
    with Load(("127.0.0.1", port)) as load:
        t_leak = wait_until(lambda: leaked_at(marker), timeout=15, message="instance 0 leaked")

        def replaced() -> dict[int, dict[str, Any]] | None:
            procs = corral.jlist()
            now = {p["instance"]: p for p in procs}
            if len(procs) == 2 and now[0]["pid"] != before[0]["pid"] and now[0]["status"] == "online":
                return now
            return None

        after = wait_until(replaced, timeout=10, message="instance 0 replaced")
        # the new instance serves too, and nothing failed meanwhile
        wait_until(lambda: after[0]["pid"] in load.pids or load.failures, timeout=10)
    assert not load.failures, load.failures[:5]
    new, other = after[0], after[1]
    assert new["id"] == before[0]["id"] and new["restarts"] == 1
    assert new["started_at"] - t_leak < RESTART_BOUND
    assert new["last_restart_reason"].startswith("memory "), new["last_restart_reason"]
    assert other["pid"] == before[1]["pid"] and other["restarts"] == 0
    assert not pid_alive(before[0]["pid"])
    assert load.pids[before[1]["pid"]] > 0


def test_cpu_and_memory_in_jlist(corral: Corral) -> None:
    write(corral.cwd / "busy.py", "import time\nwhile True:\n    t = time.monotonic()\n    while time.monotonic() - t < 0.05: pass\n    time.sleep(0.05)\n")
    start(corral, {"name": "busy", "script": "busy.py", "max_memory_restart": "500M"})
    p = wait_until(lambda: (p := corral.proc("busy"))["cpu"] and p["cpu"] > 5 and p, timeout=10)
    assert p["cpu"] < 100.0 * (psutil.cpu_count() or 1) + 10
    assert 1 << 20 < p["memory"] < 500 << 20


def test_history_command_since_on_a_real_daemon(corral: Corral) -> None:
    """`history` returns the fine samples of an instance; `since` keeps only newer ones, and
    `since` older than the fine ring returns what is kept (here: the fine ring, no coarse point yet)."""
    from corral.cli.client import Client
    from corral.system.paths import Home

    write(corral.cwd / "ok.py", SLEEPER)
    # a memory limit makes the daemon sample every second
    start(corral, {"name": "calm", "script": "ok.py", "max_memory_restart": "500M"})
    client = Client(Home(corral.home))
    inst_id = str(corral.proc("calm")["id"])

    def samples(since: float | None = None) -> list[dict[str, Any]]:
        args: dict[str, Any] = {"target": ["calm"]}
        if since is not None:
            args["since"] = since
        reply = client.call("history", args)
        assert set(reply) == {inst_id}
        out: list[dict[str, Any]] = reply[inst_id]
        return out

    wait_until(lambda: len(samples()) >= 3, 15)
    hist = samples()
    times = [s["time"] for s in hist]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert all(s["memory"] > 0 and s["cpu"] >= 0 for s in hist), hist
    assert hist[-1]["memory"] > 1 << 20  # an idle python: MiBs of RSS (the first sample may catch it at exec)
    newer = samples(since=times[-2])
    assert [s["time"] for s in newer][:1] == times[-1:]  # only what came after
    assert samples(since=0)[: len(hist)] == hist  # the whole kept hour starts with the same samples
    with pytest.raises(Exception, match="since"):
        client.call("history", {"target": ["calm"], "since": "yesterday"})
    assert corral.run("ping").returncode == 0  # and the daemon is still there
