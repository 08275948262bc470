"""Log capture on real processes: no line lost, whole lines, formats, following, flush and reopen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from tests.conftest import Corral, wait_until, write

FLOOD = """
import sys
n = int(sys.argv[1])
w = sys.stdout.write
pad = "x" * 80
for i in range(n):
    w(f"{i:010d} {pad}\\n")
sys.stdout.flush()
"""


def test_million_lines_none_lost(corral: Corral) -> None:
    n = 1_000_000
    write(corral.cwd / "flood.py", FLOOD)
    corral.run("start", "flood.py", "--no-autorestart", "--", str(n))
    out = corral.home / "logs" / "flood-out.log"
    wait_until(lambda: corral.proc("flood")["status"] == "stopped", timeout=120)
    data = out.read_bytes()
    lines = data.split(b"\n")
    assert lines[-1] == b""
    lines.pop()
    assert len(lines) == n
    # every line whole and in order
    for i in (0, 1, n // 2, n - 1):
        assert lines[i] == f"{i:010d} {'x' * 80}".encode()
    assert all(len(line) == 91 for line in lines)


def test_flood_does_not_stall_control_socket(corral: Corral) -> None:
    write(corral.cwd / "flood.py", FLOOD)
    write(corral.cwd / "idle.py", "import time\ntime.sleep(600)\n")
    corral.run("start", "idle.py")
    corral.run("start", "flood.py", "--no-autorestart", "--", "3000000")
    # while it floods, the daemon answers and manages other apps
    for _ in range(3):
        assert corral.run("restart", "idle").returncode == 0
    assert corral.proc("idle")["status"] == "online"
    corral.run("stop", "flood")


def test_json_log_records_and_partial_last_line(corral: Corral) -> None:
    write(corral.cwd / "j.py", "import sys\nprint('first')\nprint('oops', file=sys.stderr)\nsys.stdout.write('no newline at end')\n")
    corral.run("start", "j.py", "--log-type", "json", "--no-autorestart", "-l", "combined.log")
    wait_until(lambda: corral.proc("j")["status"] == "stopped")
    out = [json.loads(line) for line in (corral.home / "logs" / "j-out.log").read_text().splitlines()]
    assert [r["message"] for r in out] == ["first", "no newline at end"]
    for r in out:
        assert set(r) == {"timestamp", "app_name", "process_id", "type", "message"}
        assert r["app_name"] == "j" and r["type"] == "out"
    err = [json.loads(line) for line in (corral.home / "logs" / "j-error.log").read_text().splitlines()]
    assert [(r["type"], r["message"]) for r in err] == [("err", "oops")]
    combined = (corral.cwd / "combined.log").read_text().splitlines()
    assert sorted(json.loads(c)["message"] for c in combined) == ["first", "no newline at end", "oops"]


def test_log_date_format_prefix(corral: Corral) -> None:
    write(corral.cwd / "d.py", "print('hello')\n")
    corral.run("start", "d.py", "--no-autorestart", "--log-date-format", "YYYY-MM-DD HH:mm:ss")
    wait_until(lambda: corral.proc("d")["status"] == "stopped")
    line = (corral.home / "logs" / "d-out.log").read_text().strip()
    stamp, _, msg = line.partition(": ")
    assert msg == "hello"
    assert time.strptime(stamp, "%Y-%m-%d %H:%M:%S")


def test_devnull_switches_a_log_off_and_merge_logs(corral: Corral) -> None:
    write(corral.cwd / "m.py", "import os,sys,time\nprint('i', os.environ['CORRAL_INSTANCE'], flush=True)\nprint('e', file=sys.stderr)\ntime.sleep(600)\n")
    corral.run("start", "m.py", "-i", "2", "--merge-logs", "-e", "/dev/null", "-o", "logs/m.log")
    log = corral.cwd / "logs" / "m.log"
    wait_until(lambda: log.exists() and sorted(log.read_text().splitlines()) == ["i 0", "i 1"])
    assert not list((corral.home / "logs").glob("m-error*"))


def test_logs_tail_and_follow(corral: Corral) -> None:
    app = "import sys,time\nfor i in range(30):\n    print('old', i)\nsys.stdout.flush()\ntime.sleep(600)\n"
    write(corral.cwd / "t.py", app)
    corral.run("start", "t.py")
    log = corral.home / "logs" / "t-out.log"
    wait_until(lambda: log.read_text().count("old") == 30)
    out = corral.run("logs", "t", "--lines", "5", "--nostream", "--raw").stdout.splitlines()
    assert out == [f"old {i}" for i in range(25, 30)]
    # follow: a new line written by the app reaches the follower
    follower = subprocess.Popen([sys.executable, "-m", "corral", "logs", "t", "--lines", "0", "--raw"], env=corral.env, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)  # let the follower subscribe (the assertion below waits on its output)
        corral.run("sendSignal", "SIGINT", "t")  # Python prints a traceback to stderr on SIGINT
        line = follower.stdout.readline() if follower.stdout else ""
        assert line.strip() == "Traceback (most recent call last):"
    finally:
        follower.terminate()
        follower.wait(5)


def test_flush_and_reload_logs(corral: Corral) -> None:
    write(corral.cwd / "r.py", "import time,itertools\nfor i in itertools.count():\n    print(i, flush=True)\n    time.sleep(0.02)\n")
    corral.run("start", "r.py")
    log = corral.home / "logs" / "r-out.log"
    wait_until(lambda: log.exists() and log.stat().st_size > 0)
    # external rotation: rename, then reloadLogs reopens a fresh file
    rotated = log.with_suffix(".log.1")
    os.rename(log, rotated)
    corral.run("reloadLogs")
    wait_until(lambda: log.exists() and log.stat().st_size > 0)
    corral.run("flush", "r")
    size_after = log.stat().st_size
    assert size_after < 64
    assert corral.run("flush", "all", check=False).returncode == 2  # needs --yes
    corral.run("flush", "all", "--yes")


def test_slow_follower_is_dropped_and_the_app_is_not_slowed(corral: Corral) -> None:
    import socket

    n = 300_000
    write(corral.cwd / "flood.py", FLOOD)
    write(corral.cwd / "idle.py", "import time\ntime.sleep(600)\n")
    corral.run("start", "idle.py")
    # a follower that subscribes and then reads nothing while the app floods
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(str(corral.home / "corral.sock"))
    slow.sendall(b'{"v": 1, "id": 1, "cmd": "subscribe", "args": {"target": ["all"]}}\n')
    fast = subprocess.Popen([sys.executable, "-m", "corral", "logs", "flood", "--lines", "0", "--raw"], env=corral.env, stdout=subprocess.PIPE)
    try:
        corral.run("start", "flood.py", "--no-autorestart", "--", str(n))
        # the app runs to the end and every line reaches the file, whatever the slow follower does
        wait_until(lambda: corral.proc("flood")["status"] == "stopped", timeout=60)
        out = corral.home / "logs" / "flood-out.log"
        wait_until(lambda: out.stat().st_size == n * 92, timeout=30)
        assert corral.run("ls").returncode == 0  # the control socket answers meanwhile
        # now read what the slow follower got: a notice that it was dropped, then the end
        slow.settimeout(20)
        data = b""
        while chunk := slow.recv(1 << 20):
            data += chunk
        messages = [json.loads(line) for line in data.splitlines() if line.strip()]
        assert messages[0]["ok"] is True
        logs = [m for m in messages if m.get("stream") == "log"]
        assert len(logs) < n
        assert messages[-1] == {"v": 1, "stream": "notice", "message": "follower too slow: dropped"}
    finally:
        slow.close()
        fast.terminate()
        fast.wait(10)
    assert corral.proc("idle")["status"] == "online"
