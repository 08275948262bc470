"""Each state-changing command opens one connection to the daemon (#10), and a lost,
reset or cut connection is one line on stderr and exit 1, never a traceback (#12)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral import cli
from corral.cli.client import Client
from tests.conftest import Corral, ecosystem, pid_alive, wait_until, write

APP = "import time\nwhile True:\n    time.sleep(1)\n"


class Counter:
    def __init__(self) -> None:
        self.connections = 0


@pytest.fixture
def counted(corral: Corral, monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter]:
    """Runs the CLI in this process against the real daemon, counting its connections."""
    write(corral.cwd / "app.py", APP)
    corral.run("ping")
    monkeypatch.setenv("CORRAL_HOME", str(corral.home))
    monkeypatch.chdir(corral.cwd)
    counter = Counter()
    real = Client._connect

    def connect(self: Client) -> socket.socket:
        counter.connections += 1
        return real(self)

    monkeypatch.setattr(Client, "_connect", connect)
    yield counter


def once(counter: Counter, *argv: str) -> int:
    counter.connections = 0
    code = cli.main(list(argv))
    assert counter.connections == 1, f"corral {' '.join(argv)}: {counter.connections} connections"
    return code


def test_every_state_changing_command_is_one_connection(corral: Corral, counted: Counter, capsys: pytest.CaptureFixture[str]) -> None:
    write(corral.cwd / "eco.toml", ecosystem({"name": "e1", "script": "app.py"}))
    assert once(counted, "start", "app.py", "--name", "web") == 0
    assert "web" in capsys.readouterr().out  # the table came with the reply
    assert once(counted, "start", "eco.toml", "--wait") == 0
    assert once(counted, "stop", "web") == 0
    assert once(counted, "start", "web") == 0  # a known stopped app
    assert once(counted, "restart", "web") == 0
    assert once(counted, "reset", "web") == 0
    assert once(counted, "reload", "web") == 0
    assert once(counted, "reload", "eco.toml") == 0
    assert once(counted, "scale", "web", "2") == 0
    assert once(counted, "save") == 0
    assert once(counted, "delete", "web") == 0
    out = capsys.readouterr().out
    assert "e1" in out and "│ web" not in out.split("┌")[-1]  # the last table: web deleted
    assert once(counted, "resurrect") == 0
    assert once(counted, "restart", "app.py") == 0  # by script: describe and restart, one connection
    assert once(counted, "ls") == 0
    statuses = {p["name"]: p["status"] for p in corral.jlist()}
    assert statuses == {"web": "online", "e1": "online"}


def _accepted(corral: Corral) -> int:
    """Connections the daemon accepted so far, this ping's included."""
    return int(json.loads(corral.run("ping").stdout)["connections"])


@pytest.mark.parametrize("wait", [[], ["--wait"]], ids=["default", "wait"])
def test_start_and_stop_of_one_app_are_one_round_trip_each(corral: Corral, wait: list[str]) -> None:
    """Counted by the daemon: each `corral` subprocess is one accepted connection."""
    write(corral.cwd / "app.py", APP)
    before = _accepted(corral)
    out = corral.run("start", "app.py", *wait, "--json")
    assert _accepted(corral) == before + 2  # start, and this ping
    [p] = json.loads(out.stdout)
    assert p["status"] == "online" and p["pid"] and pid_alive(p["pid"])  # spawned when it answers
    before = _accepted(corral)
    out = corral.run("stop", "app")
    assert _accepted(corral) == before + 2
    assert "stopped" in out.stdout and not pid_alive(p["pid"])


def test_start_answers_at_spawn_and_wait_waits_for_ready(corral: Corral) -> None:
    # never ready: with --wait the answer comes after listen_timeout (3 s) has judged it
    write(corral.cwd / "app.py", APP)
    corral.run("ping")
    t0 = time.monotonic()
    out = corral.run("start", "app.py", "--name", "now", "--wait-ready", "--listen-timeout", "3s", "--json")
    assert time.monotonic() - t0 < 3
    [p] = [p for p in json.loads(out.stdout) if p["name"] == "now"]
    assert p["status"] == "launching" and p["pid"] and pid_alive(p["pid"])
    out = corral.run("start", "app.py", "--name", "later", "--wait-ready", "--listen-timeout", "3s", "--wait", "--json")
    assert time.monotonic() - t0 >= 3
    [p] = [p for p in json.loads(out.stdout) if p["name"] == "later"]
    assert p["restarts"] >= 1  # settled: the listen timeout judged its first run (and it was restarted)
    out = corral.run("start", "app.py", "--name", "nowait", "--wait-ready", "--no-wait", "--json")  # the old spelling
    assert [p["status"] for p in json.loads(out.stdout) if p["name"] == "nowait"] == ["launching"]


def test_start_of_a_changed_file_answers_with_the_new_process(corral: Corral) -> None:
    # a changed definition restarts the app: the answer comes once the new process is spawned
    write(corral.cwd / "app.py", APP)
    write(corral.cwd / "eco.toml", ecosystem({"name": "web", "script": "app.py", "env": {"V": "1"}}))
    [old] = json.loads(corral.run("start", "eco.toml", "--json").stdout)
    write(corral.cwd / "eco.toml", ecosystem({"name": "web", "script": "app.py", "env": {"V": "2"}}))
    [new] = json.loads(corral.run("start", "eco.toml", "--json").stdout)
    assert new["status"] == "online" and new["pid"] and new["pid"] != old["pid"], (old, new)
    assert pid_alive(new["pid"]) and not pid_alive(old["pid"])
    with open(f"/proc/{new['pid']}/environ", "rb") as f:
        assert b"V=2" in f.read().split(b"\0")


@pytest.mark.parametrize("wait", [[], ["--wait"]], ids=["default", "wait"])
def test_start_reports_a_spawn_failure_with_exit_1(corral: Corral, wait: list[str]) -> None:
    # executable but not a program: exec fails (ENOEXEC), known when the spawn is done
    write(corral.cwd / "garbage", "\x00\x01 not a program\n")
    os.chmod(corral.cwd / "garbage", 0o755)
    out = corral.run("start", "./garbage", *wait, check=False)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    assert "garbage (id 0) could not start" in out.stderr and "Exec format error" in out.stderr, out.stderr
    assert "garbage" in out.stdout  # the table is printed all the same


# ---------------------------------------------------------------- no tracebacks


def test_kill_racing_kill_prints_no_traceback(corral: Corral) -> None:
    write(corral.cwd / "app.py", APP)
    corral.run("start", "app.py")
    pid = corral.daemon_pid()
    procs = [subprocess.Popen([sys.executable, "-m", "corral", "kill"], cwd=corral.cwd, env=corral.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert "Traceback" not in err and "Traceback" not in out, err
        assert p.returncode in (0, 1), err
        assert len(err.strip().splitlines()) == 1, err
    wait_until(lambda: pid is not None and not pid_alive(pid))


def test_daemon_killed_during_a_command_is_one_line(corral: Corral) -> None:
    # an app that ignores SIGINT: `stop` waits its kill_timeout, and the daemon dies meanwhile
    write(corral.cwd / "stubborn.py", "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    time.sleep(1)\n")
    corral.run("start", "stubborn.py", "--kill-timeout", "20s")
    wait_until(lambda: corral.proc("stubborn")["status"] == "online")
    pid = corral.daemon_pid()
    assert pid
    stop = subprocess.Popen([sys.executable, "-m", "corral", "stop", "stubborn"], cwd=corral.cwd, env=corral.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: _status_of(corral) == "stopping", message="stop under way")
    app_pid = _app_pid(corral)
    os.kill(pid, signal.SIGKILL)
    out, err = stop.communicate(timeout=60)
    assert stop.returncode == 1, err
    assert "Traceback" not in err and err.startswith("corral: error:") and len(err.strip().splitlines()) == 1, err
    if app_pid and pid_alive(app_pid):
        os.kill(app_pid, signal.SIGKILL)


def _status_of(corral: Corral) -> str | None:
    out = subprocess.run([sys.executable, "-c", "from corral.cli.client import Client; import json; print(json.dumps(Client().call('list', autostart=False)))"], env=corral.env, capture_output=True, text=True, timeout=30)
    processes = json.loads(out.stdout) if out.returncode == 0 else []
    return processes[0]["status"] if processes else None


def _app_pid(corral: Corral) -> int | None:
    try:
        return int(corral.proc("stubborn")["pid"])
    except (KeyError, TypeError, AssertionError):
        return None


class FakeDaemon:
    """A control socket that misbehaves the given way on every connection."""

    def __init__(self, path: Path, how: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(16)
        self.how = how
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.recv(65536)
                    if self.how == "half":
                        conn.sendall(b'{"v": 1, "id": 1, "ok": true, "result": [{"id"')
                    elif self.how == "reset":
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    elif self.how == "garbage":
                        conn.sendall(b"not json at all\n")
                    elif self.how == "wrong":
                        conn.sendall(b'{"v": 1, "id": 1, "ok": true, "result": 42}\n')
                except OSError:
                    pass

    def close(self) -> None:
        self.stop = True
        self.sock.close()


@pytest.mark.parametrize("how", ["half", "reset", "garbage", "close", "wrong"])
@pytest.mark.parametrize("argv", [["ls"], ["jlist"], ["ping"], ["stop", "web"], ["describe", "web"], ["logs", "--nostream"], ["kill"]])
def test_a_broken_daemon_is_one_line_and_exit_1(tmp_path: Path, how: str, argv: list[str]) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    fake = FakeDaemon(home / "corral.sock", how)
    env: dict[str, Any] = dict(os.environ, CORRAL_HOME=str(home))
    try:
        out = subprocess.run([sys.executable, "-m", "corral", *argv], env=env, capture_output=True, text=True, timeout=30)
    finally:
        fake.close()
    assert "Traceback" not in out.stderr, out.stderr
    if argv == ["kill"] or how == "wrong":
        # a reply of the wrong shape: any exit but a crash (jlist prints what it got)
        assert out.returncode in (0, 1) and len(out.stderr.strip().splitlines()) <= 1, out.stderr
        return
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("corral: "), out.stderr
