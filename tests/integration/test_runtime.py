"""corral-runtime in the foreground, as PID 1 of a new PID namespace (what a container gives it)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import pid_alive, wait_until, write

ORPHANS = """
import os, sys, time
# leave orphans behind: double-forked grandchildren that exit after a while
for delay in (0.2, 0.4, 0.6):
    pid = os.fork()
    if pid == 0:
        if os.fork() == 0:
            time.sleep(delay)
            os._exit(0)
        os._exit(0)
    os.waitpid(pid, 0)
print("orphans made", flush=True)
while True:
    time.sleep(0.2)
"""

STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
print("stubborn up", flush=True)
while True:
    time.sleep(0.1)
"""

TALKER = """
import os, sys, time
print("out line", os.environ.get("CORRAL_INSTANCE"), flush=True)
print("err line", file=sys.stderr, flush=True)
while True:
    time.sleep(0.2)
"""


def have_unshare() -> bool:
    if os.getuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True).returncode == 0


class Runtime:
    def __init__(self, tmp: Path, eco: Path, *args: str, pid1: bool = True) -> None:
        self.home = tmp / "rt-home"
        self.env = dict(os.environ, CORRAL_HOME=str(self.home))
        cmd = [sys.executable, "-m", "corral", "runtime", str(eco), *args]
        if pid1:
            cmd = ["unshare", "--pid", "--fork", "--mount-proc", *cmd]
        self.out_path = tmp / "rt.out"
        self.err_path = tmp / "rt.err"
        self.proc = subprocess.Popen(cmd, env=self.env, cwd=eco.parent, stdout=self.out_path.open("wb"), stderr=self.err_path.open("wb"))
        self.pid1 = pid1

    def runtime_pid(self) -> int:
        """The host pid of corral-runtime (unshare's child when it runs as PID 1)."""
        if not self.pid1:
            return self.proc.pid

        def find() -> int | None:
            for child in psutil.Process(self.proc.pid).children():
                return child.pid
            return None

        return int(wait_until(find, timeout=10))

    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def corral(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "corral", *args], env=self.env, capture_output=True, text=True, timeout=30)

    def finish(self) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.runtime_pid(), signal.SIGTERM)
                self.proc.wait(15)
            except (subprocess.TimeoutExpired, AssertionError, psutil.Error):
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def runtimes() -> Iterator[list[Runtime]]:
    made: list[Runtime] = []
    yield made
    for r in made:
        r.finish()


needs_pidns = pytest.mark.skipif(not have_unshare(), reason="needs root and unshare --pid")


def eco_toml(path: Path, apps: list[dict[str, object]]) -> Path:
    lines = []
    for app in apps:
        lines.append("[[apps]]")
        for k, v in app.items():
            lines.append(f"{k} = {json.dumps(v)}")
        lines.append("")
    return write(path, "\n".join(lines))


@needs_pidns
def test_pid1_reaps_orphans_and_stops_on_sigterm(tmp_path: Path, runtimes: list[Runtime]) -> None:
    write(tmp_path / "orphans.py", ORPHANS)
    eco = eco_toml(tmp_path / "ecosystem.toml", [{"name": "orph", "script": "orphans.py", "kill_signal": "SIGTERM", "kill_timeout": 2000}])
    rt = Runtime(tmp_path, eco)
    runtimes.append(rt)
    wait_until(lambda: "orphans made" in rt.out())
    pid = rt.runtime_pid()
    me = psutil.Process(pid)

    def no_zombies_and_orphans_gone() -> bool:
        kids = me.children()
        zombies = [k for k in kids if k.status() == psutil.STATUS_ZOMBIE]
        return not zombies and len(kids) == 1  # only the app itself is left

    wait_until(no_zombies_and_orphans_gone, timeout=5)
    app_pid = me.children()[0].pid
    # the control socket works from outside, as through `docker exec`
    ls = rt.corral("jlist")
    assert ls.returncode == 0 and json.loads(ls.stdout)[0]["status"] == "online"
    os.kill(pid, signal.SIGTERM)
    assert rt.proc.wait(10) == 0
    assert not pid_alive(app_pid)


@needs_pidns
def test_pid1_graceful_stop_escalates_within_kill_timeout(tmp_path: Path, runtimes: list[Runtime]) -> None:
    write(tmp_path / "stubborn.py", STUBBORN)
    eco = eco_toml(tmp_path / "ecosystem.toml", [{"name": "stub", "script": "stubborn.py", "kill_timeout": 700, "instances": 2}])
    rt = Runtime(tmp_path, eco)
    runtimes.append(rt)
    wait_until(lambda: rt.out().count("stubborn up") == 2)
    pid = rt.runtime_pid()
    kids = [c.pid for c in psutil.Process(pid).children()]
    t0 = time.monotonic()
    os.kill(pid, signal.SIGINT)
    assert rt.proc.wait(10) == 0
    took = time.monotonic() - t0
    assert 0.6 <= took < 5, took  # waited the grace period, then SIGKILL
    assert not any(pid_alive(k) for k in kids)
    assert "sent SIGKILL" in rt.err()


@needs_pidns
def test_exits_nonzero_when_every_app_ends_on_its_own(tmp_path: Path, runtimes: list[Runtime]) -> None:
    write(tmp_path / "once.py", "print('did my job')\n")
    write(tmp_path / "crash.py", "import sys\nsys.exit(4)\n")
    eco = eco_toml(
        tmp_path / "ecosystem.toml",
        [{"name": "once", "script": "once.py", "autorestart": False}, {"name": "crash", "script": "crash.py", "max_restarts": 2}],
    )
    rt = Runtime(tmp_path, eco)
    runtimes.append(rt)
    assert rt.proc.wait(20) == 1
    assert "once|" in rt.out() and "did my job" in rt.out()  # two apps: output prefixed
    assert "every app has ended" in rt.err()


def test_no_auto_exit_keeps_running(tmp_path: Path, runtimes: list[Runtime]) -> None:
    write(tmp_path / "once.py", "print('bye')\n")
    eco = eco_toml(tmp_path / "ecosystem.toml", [{"name": "once", "script": "once.py", "autorestart": False}])
    rt = Runtime(tmp_path, eco, "--no-auto-exit", pid1=False)
    runtimes.append(rt)
    wait_until(lambda: "bye" in rt.out())
    wait_until(lambda: json.loads(rt.corral("jlist").stdout)[0]["status"] == "stopped")
    assert rt.proc.poll() is None
    # `corral kill` through the control socket ends it with 0
    assert rt.corral("kill").returncode == 0
    assert rt.proc.wait(10) == 0


def test_json_output_and_no_log_files(tmp_path: Path, runtimes: list[Runtime]) -> None:
    write(tmp_path / "talk.py", TALKER)
    eco = eco_toml(tmp_path / "ecosystem.toml", [{"name": "talk", "script": "talk.py", "instances": 2}])
    rt = Runtime(tmp_path, eco, "--json", pid1=False)
    runtimes.append(rt)
    wait_until(lambda: rt.out().count("out line") == 2 and rt.err().count("err line") == 2)
    records = [json.loads(line) for line in rt.out().splitlines()]
    assert {r["message"] for r in records} == {"out line 0", "out line 1"}
    for r in records:
        assert set(r) >= {"timestamp", "app_name", "process_id", "type", "message"} and r["type"] == "out"
    err_records = [json.loads(line) for line in rt.err().splitlines()]
    assert any(r["type"] == "err" and r["message"] == "err line" for r in err_records)
    assert any(r["type"] == "event" and r["event"] == "online" for r in err_records)
    # log files are written only where the config names them
    assert not (rt.home / "logs").exists() or not any((rt.home / "logs").iterdir())


def test_format_output_and_bad_config(tmp_path: Path, runtimes: list[Runtime]) -> None:
    write(tmp_path / "talk.py", TALKER)
    eco = eco_toml(tmp_path / "ecosystem.toml", [{"name": "talk", "script": "talk.py"}])
    rt = Runtime(tmp_path, eco, "--format", pid1=False)
    runtimes.append(rt)
    wait_until(lambda: "out line" in rt.out())
    line = rt.out().splitlines()[0]
    assert line.startswith("timestamp=") and " app=talk " in line and ' message="out line 0"' in line
    bad = eco_toml(tmp_path / "bad" / "ecosystem.toml", [{"name": "x", "script": "talk.py", "instances": "many"}])
    out = subprocess.run([sys.executable, "-m", "corral", "runtime", str(bad)], env=dict(os.environ, CORRAL_HOME=str(tmp_path / "h2")), capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "app 'x': key 'instances'" in out.stderr
