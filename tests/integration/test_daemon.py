"""The daemon itself: control socket security, bad requests, stale files, start races, save/resurrect."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Corral, pid_alive, wait_until, write

SLEEPER = "import time\nwhile True:\n    time.sleep(0.5)\n"


def raw_exchange(sock_path: Path, payload: bytes) -> list[dict[str, Any]]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(sock_path))
    try:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the daemon may answer and close before reading everything (too large)
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    s.close()
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def test_socket_and_home_permissions(corral: Corral) -> None:
    corral.run("ping")
    assert stat.S_IMODE(os.stat(corral.home).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(corral.home / "corral.sock").st_mode) == 0o600


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"this is not json\n", "bad_json"),
        (b"[1,2,3]\n", "bad_request"),
        (b'{"v": 99, "id": 1, "cmd": "ping"}\n', "bad_version"),
        (b'{"v": 1, "id": 1, "cmd": "explode"}\n', "unknown_command"),
        (b'{"v": 1, "id": 1, "cmd": 5}\n', "bad_request"),
        (b'{"v": 1, "id": 1, "cmd": "stop", "args": {}}\n', "bad_args"),
        (b'{"v": 1, "id": 1, "cmd": "stop", "args": {"target": 5}}\n', "bad_args"),
        (b'{"v": 1, "id": 1, "cmd": "stop", "args": {"target": ["nope"]}}\n', "not_found"),
        (b'{"v": 1, "id": 1, "cmd": "start", "args": {"apps": [{"script": "x", "instances": "lots"}]}}\n', "bad_config"),
        (b'{"v": 1, "id": 1, "cmd": "start", "args": {"apps": [{"name": "x", "script": "/bin/true", "cwd": "/"}], "bogus": 1}}\n', "bad_args"),
        (b'{"v": 1, "id": 1, "cmd": "signal", "args": {"target": ["all"], "signal": "SIGNOPE"}}\n', "bad_args"),
    ],
)
def test_bad_requests_get_errors_and_daemon_survives(corral: Corral, payload: bytes, code: str) -> None:
    corral.run("ping")
    replies = raw_exchange(corral.home / "corral.sock", payload)
    assert replies and replies[0]["ok"] is False
    assert replies[0]["error"]["code"] == code, replies
    assert corral.run("ping").returncode == 0


def test_oversized_request(corral: Corral) -> None:
    corral.run("ping")
    big = b'{"v": 1, "cmd": "ping", "pad": "' + b"x" * (5 * 1024 * 1024) + b'"}\n'
    replies = raw_exchange(corral.home / "corral.sock", big)
    assert replies[0]["error"]["code"] == "too_large"
    assert corral.run("ping").returncode == 0


def test_peer_with_another_uid_is_refused(corral: Corral) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to connect as another uid")
    corral.run("ping")
    sock = corral.home / "corral.sock"
    # open the door on purpose: only the SO_PEERCRED check is left to refuse
    os.chmod(corral.home, 0o755)
    os.chmod(sock, 0o666)
    try:
        r, w = os.pipe()
        # the home's ancestors (pytest's tmp dirs) are closed to others: reach the socket
        # by a path relative to the working directory, entered before dropping privileges
        child = os.fork()
        if child == 0:  # connect as nobody, report the reply through the pipe
            try:
                os.close(r)
                os.chdir(corral.home)
                os.setgid(65534)
                os.setuid(65534)
                s = socket.socket(socket.AF_UNIX)
                s.settimeout(10)
                s.connect("corral.sock")
                try:
                    s.sendall(b'{"v":1,"id":1,"cmd":"list"}\n')
                except BrokenPipeError:
                    pass  # refused before the request was even read: the reply is waiting
                os.write(w, s.makefile("rb").readline())
            except BaseException as e:
                os.write(w, json.dumps({"child_error": repr(e)}).encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            data = f.read()
        os.waitpid(child, 0)
        reply = json.loads(data)
        assert "child_error" not in reply, reply
        assert reply["ok"] is False and reply["error"]["code"] == "forbidden"
    finally:
        os.chmod(corral.home, 0o700)
        os.chmod(sock, 0o600)


def test_stale_socket_and_pid_file_are_replaced(corral: Corral) -> None:
    corral.home.mkdir(mode=0o700)
    # a socket file nobody listens on, and a pid file naming a dead process
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(corral.home / "corral.sock"))
    s.close()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (corral.home / "corral.pid").write_text(f"{dead.pid}\n")
    out = json.loads(corral.run("ping").stdout)
    assert out["pid"] != dead.pid and pid_alive(out["pid"])
    assert corral.daemon_pid() == out["pid"]


def test_racing_clis_start_one_daemon(corral: Corral) -> None:
    def ping(_: int) -> int:
        return int(json.loads(corral.run("ping").stdout)["pid"])

    with ThreadPoolExecutor(6) as pool:
        pids = set(pool.map(ping, range(6)))
    assert len(pids) == 1
    import psutil

    def daemons() -> list[int]:
        found = []
        for p in psutil.process_iter(["cmdline", "environ", "status"]):
            if p.info["status"] == psutil.STATUS_ZOMBIE or not p.info["cmdline"]:
                continue
            if "corral.daemon" in " ".join(p.info["cmdline"]) and (p.info["environ"] or {}).get("CORRAL_HOME") == str(corral.home):
                found.append(p.pid)
        return found

    # the losers of the race exit on their own once they see the lock taken
    wait_until(lambda: daemons() == list(pids), timeout=10)


def test_save_and_resurrect_with_bak_fallback(corral: Corral) -> None:
    write(corral.cwd / "a.py", SLEEPER)
    write(corral.cwd / "b.py", SLEEPER)
    assert corral.run("save", check=False).returncode == 1  # empty list refused
    corral.run("start", "a.py", "-i", "2")
    corral.run("save")
    corral.run("start", "b.py")
    corral.run("stop", "b")
    corral.run("save")
    dump = json.loads((corral.home / "dump.json").read_text())
    assert [a["config"]["name"] for a in dump["apps"]] == ["a", "b"]
    assert (corral.home / "dump.json.bak").exists()
    assert stat.S_IMODE(os.stat(corral.home / "dump.json").st_mode) == 0o600
    corral.run("kill")
    corral.run("resurrect")
    procs = corral.jlist()
    assert sorted((p["name"], p["status"]) for p in procs) == [("a", "online"), ("a", "online"), ("b", "stopped")]
    # corrupt dump: falls back to the .bak, which has just 'a'
    corral.run("kill")
    (corral.home / "dump.json").write_text("{ not json")
    out = corral.run("resurrect")
    assert "dump.json.bak" in out.stderr
    assert sorted(p["name"] for p in corral.jlist()) == ["a", "a"]


def test_bad_config_exits_2_and_starts_nothing(corral: Corral) -> None:
    write(corral.cwd / "ok.py", SLEEPER)
    write(
        corral.cwd / "ecosystem.toml",
        '[[apps]]\nname = "good"\nscript = "ok.py"\n\n[[apps]]\nname = "bad"\nscript = "ok.py"\nmax_restarts = "many"\n',
    )
    out = corral.run("start", "ecosystem.toml", check=False)
    assert out.returncode == 2
    assert "ecosystem.toml: app 'bad': key 'max_restarts'" in out.stderr
    assert corral.jlist() == []


def test_unknown_key_warns_with_suggestion(corral: Corral) -> None:
    write(corral.cwd / "ok.py", SLEEPER)
    write(corral.cwd / "ecosystem.json", json.dumps({"apps": [{"name": "w", "script": "ok.py", "instance": 2}]}))
    out = corral.run("start", "ecosystem.json")
    assert "unknown key 'instance': did you mean 'instances'?" in out.stderr
    assert len(corral.jlist()) == 1


def test_missing_script_and_nothing_matched(corral: Corral) -> None:
    out = corral.run("start", "nope.py", check=False)
    assert out.returncode == 2 and "nope.py" in out.stderr
    out = corral.run("stop", "ghost", check=False)
    assert out.returncode == 1 and "ghost" in out.stderr


def test_describe_hides_secrets_unless_asked(corral: Corral) -> None:
    write(corral.cwd / "s.py", SLEEPER)
    write(corral.cwd / "ecosystem.yaml", "apps:\n  - name: s\n    script: s.py\n    env:\n      API_TOKEN: hunter2\n      COLOR: blue\n")
    corral.run("start")
    hidden = corral.run("describe", "s").stdout
    assert "hunter2" not in hidden and "API_TOKEN=<hidden>" in hidden and "COLOR=blue" in hidden
    assert "hunter2" not in corral.run("ls").stdout
    shown = corral.run("describe", "s", "--env").stdout
    assert "API_TOKEN=hunter2" in shown
