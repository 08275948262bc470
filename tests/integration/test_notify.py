"""sd_notify per instance on real processes: READY, STATUS, WATCHDOG and forged datagrams.

Every instance gets its own NOTIFY_SOCKET (an abstract Unix datagram socket,
`@...`); the apps here speak to it through `corral.notify()`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Corral, pid_alive, wait_until, write

BIN = Path(sys.executable).parent


@pytest.fixture
def corral(corral: Corral) -> Corral:
    # *.py apps run with the test venv's python, which can `import corral`
    corral.env["VIRTUAL_ENV"] = str(BIN.parent)
    return corral


def ecosystem(**app: Any) -> str:
    return "[[apps]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in app.items())


@contextmanager
def start_in_background(corral: Corral, **app: Any) -> Iterator[subprocess.Popen[str]]:
    """`corral start` waits for launching instances to settle: run it aside, watch with jlist."""
    write(corral.cwd / "ecosystem.toml", ecosystem(**app))
    corral.run("ping")  # the daemon is up before the start and the first jlist race to start it
    proc = subprocess.Popen(
        [sys.executable, "-m", "corral", "start", "ecosystem.toml"],
        cwd=corral.cwd,
        env=corral.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def daemon_log(corral: Corral) -> str:
    path = corral.home / "corral.log"
    return path.read_text() if path.exists() else ""


SLOW_READY = """
import time, corral
time.sleep(1.0)
open("ready.marker", "w").close()
corral.notify_ready()
while True:
    time.sleep(0.5)
"""


def test_wait_ready_is_launching_until_ready(corral: Corral) -> None:
    write(corral.cwd / "slow.py", SLOW_READY)
    marker = corral.cwd / "ready.marker"
    with start_in_background(corral, name="slow", script="slow.py", wait_ready=True, listen_timeout=10000):
        p = wait_until(lambda: (p := corral.proc("slow"))["status"] == "launching" and p["pid"] and p, timeout=10)
        assert p["ready"] is False
        assert environ_of(p["pid"])["NOTIFY_SOCKET"].startswith("@")

        early: list[dict[str, Any]] = []

        def online() -> dict[str, Any] | None:
            q = corral.proc("slow")
            if q["status"] == "launching":
                return None
            # online only after READY=1, which the app sends after writing the marker
            if not marker.exists():
                early.append(q)
            return q

        p = wait_until(online, timeout=10)
        assert early == []
    assert p["status"] == "online" and p["ready"] is True and p["restarts"] == 0
    assert p["uptime"] >= 0.9  # the app slept 1 s before READY=1
    log = daemon_log(corral)
    assert f"pid {p['pid']}, waiting for READY" in log and f"pid {p['pid']} ready" in log


def test_no_ready_within_listen_timeout_is_a_failed_start(corral: Corral) -> None:
    write(corral.cwd / "mute.py", "import time\nwhile True:\n    time.sleep(0.5)\n")
    write(corral.cwd / "ecosystem.toml", ecosystem(name="mute", script="mute.py", wait_ready=True, listen_timeout=500, max_restarts=1))
    corral.run("start", "ecosystem.toml", check=False)
    p = wait_until(lambda: (p := corral.proc("mute"))["status"] == "errored" and p, timeout=15)
    assert p["restarts"] == 1
    assert "failed to become ready" in p["reason"], p["reason"]
    assert p["ready"] is False
    assert "exit: failed to become ready; restarting" in daemon_log(corral)


STATUS_APP = """
import os, time, corral
corral.notify(status="warming up")
deadline = time.monotonic() + 30
while not os.path.exists("go") and time.monotonic() < deadline:
    time.sleep(0.02)
corral.notify(ready=True, status="serving 42 requests")
while True:
    time.sleep(0.5)
"""


def test_status_shows_in_jlist_and_describe(corral: Corral) -> None:
    write(corral.cwd / "status.py", STATUS_APP)
    with start_in_background(corral, name="status", script="status.py", wait_ready=True, listen_timeout=20000):
        p = wait_until(lambda: (p := corral.proc("status"))["notify_status"] == "warming up" and p, timeout=10)
        assert p["status"] == "launching"
        write(corral.cwd / "go", "")
        p = wait_until(lambda: (p := corral.proc("status"))["status"] == "online" and p, timeout=10)
    assert p["notify_status"] == "serving 42 requests"
    [d] = json.loads(corral.run("describe", "status", "--json").stdout)
    assert d["notify_status"] == "serving 42 requests" and d["ready"] is True
    assert "serving 42 requests" in corral.run("describe", "status").stdout


PINGER = """
import os, time, corral
for _ in range(6):  # 1.5 s of pings, longer than watchdog_sec
    corral.notify(watchdog=True)
    time.sleep(0.25)
open(f"pinged-{os.getpid()}", "w").close()
while True:
    time.sleep(0.5)
"""


def test_watchdog_restarts_an_instance_that_stops_pinging(corral: Corral) -> None:
    write(corral.cwd / "pinger.py", PINGER)
    write(corral.cwd / "ecosystem.toml", ecosystem(name="pinger", script="pinger.py", watchdog_sec=1000))
    corral.run("start", "ecosystem.toml")
    first = corral.proc("pinger")
    assert first["restarts"] == 0
    p = wait_until(lambda: (p := corral.proc("pinger"))["restarts"] >= 1 and p["pid"] and p, timeout=10)
    assert p["pid"] != first["pid"]
    wait_until(lambda: not pid_alive(first["pid"]), timeout=5)
    # the pings kept it alive: it was restarted only after it had sent them all
    assert (corral.cwd / f"pinged-{first['pid']}").exists()
    assert "watchdog" in p["reason"], p["reason"]
    log = daemon_log(corral)
    assert "watchdog: failed: no WATCHDOG=1 within 1s" in log, log


def test_watchdog_interval_is_in_the_environment(corral: Corral) -> None:
    write(corral.cwd / "pinger.py", "import time, corral\nwhile True:\n    corral.notify(watchdog=True)\n    time.sleep(0.2)\n")
    write(corral.cwd / "ecosystem.toml", ecosystem(name="pinger", script="pinger.py", watchdog_sec=5000))
    corral.run("start", "ecosystem.toml")
    env = environ_of(corral.proc("pinger")["pid"])
    assert env.get("WATCHDOG_USEC") == "5000000"


SLOW_START_PINGER = """
import time, corral
time.sleep(1.2)
corral.notify_ready()
while True:
    corral.notify(watchdog=True)
    time.sleep(0.1)
"""


def test_watchdog_starts_after_ready(corral: Corral) -> None:
    write(corral.cwd / "slowpinger.py", SLOW_START_PINGER)
    app = {"name": "sp", "script": "slowpinger.py", "wait_ready": True, "listen_timeout": 10000, "watchdog_sec": 500}
    with start_in_background(corral, **app):

        def settled() -> bool:
            p = corral.proc("sp")
            return "watchdog:" in daemon_log(corral) or (p["status"] == "online" and (p["uptime"] or 0) >= 2.0)

        wait_until(settled, timeout=15)
        log = daemon_log(corral)
        p = corral.proc("sp")
        corral.run("delete", "sp")  # lets a start that waits on a restart loop return at once
    assert "watchdog:" not in log
    assert p["status"] == "online" and p["restarts"] == 0


HOLDER = """
import os, subprocess, sys, time
deadline = time.monotonic() + 30
while not os.path.exists("child-go") and time.monotonic() < deadline:
    time.sleep(0.02)
# a child process (in the instance's tree) reports ready, and stays a moment
subprocess.run([sys.executable, "-c", "import time, corral; corral.notify_ready(status='from a child'); time.sleep(1)"])
while True:
    time.sleep(0.5)
"""

FORGER = """
import socket, sys
address = sys.argv[1]
with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
    s.connect("\\0" + address[1:])
    s.send(b"READY=1\\nSTATUS=forged")
print("sent", flush=True)
sys.stdin.read()  # alive until the test is done, so the pid cannot be mistaken
"""


def test_forged_datagrams_are_ignored(corral: Corral) -> None:
    write(corral.cwd / "holder.py", HOLDER)
    with start_in_background(corral, name="holder", script="holder.py", wait_ready=True, listen_timeout=20000):
        p = wait_until(lambda: (p := corral.proc("holder"))["status"] == "launching" and p["pid"] and p, timeout=10)
        address = environ_of(p["pid"])["NOTIFY_SOCKET"]
        assert address.startswith("@")
        forger = subprocess.Popen([sys.executable, "-c", FORGER, address], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert forger.stdout is not None and forger.stdout.readline() == "sent\n"
            wait_until(lambda: f"ignored a notify datagram from pid {forger.pid}" in daemon_log(corral), timeout=5)
            p = corral.proc("holder")
            assert p["status"] == "launching" and p["ready"] is False
            assert p["notify_status"] is None
        finally:
            try:
                forger.communicate(input="", timeout=5)  # closes its stdin: it ends
            finally:
                if forger.poll() is None:
                    forger.kill()
                    forger.communicate()
        # a descendant of the instance is listened to
        write(corral.cwd / "child-go", "")
        p = wait_until(lambda: (p := corral.proc("holder"))["status"] == "online" and p, timeout=10)
    assert p["notify_status"] == "from a child"
    assert p["restarts"] == 0
