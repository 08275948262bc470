"""The HTTP endpoint under abuse, on a real daemon: DNS rebinding, idle connections, fd exhaustion."""

from __future__ import annotations

import os
import resource
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import Corral, free_port, wait_until

MAX_CONNECTIONS = 64


def request(port: int, host: str | None) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        head = "GET /healthz HTTP/1.1\r\n" + (f"Host: {host}\r\n" if host else "") + "Connection: close\r\n\r\n"
        s.sendall(head.encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    parts = data.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def answers(port: int) -> bool:
    try:
        return request(port, f"127.0.0.1:{port}") == 200
    except OSError:
        return False


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture
def endpoint(corral: Corral) -> tuple[Corral, int, int]:
    port = free_port()
    corral.env["CORRAL_HTTP"] = f"127.0.0.1:{port}"
    corral.run("ping")
    wait_until(lambda: answers(port), timeout=10, message="the HTTP endpoint answers")
    pid = corral.daemon_pid()
    assert pid is not None
    return corral, port, pid


def test_host_header_must_name_the_endpoint(endpoint: tuple[Corral, int, int]) -> None:
    _corral, port, _pid = endpoint
    assert request(port, "evil.example") == 403  # a page on evil.example rebound to 127.0.0.1
    assert request(port, f"evil.example:{port}") == 403
    assert request(port, f"localhost:{port}") == 200
    assert request(port, f"127.0.0.1:{port}") == 200
    assert request(port, None) == 200  # HTTP/1.0-style tools


def test_idle_connections_are_capped_and_time_out(endpoint: tuple[Corral, int, int]) -> None:
    corral, port, pid = endpoint
    base = open_fds(pid)
    idle = []
    try:
        for _ in range(300):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        corral.run("ping")  # the control socket is not affected
        fds = open_fds(pid)
        assert fds <= base + MAX_CONNECTIONS + 16, f"{fds - base} more fds with 300 idle connections"
        # the held ones are let go after the head timeout: the endpoint answers again
        wait_until(lambda: answers(port), timeout=15, interval=0.2, message="the endpoint answers after idle connections time out")
    finally:
        for s in idle:
            s.close()
    log = (corral.home / "corral.log").read_text()
    assert "Traceback" not in log


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to lower another process's fd limit (prlimit)")
def test_accept_failures_are_reported_once_not_as_a_traceback_each(endpoint: tuple[Corral, int, int]) -> None:
    corral, port, pid = endpoint
    log_path: Path = corral.home / "corral.log"
    before = log_path.stat().st_size
    old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    held = []
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_fds(pid) + 4, old[1]))
        for _ in range(60):
            try:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:
                break
        wait_until(lambda: "cannot accept a connection" in log_path.read_text(), timeout=10, message="accept failure reported")
        time.sleep(3)  # load, not a wait: the loop retries accept() every second meanwhile
    finally:
        for s in held:
            s.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, old)
    wait_until(lambda: answers(port), timeout=15, interval=0.2, message="the endpoint answers once fds are back")
    grown = log_path.read_bytes()[before:].decode(errors="replace")
    assert "Traceback" not in grown
    assert grown.count("cannot accept a connection") <= 2, grown
    assert len(grown) < 4096, f"corral.log grew by {len(grown)} bytes"
