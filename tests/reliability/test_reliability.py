"""Reliability on real processes: random SIGKILLs, a daemon killed with apps running, a full disk.

Sized for CI (CORRAL_SOAK_SECONDS, default 8 s of chaos per test); `make soak`
runs the same tests for longer.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.system import leftovers
from tests.conftest import Corral, ecosystem, pid_alive, wait_until, write
from tests.reliability.conftest import descendants, state_of

CHAOS_SECONDS = float(os.environ.get("CORRAL_SOAK_SECONDS", "8"))

PARENT = """
import subprocess, sys, time
def spawn():
    child = subprocess.Popen([sys.executable, "-c", "import time\\nwhile True: time.sleep(1)"])
    print("started", child.pid, flush=True)
    return child
child = spawn()
while True:
    time.sleep(0.2)
    if child.poll() is not None:  # a killed grandchild is replaced (and reaped)
        child = spawn()
"""


def settled(corral: Corral, name: str, count: int) -> list[dict[str, object]] | None:
    procs = [p for p in corral.jlist() if p["name"] == name]
    if len(procs) == count and all(p["status"] == "online" and p["pid"] for p in procs):
        return procs
    return None


def tree_ok(daemon: int, procs: list[dict[str, object]]) -> bool:
    """Every instance has exactly its one grandchild; nothing else runs under the daemon; no zombie."""
    under = descendants(daemon)
    if any(state_of(p) == "Z" for p in under):
        return False
    instance_pids = {int(p["pid"]) for p in procs}  # type: ignore[call-overload]
    expected = set(instance_pids)
    for pid in instance_pids:
        kids = descendants(pid)
        if len(kids) != 1:
            return False
        expected.update(kids)
    return set(under) == expected


def test_random_sigkills_of_instances_and_grandchildren(corral: Corral) -> None:
    write(corral.cwd / "parent.py", PARENT)
    app = {"name": "tree", "script": "parent.py", "instances": 3, "max_restarts": 100000, "min_uptime": 0, "restart_delay": 0, "kill_timeout": 1000}
    write(corral.cwd / "ecosystem.toml", ecosystem(app))
    corral.run("start", "ecosystem.toml")
    daemon = corral.daemon_pid()
    assert daemon is not None
    procs = wait_until(lambda: settled(corral, "tree", 3), timeout=20)
    rng = random.Random(int(os.environ.get("CORRAL_SOAK_SEED", "12")))
    kills = {"instance": 0, "grandchild": 0}
    deadline = time.monotonic() + CHAOS_SECONDS
    while time.monotonic() < deadline:
        under = descendants(daemon)
        instances = [int(p["pid"]) for p in corral.jlist() if p["pid"]]
        grandchildren = [p for p in under if p not in instances]
        kind = rng.choice(["instance", "grandchild"])
        pool = instances if kind == "instance" else grandchildren
        if pool:
            try:
                os.kill(rng.choice(pool), signal.SIGKILL)
                kills[kind] += 1
            except ProcessLookupError:
                pass
        time.sleep(rng.uniform(0.05, 0.4))  # load pacing, not a wait for a condition
    print(f"\nSIGKILLed {kills['instance']} instances and {kills['grandchild']} grandchildren in {CHAOS_SECONDS:g} s")
    assert kills["instance"] > 0 and kills["grandchild"] > 0

    def healed() -> bool:
        procs = settled(corral, "tree", 3)
        return procs is not None and tree_ok(daemon, procs)

    wait_until(healed, timeout=30, interval=0.2, message="all instances online, one grandchild each, no zombie, no orphan")
    # orphans outside the daemon's tree: grandchildren whose instance died and that escaped
    corral_id_procs = leftovers.find(str(corral.home), daemon)
    assert corral_id_procs == [], f"processes of this home outside the daemon's tree: {corral_id_procs}"
    assert pid_alive(daemon)
    procs = settled(corral, "tree", 3)
    assert procs is not None


def instances_of_home(home: Path) -> list[leftovers.Leftover]:
    """Every process started for this home, under a daemon or not (none counts as 'live daemon')."""
    return leftovers.find(str(home), daemon_pid=-1)


def start_sleepers(corral: Corral) -> None:
    write(corral.cwd / "sleeper.py", "import time\nwhile True:\n    time.sleep(1)\n")
    write(corral.cwd / "ecosystem.toml", ecosystem({"name": "s", "script": "sleeper.py", "instances": 2}))
    corral.run("start", "ecosystem.toml")
    corral.run("save")


def test_leftovers_of_a_killed_daemon_are_found_and_stopped(corral: Corral) -> None:
    start_sleepers(corral)
    daemon = corral.daemon_pid()
    assert daemon is not None
    assert leftovers.find(str(corral.home), daemon) == []  # all under the live daemon
    before = {int(p["pid"]) for p in corral.jlist()}
    os.kill(daemon, signal.SIGKILL)
    wait_until(lambda: not pid_alive(daemon), timeout=5)
    found = wait_until(lambda: leftovers.find(str(corral.home), os.getpid()), timeout=5)
    assert {f.pid for f in found} == before
    assert leftovers.stop(found, grace=5) == 2
    wait_until(lambda: not any(pid_alive(p) for p in before), timeout=10)


def test_daemon_sigkilled_and_restarted_runs_no_duplicate_instances(corral: Corral) -> None:
    start_sleepers(corral)
    daemon = corral.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    wait_until(lambda: not pid_alive(daemon), timeout=5)
    corral.run("resurrect")
    procs = wait_until(lambda: settled(corral, "s", 2), timeout=20)
    running = instances_of_home(corral.home)
    assert len(running) == len(procs) == 2, f"{len(running)} processes for 2 instances: {running}"


# ---------------------------------------------------------------- a full disk


@pytest.fixture
def small_fs() -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs for the log folder")
    where = Path(tempfile.mkdtemp(prefix="corral-full-"))
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)], capture_output=True, text=True)
    if proc.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
        where.rmdir()


WRITER = """
import sys, time
i = 0
while True:
    print(f"line {i:08d} " + "x" * 100, flush=True)
    i += 1
    if i % 200 == 0:
        open("written", "w").write(str(i))
    time.sleep(0.0005)
"""


def test_full_disk_on_the_log_folder_apps_keep_running_loss_counted(corral: Corral, small_fs: Path) -> None:
    write(corral.cwd / "writer.py", WRITER)
    out = small_fs / "w-out.log"
    write(corral.cwd / "ecosystem.toml", ecosystem({"name": "w", "script": "writer.py", "out_file": str(out), "error_file": str(small_fs / "w-err.log")}))
    corral.run("start", "ecosystem.toml")

    def described() -> dict[str, object]:
        import json

        return json.loads(corral.run("describe", "w", "--json").stdout)[0]  # type: ignore[no-any-return]

    d = wait_until(lambda: (d := described())["log_lines_dropped"] and d, timeout=30, interval=0.2, message="lines dropped once the disk is full")
    assert d["status"] == "online" and d["restarts"] == 0
    assert any("No space left" in e for e in d["log_errors"])  # type: ignore[union-attr]
    # free the space: writing resumes by itself, the loss stays counted
    corral.run("flush", "w")
    wait_until(lambda: out.exists() and out.stat().st_size > 0 and not described()["log_errors"], timeout=20, interval=0.2, message="writing resumes")
    d = described()
    assert d["status"] == "online" and d["restarts"] == 0 and int(d["log_lines_dropped"]) > 0  # type: ignore[call-overload]
    log = (corral.home / "corral.log").read_text()
    assert "lines could not be written" in log or "cannot write" in log
    print(f"\nfull disk: {d['log_lines_dropped']} lines counted as lost, app online, 0 restarts")
