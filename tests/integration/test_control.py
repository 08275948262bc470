"""The control socket on a real daemon: replies carry what the CLI prints, the
connection counter, per-client limits, validation before allocation, the
instance ceiling, and followers bounded in bytes."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import Corral, wait_until, write

SLEEPER = "import time\nwhile True:\n    time.sleep(0.5)\n"


class Conn:
    """One raw control connection (several requests in turn)."""

    def __init__(self, home: Path, timeout: float = 30) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(home / "corral.sock"))
        self.file = self.sock.makefile("rb")
        self.next_id = 1

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> dict[str, Any]:
        line = self.file.readline()
        assert line, "the daemon closed the connection"
        msg: dict[str, Any] = json.loads(line)
        return msg

    def call(self, cmd: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        self.send(json.dumps({"v": 1, "id": self.next_id, "cmd": cmd, "args": args or {}}).encode() + b"\n")
        self.next_id += 1
        return self.read()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def call(corral: Corral, cmd: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    c = Conn(corral.home)
    try:
        return c.call(cmd, args)
    finally:
        c.close()


def app(corral: Corral, name: str, **keys: Any) -> dict[str, Any]:
    """An app definition as the CLI sends it (the loaded spec as plain data)."""
    from corral.config.loader import load_apps
    from corral.core.appspec import to_wire

    script = write(corral.cwd / f"{name}.py", SLEEPER)
    loaded = load_apps({"name": name, "script": str(script), "instances": 1}, label="test", base_dir=corral.cwd)
    definition: dict[str, Any] = to_wire(loaded.apps[0])
    definition.update(keys)  # the daemon checks them again (registry.decode_app)
    return definition


def daemon_rss(corral: Corral) -> int:
    pid = corral.daemon_pid()
    assert pid
    return int(psutil.Process(pid).memory_info().rss)


def table(processes: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    return [(p["id"], p["name"], p["status"]) for p in processes]


# ---------------------------------------------------------------- one round trip


def test_state_changing_replies_carry_the_whole_list(corral: Corral) -> None:
    corral.run("ping")
    start = call(corral, "start", {"apps": [app(corral, "a", instances=2), app(corral, "b")]})
    assert start["ok"], start
    res = start["result"]
    assert table(res["all"]) == table(call(corral, "list")["result"])
    assert [p["status"] for p in res["all"]] == ["online"] * 3
    for cmd, args in (
        ("stop", {"target": ["b"]}),
        ("restart", {"target": ["b"]}),
        ("reset", {"target": ["a"]}),
        ("signal", {"target": ["a"], "signal": "SIGCONT"}),
        ("scale", {"name": "a", "count": "3"}),
        ("reload", {"target": ["b"]}),
        ("delete", {"target": ["b"]}),
    ):
        reply = call(corral, cmd, args)
        assert reply["ok"], (cmd, reply)
        listed = call(corral, "list")["result"]
        assert table(reply["result"]["all"]) == table(listed), cmd
    assert [p["name"] for p in listed] == ["a", "a", "a"]


def test_ping_counts_connections(corral: Corral) -> None:
    corral.run("ping")
    before = call(corral, "ping")["result"]["connections"]
    c = Conn(corral.home)
    try:  # several requests on one connection count once
        c.call("list")
        c.call("list")
    finally:
        c.close()
    after = call(corral, "ping")["result"]["connections"]
    assert after - before == 2  # the connection above, and this ping


def test_start_without_wait_answers_before_the_app_settles(corral: Corral) -> None:
    corral.run("ping")
    # waits for READY=1, which never comes: settling takes listen_timeout
    slow = app(corral, "slow", wait_ready=True, listen_timeout=60_000)
    reply = call(corral, "start", {"apps": [slow], "wait": False})
    assert reply["ok"], reply
    assert [p["status"] for p in reply["result"]["processes"]] == ["launching"]
    assert reply["result"]["all"][0]["status"] == "launching"


# ---------------------------------------------------------------- per-client limits


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\xff\xfe garbage \x80\n",
        b"{" * 10_000 + b"\n",
        b'{"v": 1, "cmd": "ping", "args": [1]}\n',
        b'{"v": 1, "cmd": "start", "args": {"apps": [1, 2]}}\n',
        b'{"v": 1, "cmd": "start", "args": {"apps": [{"name": {"x": 1}}]}}\n',
        b'{"v": 1, "cmd": "scale", "args": {"name": "nope", "count": "1e999"}}\n',
        b'{"v": 1, "cmd": "subscribe", "args": {"grep": "("}}\n',
        b'{"v": 1, "cmd": "list", "args": {"target": 1}}\n',
        b'{"v": 1, "cmd": "start", "args": {"apps": [{"name": "x", "script": "/bin/true", "cwd": "/", "env_names": 5}]}}\n',
        b'{"v": 1, "cmd": "env", "args": {"id": 99999999999999999999}}\n',
    ],
)
def test_garbage_gets_an_error_reply(corral: Corral, garbage: bytes) -> None:
    corral.run("ping")
    c = Conn(corral.home)
    try:
        c.send(garbage)
        reply = c.read()
        assert reply["ok"] is False and reply["error"]["code"] and reply["error"]["message"], reply
        assert c.call("ping")["ok"]  # the same connection still works
    finally:
        c.close()


def test_a_stalled_client_does_not_stall_others(corral: Corral) -> None:
    corral.run("ping")
    slow = Conn(corral.home)
    try:
        slow.send(b'{"v": 1, "cmd": "pi')  # half a request, then nothing
        started = time.monotonic()
        assert call(corral, "ping")["ok"]
        assert time.monotonic() - started < 5
    finally:
        slow.close()


def test_too_many_clients_are_refused_then_served(corral: Corral) -> None:
    from corral.core import protocol

    corral.run("ping")
    idle = [Conn(corral.home) for _ in range(protocol.MAX_CLIENTS)]
    try:
        for c in idle:  # each is accepted and served, and stays open
            assert c.call("ping")["ok"]
        extra = Conn(corral.home)
        try:
            reply = extra.read()
            assert reply["ok"] is False and reply["error"]["code"] == "busy", reply
        finally:
            extra.close()
    finally:
        for c in idle:
            c.close()
    wait_until(lambda: call(corral, "ping")["ok"], timeout=10)


def test_huge_instances_is_refused_before_anything_is_allocated(corral: Corral) -> None:
    corral.run("ping")
    rss = daemon_rss(corral)
    for count in (18446744073709551616, 100_000):
        started = time.monotonic()
        reply = call(corral, "start", {"apps": [app(corral, "huge", instances=count)]})
        assert reply["ok"] is False and reply["error"]["code"] == "bad_config", reply
        message = reply["error"]["message"]
        # the key's own range (config/keys.py) refuses it before the daemon-wide ceiling is asked
        assert "app 'huge'" in message and "key 'instances'" in message and "from -1024 to 1024" in message, message
        assert time.monotonic() - started < 5
    assert call(corral, "list")["result"] == []
    assert daemon_rss(corral) < rss + 16 * 1024 * 1024


def test_instance_ceiling_from_corral_toml(corral: Corral) -> None:
    corral.home.mkdir(mode=0o700)
    (corral.home / "corral.toml").write_text("[daemon]\nmax_instances = 3\n")
    corral.run("ping")
    assert call(corral, "start", {"apps": [app(corral, "a", instances=2)]})["ok"]
    refused = call(corral, "start", {"apps": [app(corral, "b", instances=2)]})
    assert refused["ok"] is False and refused["error"]["code"] == "bad_config"
    assert "app 'b'" in refused["error"]["message"] and "ceiling of 3" in refused["error"]["message"]
    scaled = call(corral, "scale", {"name": "a", "count": "+2"})
    assert scaled["ok"] is False and scaled["error"]["code"] == "bad_args"
    assert "args.count" in scaled["error"]["message"]
    assert call(corral, "scale", {"name": "a", "count": "3"})["ok"]
    # redefining a known app counts its new number, not old + new
    assert call(corral, "start", {"apps": [app(corral, "a", instances=3)]})["ok"]
    assert [p["name"] for p in call(corral, "list")["result"]] == ["a", "a", "a"]
    # the CLI shows the error, naming the app and key
    write(corral.cwd / "eco.toml", f'[[apps]]\nname = "c"\nscript = "{corral.cwd / "a.py"}"\ninstances = 5\n')
    out = corral.run("start", "eco.toml", check=False)
    assert out.returncode != 0 and "max_instances" in out.stderr and "Traceback" not in out.stderr


# ---------------------------------------------------------------- followers bounded in bytes

FLOOD = """
import sys
pad = "y" * 4000
for i in range(int(sys.argv[1])):
    sys.stdout.write(f"{i:08d} {pad}\\n")
sys.stdout.flush()
"""


def test_stalled_follower_is_dropped_and_memory_stays_bounded(corral: Corral) -> None:
    """A follower that never reads, under a 50 MB flood: dropped with a notice; the daemon's
    RSS stays under its size before + 24 MiB throughout (measured: +3 MiB; the follower's
    bound is 4 MiB), and within 16 MiB of it after."""
    write(corral.cwd / "flood.py", FLOOD)
    write(corral.cwd / "idle.py", SLEEPER)
    corral.run("start", "idle.py")
    base = daemon_rss(corral)
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(str(corral.home / "corral.sock"))
    stalled.sendall(b'{"v": 1, "id": 1, "cmd": "subscribe", "args": {"target": ["all"]}}\n')
    peak = base
    try:
        n = 12_500  # 4 KB lines: 50 MB
        corral.run("start", "flood.py", "--no-autorestart", "--", str(n))

        def done() -> bool:
            nonlocal peak
            peak = max(peak, daemon_rss(corral))
            return bool(corral.proc("flood")["status"] == "stopped")

        wait_until(done, timeout=120, interval=0.05)
        out = corral.home / "logs" / "flood-out.log"
        wait_until(lambda: out.stat().st_size == n * 4010, timeout=30)
        peak = max(peak, daemon_rss(corral))
        assert peak < base + 24 * 1024 * 1024, (base, peak)
        # what the stalled follower gets when it reads at last: the notice, then the end
        stalled.settimeout(20)
        data = b""
        while chunk := stalled.recv(1 << 20):
            data += chunk
        last = json.loads(data.splitlines()[-1])
        assert last == {"v": 1, "stream": "notice", "message": "follower too slow: dropped"}
    finally:
        stalled.close()
    wait_until(lambda: daemon_rss(corral) < base + 16 * 1024 * 1024, timeout=10, message="memory back after the follower left")
    assert corral.proc("idle")["status"] == "online"


def test_corral_toml_daemon_table_errors_are_reported(corral: Corral) -> None:
    corral.home.mkdir(mode=0o700)
    (corral.home / "corral.toml").write_text("[daemon]\nmax_instances = 0\n")
    corral.run("ping")
    reply = call(corral, "start", {"apps": [app(corral, "a")]})
    assert reply["ok"]  # a bad setting falls back to the default ceiling, logged
    assert "daemon.max_instances" in (corral.home / "corral.log").read_text()


def test_cli_start_and_stop_are_one_round_trip_each(corral: Corral) -> None:
    """Counted by the daemon: the real CLI, in its own process, opens one connection per command."""
    write(corral.cwd / "one.py", SLEEPER)
    corral.run("ping")

    def connections() -> int:
        count: int = call(corral, "ping")["result"]["connections"]
        return count

    for argv in (("start", "one.py"), ("stop", "one"), ("restart", "one"), ("delete", "one")):
        before = connections()
        out = corral.run(*argv)
        assert "one" in out.stdout  # the table printed from the reply
        assert connections() - before == 2, argv  # the command, and the ping that counts
