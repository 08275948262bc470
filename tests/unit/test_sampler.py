"""Process-tree sampling: children_map / tree / sample_tree on a fake /proc table, read_stat on real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from corral.daemon import sampler
from corral.daemon.sampler import (
    HISTORY,
    TICKS,
    ProcStat,
    TreeSampler,
    children_map,
    forget,
    read_stat,
    sample_tree,
    snapshot,
    tree,
)
from tests.conftest import wait_until

MB = 1 << 20


def table(*rows: tuple[int, int, int, int]) -> dict[int, ProcStat]:
    """(pid, ppid, cpu ticks, rss) rows."""
    return {pid: ProcStat(pid, ppid, ticks, rss) for pid, ppid, ticks, rss in rows}


# init(1) -> app(100) -> worker(101) -> helper(102)
#                     -> worker(103)
#         -> other(200) -> its child(201)
#         kernel thread(2, ppid 0)
BASE = table(
    (1, 0, 500, 4 * MB),
    (2, 0, 0, 0),
    (100, 1, 10, 20 * MB),
    (101, 100, 20, 30 * MB),
    (102, 101, 5, 1 * MB),
    (103, 100, 0, 2 * MB),
    (200, 1, 999, 100 * MB),
    (201, 200, 999, 100 * MB),
)


def test_children_map() -> None:
    kids = children_map(BASE)
    assert {k: sorted(v) for k, v in kids.items()} == {0: [1, 2], 1: [100, 200], 100: [101, 103], 101: [102], 200: [201]}


@pytest.mark.parametrize(
    ("root", "want"),
    [
        (100, [100, 101, 102, 103]),
        (101, [101, 102]),
        (102, [102]),
        (200, [200, 201]),
        (999, [999]),  # not in the table: just itself (sample_tree returns None for it)
    ],
)
def test_tree(root: int, want: list[int]) -> None:
    got = tree(root, children_map(BASE))
    assert got[0] == root
    assert sorted(got) == want
    assert len(got) == len(set(got))


def test_tree_is_breadth_first() -> None:
    # the table lists 100 before 200: children in table order, level by level
    assert tree(1, children_map(BASE)) == [1, 100, 200, 101, 103, 201, 102]


def test_sample_tree_sums_the_tree_and_cpu_from_two_ticks() -> None:
    s = TreeSampler()
    kids = children_map(BASE)
    u1 = sample_tree(s, 7, 100, BASE, kids, 1000.0, want_pss=False)
    assert u1 is not None
    assert u1.rss == (20 + 30 + 1 + 2) * MB  # the other tree does not count
    assert u1.pids == 4
    assert u1.cpu_percent == 0.0  # no previous tick
    assert u1.cpu_seconds == pytest.approx(35 / TICKS)
    assert u1.pss is None and u1.memory == u1.rss

    # 2 s later the tree used TICKS ticks (1 CPU second) more, spread over two processes: 50 %
    later = dict(BASE)
    later[101] = ProcStat(101, 100, 20 + TICKS // 2, 40 * MB)
    later[102] = ProcStat(102, 101, 5 + TICKS - TICKS // 2, 1 * MB)
    later[200] = ProcStat(200, 1, 999 + 10 * TICKS, 100 * MB)  # another tree: not ours
    u2 = sample_tree(s, 7, 100, later, children_map(later), 1002.0, want_pss=False)
    assert u2 is not None
    assert u2.cpu_percent == pytest.approx(50.0)
    assert u2.rss == (20 + 40 + 1 + 2) * MB
    assert u2.cpu_seconds == pytest.approx((35 + TICKS) / TICKS)

    # a busy tree over several CPUs goes past 100 %
    busy = dict(later)
    busy[100] = ProcStat(100, 1, 10 + 3 * TICKS, 20 * MB)
    u3 = sample_tree(s, 7, 100, busy, children_map(busy), 1003.0, want_pss=False)
    assert u3 is not None and u3.cpu_percent == pytest.approx(300.0)

    assert [u["cpu"] for u in s.history[7].latest()] == [0.0, pytest.approx(50.0), pytest.approx(300.0)]


def test_sample_tree_children_come_and_go() -> None:
    s = TreeSampler()
    sample_tree(s, 1, 100, BASE, children_map(BASE), 10.0, want_pss=False)
    # 101 and its child exit and are reaped: their time moves to the parent's cutime (ticks kept)
    gone = {pid: st for pid, st in BASE.items() if pid not in (101, 102)}
    gone[100] = ProcStat(100, 1, 10 + 25 + TICKS, 20 * MB)
    u = sample_tree(s, 1, 100, gone, children_map(gone), 11.0, want_pss=False)
    assert u is not None
    assert u.pids == 2 and u.rss == 22 * MB
    assert u.cpu_percent == pytest.approx(100.0)
    # a new child appears with its own time
    more = dict(gone)
    more[104] = ProcStat(104, 100, TICKS // 2, 5 * MB)
    u = sample_tree(s, 1, 100, more, children_map(more), 12.0, want_pss=False)
    assert u is not None and u.pids == 3 and u.rss == 27 * MB
    assert u.cpu_percent == pytest.approx(100.0 * (TICKS // 2) / TICKS)
    # an unreaped child that vanishes takes its ticks along: never a negative percentage
    fewer = {pid: st for pid, st in more.items() if pid != 104}
    u = sample_tree(s, 1, 100, fewer, children_map(fewer), 13.0, want_pss=False)
    assert u is not None and u.cpu_percent == 0.0


def test_sample_tree_same_instant_and_missing_root() -> None:
    s = TreeSampler()
    kids = children_map(BASE)
    sample_tree(s, 1, 100, BASE, kids, 50.0, want_pss=False)
    busier = dict(BASE)
    busier[100] = ProcStat(100, 1, 10 + TICKS, 20 * MB)
    u = sample_tree(s, 1, 100, busier, children_map(busier), 50.0, want_pss=False)  # clock did not move
    assert u is not None and u.cpu_percent == 0.0
    assert sample_tree(s, 2, 4242, BASE, kids, 51.0, want_pss=False) is None
    assert 2 not in s.history


def test_samplers_are_per_key_and_forget() -> None:
    s = TreeSampler()
    kids = children_map(BASE)
    sample_tree(s, 1, 100, BASE, kids, 1.0, want_pss=False)
    sample_tree(s, 2, 200, BASE, kids, 1.0, want_pss=False)
    assert s.history[2].latest()[-1]["memory"] == 200 * MB and s.history[1].latest()[-1]["memory"] == 53 * MB
    forget(s, 1)
    assert 1 not in s.history and 1 not in s.last and 2 in s.history
    forget(s, 1)  # twice is fine


def test_history_is_bounded() -> None:
    s = TreeSampler()
    kids = children_map(BASE)
    for i in range(HISTORY + 30):
        sample_tree(s, 1, 100, BASE, kids, float(i), want_pss=False)
    hist = s.history[1].latest()
    assert len(hist) == HISTORY
    assert hist[0]["time"] == 30.0 and hist[-1]["time"] == float(HISTORY + 29)


# ---------------------------------------------------------------- real /proc


def test_read_stat_of_this_process() -> None:
    me = read_stat(os.getpid())
    assert me is not None
    assert me.pid == os.getpid() and me.ppid == os.getppid()
    rss = psutil.Process().memory_info().rss
    assert abs(me.rss - rss) < max(rss // 5, 4 * MB), (me.rss, rss)
    # burn some CPU: the ticks grow
    t0 = time.process_time()
    while time.process_time() - t0 < 0.3:
        pass
    again = read_stat(os.getpid())
    assert again is not None and again.cpu_ticks >= me.cpu_ticks + int(0.2 * TICKS)


def test_read_stat_missing_pid() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert read_stat(dead.pid) is None or psutil.pid_exists(dead.pid)  # (unless the pid was reused)
    assert read_stat(2**22 + 12345) is None


@pytest.fixture
def odd_named() -> Iterator[subprocess.Popen[bytes]]:
    """A child whose command name has spaces and parentheses, the way /proc/<pid>/stat shows it."""
    code = "import sys,time\nopen('/proc/self/comm','w').write(') x (y z) ')\nsys.stdout.write('ok\\n'); sys.stdout.flush()\ntime.sleep(60)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ok\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_read_stat_with_an_odd_command_name(odd_named: subprocess.Popen[bytes]) -> None:
    with open(f"/proc/{odd_named.pid}/stat", "rb") as f:
        assert b") x (y z) " in f.read()
    st = read_stat(odd_named.pid)
    assert st is not None
    assert st.ppid == os.getpid()
    assert st.rss > MB


def test_snapshot_and_sample_tree_on_real_processes(odd_named: subprocess.Popen[bytes]) -> None:
    procs = snapshot()
    assert os.getpid() in procs and odd_named.pid in procs
    assert procs[odd_named.pid].ppid == os.getpid()
    kids = children_map(procs)
    assert odd_named.pid in tree(os.getpid(), kids)
    s = TreeSampler()
    u = sample_tree(s, 1, os.getpid(), procs, kids, time.monotonic(), want_pss=sampler.pss_available())
    assert u is not None and u.pids >= 2
    assert u.rss >= procs[os.getpid()].rss + procs[odd_named.pid].rss
    if sampler.pss_available():
        assert u.pss is not None and 0 < u.pss <= u.rss
        assert u.memory == u.pss


def test_read_pss() -> None:
    if not sampler.pss_available():
        pytest.skip("no smaps_rollup on this kernel")
    pss = sampler.read_pss(os.getpid())
    assert pss is not None and 0 < pss <= psutil.Process().memory_info().rss + MB
    assert sampler.read_pss(2**22 + 12345) is None


def test_cpu_of_a_busy_child_from_two_real_ticks() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        ps = psutil.Process(busy.pid)
        s = TreeSampler()
        wait_until(lambda: (st := read_stat(busy.pid)) is not None and st.cpu_ticks > 0, timeout=5)
        t0 = time.monotonic()
        c0 = sum(ps.cpu_times()[:2])
        procs = snapshot()
        sample_tree(s, 1, busy.pid, procs, children_map(procs), t0, want_pss=False)
        wait_until(lambda: time.monotonic() - t0 >= 0.5, timeout=2)
        t1 = time.monotonic()
        c1 = sum(ps.cpu_times()[:2])
        procs = snapshot()
        u = sample_tree(s, 1, busy.pid, procs, children_map(procs), t1, want_pss=False)
        assert u is not None
        # what psutil saw over the same window (the machine may be shared: no absolute figure)
        expected = (c1 - c0) / (t1 - t0) * 100.0
        assert expected > 5.0
        assert u.cpu_percent == pytest.approx(expected, abs=100.0 * 3 / TICKS / (t1 - t0) + 5.0)
        assert 0.0 < u.cpu_percent <= 100.0 * (os.cpu_count() or 1) + 10.0
        assert u.cpu_seconds == pytest.approx(c1, abs=3 / TICKS + 0.05)
    finally:
        busy.kill()
        busy.wait()


def test_snapshot_trees_reads_only_the_trees_and_finds_children_of_threads() -> None:
    """The per-tree walk (task/<tid>/children) sees the same tree as a scan of every process,
    including a child forked from a non-main thread."""
    if not sampler.children_files():
        pytest.skip("no /proc/<pid>/task/<tid>/children on this kernel")
    code = (
        "import subprocess, sys, threading, time\n"
        "a = subprocess.Popen(['sleep', '30'])\n"
        "t = threading.Thread(target=lambda: subprocess.Popen(['sleep', '30']).wait(), daemon=True); t.start()\n"
        "print('ok', flush=True); time.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ok\n"
        wait_until(lambda: len(psutil.Process(proc.pid).children()) == 2)
        procs, kids = sampler.snapshot_trees([proc.pid])
        assert sorted(tree(proc.pid, kids)) == sorted([proc.pid, *(c.pid for c in psutil.Process(proc.pid).children())])
        assert set(procs) == set(tree(proc.pid, kids))  # nothing else was read
        full = snapshot()
        assert sorted(tree(proc.pid, kids)) == sorted(tree(proc.pid, children_map(full)))
        assert procs[proc.pid].threads >= 2
    finally:
        for c in psutil.Process(proc.pid).children():
            c.kill()
        proc.kill()
        proc.wait()
