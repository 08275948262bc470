"""Pids observed at one moment and signalled later are held by pidfd (issue #12).

A stop records the instance's whole tree, then sends SIGKILL to it
``kill_timeout`` later.  A process of that tree may end in between and its pid
go to an unrelated process: signalling by number would kill the stranger.
These tests make that happen for real: the kernel is told which pid to hand
out next (``/proc/sys/kernel/ns_last_pid``, root only), so a fresh process
takes the pid of the one that just ended.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corral.system import osproc
from tests.conftest import Corral, pid_alive, wait_until, write

NS_LAST_PID = "/proc/sys/kernel/ns_last_pid"


def can_choose_pids() -> bool:
    try:
        with open(NS_LAST_PID, "r+") as f:
            f.write(f.read().strip())
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not can_choose_pids(), reason="needs root to choose the next pid (ns_last_pid)")


def spawn_with_pid(pid: int, tries: int = 200) -> subprocess.Popen[bytes] | None:
    """A `sleep` holding exactly this pid (other processes on the machine may race us: retry)."""
    for _ in range(tries):
        with open(NS_LAST_PID, "w") as f:
            f.write(str(pid - 1))
        p = subprocess.Popen(["sleep", "120"])
        if p.pid == pid:
            return p
        p.kill()
        p.wait()
    return None


def test_a_tracked_pid_given_to_another_process_is_not_signalled() -> None:
    parent = subprocess.Popen(["bash", "-c", "sleep 120 & echo $!; wait"], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        (held,) = wait_until(lambda: osproc.track_tree(parent.pid))
        assert held.pid == child and osproc.tracked_alive(held)
        os.kill(child, 9)
        parent.wait(timeout=10)  # bash reaped the child, then ended
        assert not Path(f"/proc/{child}").exists() and not osproc.tracked_alive(held)
        stranger = spawn_with_pid(child)
        if stranger is None:
            pytest.skip("could not get the pid handed out again")
        try:
            osproc.signal_tracked([held], "SIGKILL")
            time.sleep(0.1)  # a signal would have been delivered by now: nothing to wait for
            assert stranger.poll() is None, "the stranger holding the old pid was killed"
        finally:
            stranger.kill()
            stranger.wait()
        osproc.untrack([held])
        assert held.fd is None
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


TREE = """
import os, signal, sys, time
here = os.path.dirname(os.path.abspath(__file__))
signal.signal(signal.SIGINT, signal.SIG_IGN)  # the stop waits the whole kill_timeout
signal.signal(signal.SIGCHLD, lambda *_: os.waitpid(-1, os.WNOHANG))  # reap the grandchild at once
pid = os.fork()
if pid == 0:
    os.setsid()  # out of the group: only the recorded tree reaches it
    while not os.path.exists(os.path.join(here, "exit-now")):
        time.sleep(0.02)
    os._exit(0)
with open(os.path.join(here, "grandchild.pid"), "w") as f:
    f.write(f"{pid}\\n")
while True:
    time.sleep(1)
"""


def test_stop_never_kills_a_process_that_took_a_recorded_pid(corral: Corral) -> None:
    write(corral.cwd / "tree.py", TREE)
    corral.run("start", "tree.py", "--kill-timeout", "3000")
    pid_file = corral.cwd / "grandchild.pid"
    wait_until(lambda: pid_file.exists() and pid_file.read_text().endswith("\n"))
    grandchild = int(pid_file.read_text())
    main = corral.proc("tree")["pid"]
    stop = subprocess.Popen([sys.executable, "-m", "corral", "stop", "tree"], env=corral.env, cwd=corral.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stranger = None
    try:
        # the stop has recorded the tree (grandchild included) once the instance is stopping
        wait_until(lambda: corral.proc("tree")["status"] == "stopping")
        (corral.cwd / "exit-now").write_text("")
        wait_until(lambda: not Path(f"/proc/{grandchild}").exists(), message="grandchild exited and reaped")
        stranger = spawn_with_pid(grandchild)
        if stranger is None:
            pytest.skip("could not get the pid handed out again")
        assert stop.wait(timeout=30) == 0
        assert not pid_alive(main)  # the stop did its job: SIGKILL after kill_timeout
        time.sleep(0.1)  # a signal would have been delivered by now
        assert stranger.poll() is None, "the daemon killed an unrelated process that took a pid it had recorded"
    finally:
        if stop.poll() is None:
            stop.kill()
            stop.wait()
        if stranger is not None:
            stranger.kill()
            stranger.wait()


def test_leftovers_are_still_killed_after_the_grace_period(corral: Corral) -> None:
    """The pidfd path still kills what it should: an escaped (setsid) process that ignores
    SIGINT outlives its main process and gets SIGKILL after kill_timeout."""
    write(corral.cwd / "left.py", """
import os, signal, sys, time
here = os.path.dirname(os.path.abspath(__file__))
pid = os.fork()
if pid == 0:
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        time.sleep(1)
with open(os.path.join(here, "left.pid"), "w") as f:
    f.write(f"{pid}\\n")
while True:
    time.sleep(1)
""")
    corral.run("start", "left.py", "--kill-timeout", "800")
    pid_file = corral.cwd / "left.pid"
    wait_until(lambda: pid_file.exists() and pid_file.read_text().endswith("\n"))
    left = int(pid_file.read_text())
    t0 = time.monotonic()
    corral.run("stop", "left")
    wait_until(lambda: not pid_alive(left), timeout=5, message="the escaped process is killed")
    assert time.monotonic() - t0 >= 0.7  # after the grace period, not before
