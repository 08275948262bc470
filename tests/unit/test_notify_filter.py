"""Cheap rejection of foreign notify datagrams: uid first, then the parent chain, reports rate limited."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from corral.system.notify import NotifySocket, RateLimit, descends_from, parent_of

NOBODY = 65534


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        ([0, 1, 2, 3], [(True, 0), (False, 0), (False, 0), (False, 0)]),
        ([0, 1, 10, 11, 25], [(True, 0), (False, 0), (True, 1), (False, 0), (True, 1)]),
        ([0, 10, 20], [(True, 0), (True, 0), (True, 0)]),
    ],
)
def test_rate_limit_reports_once_per_interval_with_the_held_count(times: list[float], expected: list[tuple[bool, int]]) -> None:
    clock = FakeClock()
    limit = RateLimit(10.0, clock)
    got = []
    for t in times:
        clock.now = 100.0 + t
        got.append(limit.allow())
    assert got == expected


def test_parent_chain() -> None:
    assert parent_of(os.getpid()) == os.getppid()
    assert descends_from(os.getpid(), os.getpid())
    assert descends_from(os.getpid(), os.getppid())
    assert descends_from(1, os.getpid()) is False  # pid 1 ends the walk
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert descends_from(child.pid, os.getpid())
        assert not descends_from(os.getpid(), child.pid)
    finally:
        child.kill()
        child.wait()
    assert descends_from(child.pid, os.getpid()) is False  # gone
    assert parent_of(2**22 + 12345) is None


SENDER = """
import os, socket, sys
uid = int(sys.argv[2])
if uid != os.getuid():
    os.setgid(uid); os.setuid(uid)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for i in range(int(sys.argv[3])):
    try:
        s.sendto(b"READY=1\\nSTATUS=forged", "\\0" + sys.argv[1])
    except BlockingIOError:
        pass
"""


def drain(ns: NotifySocket, deadline: float) -> None:
    while time.monotonic() < deadline:
        ns.on_readable()
        time.sleep(0.01)


def send(ns: NotifySocket, uid: int, count: int) -> None:
    """A sender process (as ``uid``) sends ``count`` datagrams while we read them (the queue is short)."""
    proc = subprocess.Popen([sys.executable, "-c", SENDER, ns.address[1:], str(uid), str(count)])
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        ns.on_readable()
        time.sleep(0.001)
    if proc.poll() is None:
        proc.kill()
    assert proc.wait() == 0
    drain(ns, time.monotonic() + 0.2)


def address() -> str:
    return f"@corral-test/{os.getpid()}/{time.monotonic_ns()}"


def test_datagrams_from_outside_the_daemon_tree_are_ignored_and_reported_rarely() -> None:
    got: list[tuple[int, dict[str, str]]] = []
    reports: list[str] = []
    # ancestor: a process no sender descends from (this test's own child)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        ns = NotifySocket(address(), lambda pid, msg: got.append((pid, msg)), on_ignored=reports.append, ancestor=other.pid)
        try:
            send(ns, os.getuid(), 50)
            assert got == [] and ns.ignored == 50
            assert len(reports) == 1 and "outside the daemon's process tree" in reports[0]
        finally:
            ns.close()
    finally:
        other.kill()
        other.wait()


def test_datagrams_from_the_daemon_tree_are_delivered() -> None:
    got: list[tuple[int, dict[str, str]]] = []
    ns = NotifySocket(address(), lambda pid, msg: got.append((pid, msg)), on_ignored=None)
    try:
        send(ns, os.getuid(), 3)
        assert len(got) == 3 and got[0][1] == {"READY": "1", "STATUS": "forged"}
    finally:
        ns.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to send as another uid (nobody)")
def test_foreign_uid_is_dropped_before_any_proc_work(monkeypatch: pytest.MonkeyPatch) -> None:
    import corral.system.notify as notify

    walks: list[int] = []
    real = notify.descends_from
    monkeypatch.setattr(notify, "descends_from", lambda pid, anc, depth=64: walks.append(pid) or real(pid, anc, depth))
    got: list[int] = []
    ns = NotifySocket(address(), lambda pid, msg: got.append(pid), uids={0}, on_ignored=None)
    try:
        send(ns, NOBODY, 200)
        assert ns.ignored == 200 and got == [] and walks == []
    finally:
        ns.close()


def test_abstract_address_round_trip() -> None:
    got: list[int] = []
    name = address()
    ns = NotifySocket(name, lambda pid, msg: got.append(pid), on_ignored=None)
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(b"READY=1", "\0" + name[1:])
        s.close()
        drain(ns, time.monotonic() + 0.2)
        assert got == [os.getpid()]
    finally:
        ns.close()
