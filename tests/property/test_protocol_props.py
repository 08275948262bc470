"""Property: any message sent to a real daemon gets an error reply (or a reply), never a crash.

Arbitrary bytes, arbitrary JSON, and request-shaped objects with real and
made-up commands and fields go to one daemon over its control socket; after
each, the daemon must still answer ``ping`` within 1 s.  ``kill`` (a valid
request that ends the daemon) is never sent.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.core import commands, protocol
from tests.conftest import Corral, pid_alive
from tests.reliability.conftest import rss_bytes

SAFE_COMMANDS = sorted(c.name for c in commands.COMMANDS if c.name not in ("kill", "start", "reload"))
APP_COMMANDS = ["start", "reload"]
FIELDS = sorted({p.name for c in commands.COMMANDS for p in c.params})
SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

scalars = st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**80), max_value=2**80) | st.floats() | st.text(max_size=30) | st.sampled_from(["all", "0", "-1", "web", "SIGKILL", "9", ".*", "(", "a" * 300])
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=15)


def requests(cmds: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"v": st.just(1) | json_values, "cmd": st.sampled_from(cmds) | st.text(max_size=12) | json_values},
        optional={"id": json_values, "args": st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), json_values, max_size=5) | json_values},
    )


def line_of(msg: Any) -> bytes:
    return json.dumps(msg).encode() + b"\n"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corral]:
    base = tmp_path_factory.mktemp("props")
    (base / "work").mkdir()
    c = Corral(base / "home", base / "work")
    c.run("ping")
    try:
        yield c
    finally:
        c.shutdown()


def send(home: Path, line: bytes, timeout: float = 10.0) -> bytes:
    """One line on a fresh connection; the first reply line (b'' when none came)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(home / "corral.sock"))
        s.sendall(line)
        data = b""
        while b"\n" not in data:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
    return data.split(b"\n", 1)[0]


def check_alive(daemon: Corral) -> None:
    pid = daemon.daemon_pid()
    assert pid is not None and pid_alive(pid), "the daemon died"
    started = time.monotonic()
    reply = json.loads(send(daemon.home, protocol.request("ping"), timeout=1.0))
    assert reply["ok"] is True
    assert time.monotonic() - started < 1.0, "ping took over 1 s"


def check_reply(raw: bytes, expect_reply: bool = True) -> None:
    if not expect_reply:
        return
    assert raw, "no reply"
    reply = json.loads(raw)
    assert reply.get("v") == protocol.VERSION and isinstance(reply.get("ok"), bool)
    if not reply["ok"]:
        assert reply["error"]["code"] != "internal", reply  # an unexpected exception in the daemon
        assert reply["error"]["message"]


@SETTINGS
@given(raw=st.binary(max_size=400))
def test_arbitrary_bytes_get_an_error_reply(daemon: Corral, raw: bytes) -> None:
    raw = raw.replace(b"\n", b" ")
    expect_reply = bool(raw.strip())
    # a blank line is skipped without a reply: do not wait the full timeout for one
    reply = send(daemon.home, raw + b"\n", timeout=10.0 if expect_reply else 0.2)
    check_reply(reply, expect_reply=expect_reply)
    check_alive(daemon)


@SETTINGS
@given(msg=json_values)
def test_arbitrary_json_gets_an_error_reply(daemon: Corral, msg: Any) -> None:
    check_reply(send(daemon.home, line_of(msg)))
    check_alive(daemon)


@SETTINGS
@given(msg=requests(SAFE_COMMANDS))
def test_request_shaped_messages_get_a_reply(daemon: Corral, msg: dict[str, Any]) -> None:
    check_reply(send(daemon.home, line_of(msg)))
    check_alive(daemon)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(apps=st.lists(st.dictionaries(st.sampled_from(["name", "script", "args", "instances", "env", "cwd", "interpreter", "exec_mode", "max_memory_restart", "kill_timeout", "listen", "out_file"]) | st.text(max_size=8), json_values, max_size=6), max_size=3), cmd=st.sampled_from(APP_COMMANDS))
def test_app_commands_with_arbitrary_app_objects_get_a_reply(daemon: Corral, apps: list[Any], cmd: str) -> None:
    check_reply(send(daemon.home, protocol.request(cmd, {"apps": apps}), timeout=20))
    check_alive(daemon)


def test_daemon_memory_stayed_bounded(daemon: Corral) -> None:
    pid = daemon.daemon_pid()
    assert pid is not None
    assert rss_bytes(pid) < 300 * 1024 * 1024
