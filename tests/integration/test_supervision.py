"""Supervision on real processes: start, crash loops, stop escalation, process trees, signals."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.conftest import Corral, pid_alive, wait_until, write

SLEEPER = """
import os, sys, time
print("started", os.getpid(), os.environ.get("CORRAL_INSTANCE"), os.environ.get("NODE_APP_INSTANCE"), os.environ.get("PYTHONUNBUFFERED"), flush=False)
print("to stderr", file=sys.stderr)
while True:
    time.sleep(0.5)
"""


def test_start_instances_env_and_logs(corral: Corral) -> None:
    write(corral.cwd / "app.py", SLEEPER)
    corral.run("start", "app.py", "-i", "2", "--name", "web")
    procs = corral.jlist()
    assert [p["status"] for p in procs] == ["online", "online"]
    assert sorted(p["instance"] for p in procs) == [0, 1]
    logs = corral.home / "logs"
    for p in procs:
        out = logs / f"web-out-{p['instance']}.log"
        # PYTHONUNBUFFERED=1 is set for Python apps, so the print shows without a flush.
        line = wait_until(lambda out=out: out.exists() and out.read_text().strip(), message=str(out))
        assert line == f"started {p['pid']} {p['instance']} {p['instance']} 1"
        err = logs / f"web-error-{p['instance']}.log"
        assert wait_until(lambda err=err: err.exists() and err.read_text()) == "to stderr\n"


def test_crash_loop_ends_errored(corral: Corral) -> None:
    write(corral.cwd / "crash.py", "import sys\nprint('boom')\nsys.exit(3)\n")
    corral.run("start", "crash.py", "--max-restarts", "3")
    p = wait_until(lambda: (p := corral.proc("crash"))["status"] == "errored" and p)
    assert p["restarts"] == 3
    assert p["exit_code"] == 3
    # the first run and 3 restarts all wrote their line
    out = (corral.home / "logs" / "crash-out.log").read_text()
    assert out.count("boom") == 4


def test_stable_run_is_restarted_forever(corral: Corral) -> None:
    # exits after 0.3s but min_uptime is 0.1s: every exit is stable, never errored
    write(corral.cwd / "blip.py", "import time\ntime.sleep(0.3)\n")
    corral.run("start", "blip.py", "--max-restarts", "1", "--min-uptime", "100")
    wait_until(lambda: corral.proc("blip")["restarts"] >= 4, timeout=15)
    assert corral.proc("blip")["status"] in ("online", "launching")


def test_stop_exit_codes_and_no_autorestart(corral: Corral) -> None:
    write(corral.cwd / "done.py", "import sys\nsys.exit(7)\n")
    corral.run("start", "done.py", "--stop-exit-codes", "7")
    p = wait_until(lambda: (p := corral.proc("done"))["status"] == "stopped" and p)
    assert p["restarts"] == 0 and p["exit_code"] == 7
    write(corral.cwd / "once.py", "print('once')\n")
    corral.run("start", "once.py", "--no-autorestart")
    p = wait_until(lambda: (p := corral.proc("once"))["status"] == "stopped" and p)
    assert p["restarts"] == 0


def test_restart_delay_shows_waiting_restart(corral: Corral) -> None:
    write(corral.cwd / "slowcrash.py", "import sys\nsys.exit(1)\n")
    corral.run("start", "slowcrash.py", "--restart-delay", "3000")
    wait_until(lambda: corral.proc("slowcrash")["status"] == "waiting restart")
    corral.run("stop", "slowcrash")
    assert corral.proc("slowcrash")["status"] == "stopped"


STUBBORN = """
import signal, time, os
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
while True:
    time.sleep(0.1)
"""


def test_stop_escalates_to_sigkill(corral: Corral) -> None:
    write(corral.cwd / "stubborn.py", STUBBORN)
    corral.run("start", "stubborn.py", "--kill-timeout", "500")
    pid = corral.proc("stubborn")["pid"]
    wait_until(lambda: (corral.home / "logs" / "stubborn-out.log").read_text() == "ready\n")
    t0 = time.monotonic()
    corral.run("stop", "stubborn")
    elapsed = time.monotonic() - t0
    p = corral.proc("stubborn")
    assert p["status"] == "stopped"
    assert p["exit_signal"] == "SIGKILL"
    assert not pid_alive(pid)
    assert elapsed >= 0.45  # the grace period was honoured before SIGKILL


TREE = """
import os, subprocess, sys, time
here = os.path.dirname(os.path.abspath(__file__))
# a child in our group, a grandchild in our group, and one that escapes with setsid
kid = subprocess.Popen([sys.executable, "-c", "import subprocess,sys,time; subprocess.Popen([sys.executable,'-c','import time; time.sleep(600)']); time.sleep(600)"])
escaped = subprocess.Popen([sys.executable, "-c", "import signal,time; signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"], start_new_session=True)
with open(os.path.join(here, "tree.pids"), "w") as f:
    f.write(f"{kid.pid} {escaped.pid}\\n")
time.sleep(600)
"""


def test_stop_kills_the_whole_tree(corral: Corral) -> None:
    write(corral.cwd / "tree.py", TREE)
    corral.run("start", "tree.py", "--kill-timeout", "500")
    pids_file = corral.cwd / "tree.pids"
    wait_until(lambda: pids_file.exists() and pids_file.read_text().endswith("\n"))
    import psutil

    main = corral.proc("tree")["pid"]
    wait_until(lambda: len(psutil.Process(main).children(recursive=True)) >= 3)
    everyone = [main] + [c.pid for c in psutil.Process(main).children(recursive=True)]
    corral.run("stop", "tree")
    wait_until(lambda: not any(pid_alive(p) for p in everyone), timeout=5, message=f"tree {everyone} gone")


ORPHANER = """
import os, sys, time
# double fork: the grandchild is orphaned and re-parented to the daemon (a subreaper)
pid = os.fork()
if pid == 0:
    if os.fork() == 0:
        time.sleep(0.3)
        os._exit(0)
    os._exit(0)
os.waitpid(pid, 0)
print("forked", flush=True)
time.sleep(600)
"""


def test_orphans_are_reaped(corral: Corral) -> None:
    write(corral.cwd / "orphaner.py", ORPHANER)
    corral.run("start", "orphaner.py")
    wait_until(lambda: (corral.home / "logs" / "orphaner-out.log").read_text() == "forked\n")
    daemon = corral.daemon_pid()
    assert daemon is not None
    import psutil

    def zombies() -> list[int]:
        return [c.pid for c in psutil.Process(daemon).children() if c.status() == psutil.STATUS_ZOMBIE]

    # the orphan exits after 0.3s; the daemon must reap it
    wait_until(lambda: "reaped orphan" in (corral.home / "corral.log").read_text(), timeout=5)
    assert zombies() == []


def test_send_signal_and_namespace_targets(corral: Corral) -> None:
    app = """
import signal, sys, time
def on_usr1(*_):
    print("got usr1", flush=True)
signal.signal(signal.SIGUSR1, on_usr1)
print("ready", flush=True)
while True:
    time.sleep(0.1)
"""
    write(corral.cwd / "sig.py", app)
    corral.run("start", "sig.py", "--namespace", "backend")
    log = corral.home / "logs" / "sig-out.log"
    wait_until(lambda: log.read_text() == "ready\n")
    corral.run("sendSignal", "SIGUSR1", "backend")
    wait_until(lambda: "got usr1" in log.read_text())
    corral.run("stop", "backend")
    assert corral.proc("sig")["status"] == "stopped"


def test_restart_update_env(corral: Corral) -> None:
    write(corral.cwd / "envapp.py", "import os, time\nprint('FOO=' + os.environ.get('FOO', '-'), flush=True)\ntime.sleep(600)\n")
    env = dict(corral.env, FOO="one")
    corral.run("start", "envapp.py", env=env)
    log = corral.home / "logs" / "envapp-out.log"
    wait_until(lambda: log.read_text() == "FOO=one\n")
    env2 = dict(corral.env, FOO="two")
    corral.run("restart", "envapp", env=env2)  # without --update-env: keeps the old env
    wait_until(lambda: log.read_text().count("FOO=one") == 2)
    corral.run("restart", "envapp", "--update-env", env=env2)
    wait_until(lambda: log.read_text().endswith("FOO=two\n"))
    assert corral.proc("envapp")["restarts"] == 2


def test_delete_and_kill_leave_nothing(corral: Corral) -> None:
    write(corral.cwd / "app.py", SLEEPER)
    corral.run("start", "app.py", "-i", "3")
    pids = [p["pid"] for p in corral.jlist()]
    corral.run("delete", "app")
    assert corral.jlist() == []
    assert not any(pid_alive(p) for p in pids)
    corral.run("start", "app.py", "-i", "2")
    pids = [p["pid"] for p in corral.jlist()]
    daemon = corral.daemon_pid()
    corral.run("kill")
    assert daemon is not None
    wait_until(lambda: not pid_alive(daemon), timeout=5)
    assert not any(pid_alive(p) for p in pids)
    assert not (corral.home / "corral.sock").exists()


def test_daemon_sigterm_stops_apps(corral: Corral) -> None:
    write(corral.cwd / "app.py", SLEEPER)
    corral.run("start", "app.py")
    pid = corral.proc("app")["pid"]
    daemon = corral.daemon_pid()
    assert daemon
    os.kill(daemon, signal.SIGTERM)
    wait_until(lambda: not pid_alive(daemon), timeout=10)
    assert not pid_alive(pid)


def test_start_without_file_finds_ecosystem(corral: Corral, tmp_path: Path) -> None:
    write(corral.cwd / "worker.py", SLEEPER)
    write(
        corral.cwd / "ecosystem.toml",
        """
[[apps]]
name = "worker"
script = "worker.py"
instances = 2
[apps.env]
MODE = "dev"
[apps.env_production]
MODE = "prod"
""",
    )
    corral.run("start", "--env", "production")
    procs = corral.jlist()
    assert [p["name"] for p in procs] == ["worker", "worker"]
    env = corral.run("env", str(procs[0]["id"])).stdout
    assert "MODE: prod" in env
