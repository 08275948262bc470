"""The supervisor's dispatch/perform on a fake clock and a fake spawner.

No process is started: :class:`FakeSpawner` records what the supervisor asks
of the OS and lets the test say what the OS reports (exits, leftovers);
:class:`FakeLoop` is an event loop whose clock only moves when the test
advances it, firing due timers in order.  Output pipes are real pipes, so the
path from an app's stdout to its log file is the real one.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from corral.config.loader import normalize_app_detail
from corral.core.launch import LaunchPlan
from corral.core.statemachine import After, Status
from corral.daemon.instance import Instance
from corral.daemon.reaper import Reaper
from corral.daemon.supervisor import Supervisor
from corral.system import osproc
from corral.system.paths import Home

T0 = 1000.0


class FakeHandle:
    def __init__(self, when: float, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.fn = fn
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """call_later/call_soon/add_reader on a clock that moves only in advance()."""

    def __init__(self) -> None:
        self.now = T0
        self.queue: list[tuple[float, int, FakeHandle]] = []
        self.seq = itertools.count()
        self.readers: dict[int, tuple[Callable[..., Any], tuple[Any, ...]]] = {}

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> FakeHandle:
        h = FakeHandle(self.now + delay, fn, args)
        heapq.heappush(self.queue, (h.when, next(self.seq), h))
        return h

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> FakeHandle:
        return self.call_later(0, fn, *args)

    def add_reader(self, fd: int, fn: Callable[..., Any], *args: Any) -> None:
        self.readers[fd] = (fn, args)

    def remove_reader(self, fd: int) -> bool:
        return self.readers.pop(fd, None) is not None

    def create_task(self, coro: Any) -> None:
        coro.close()  # the supervisor's change notifications: nobody waits in these tests

    def readable(self, fd: int) -> None:
        fn, args = self.readers[fd]
        fn(*args)

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self.queue and self.queue[0][0] <= end:
            when, _, h = heapq.heappop(self.queue)
            self.now = max(self.now, when)
            if not h.cancelled:
                h.fn(*h.args)
        self.now = end

    def pending(self) -> list[FakeHandle]:
        return [h for _, _, h in self.queue if not h.cancelled]


@dataclass
class FakeProc:
    pid: int
    pgid: int
    parent: int | None
    alive: bool = True
    out_w: int | None = None
    err_w: int | None = None


@dataclass
class FakeSpawner:
    """Records the OS work asked for; the test plays the OS."""

    procs: dict[int, FakeProc] = field(default_factory=dict)
    plans: list[LaunchPlan] = field(default_factory=list)
    group_signals: list[tuple[int, str]] = field(default_factory=list)
    tracked_signals: list[tuple[int, str]] = field(default_factory=list)
    untracked: list[int] = field(default_factory=list)
    exits: list[tuple[int, int]] = field(default_factory=list)
    fail_next: str | None = None
    next_pid: int = 100
    loop: FakeLoop | None = None  # set: spawn results come back on the loop, as from OsSpawner

    def spawn(self, plan: LaunchPlan) -> osproc.Child:
        if self.fail_next:
            msg, self.fail_next = self.fail_next, None
            raise osproc.SpawnError(msg)
        self.plans.append(plan)
        pid = self.next_pid
        self.next_pid += 1
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        os.set_blocking(out_r, False)
        os.set_blocking(err_r, False)
        self.procs[pid] = FakeProc(pid, pid, None, out_w=out_w, err_w=err_w)
        return osproc.Child(pid=pid, pgid=pid, stdout_fd=out_r, stderr_fd=err_r, pidfd=None)

    def submit(self, plan: LaunchPlan, done: Callable[[osproc.Child | Exception], None]) -> None:
        """As the real one, the result comes back later on the loop (the next call_soon)."""
        try:
            result: osproc.Child | Exception = self.spawn(plan)
        except osproc.SpawnError as e:
            result = e
        if self.loop is None:
            done(result)
        else:
            self.loop.call_soon(done, result)

    # --- what the test makes the OS do

    def fork(self, parent: int, *, new_group: bool = False) -> int:
        pid = self.next_pid
        self.next_pid += 1
        pgid = pid if new_group else self.procs[parent].pgid
        self.procs[pid] = FakeProc(pid, pgid, parent)
        return pid

    def die(self, pid: int, status: int = 0) -> None:
        p = self.procs[pid]
        p.alive = False
        for fd in (p.out_w, p.err_w):
            if fd is not None:
                os.close(fd)
        p.out_w = p.err_w = None
        if p.parent is None:
            self.exits.append((pid, status))

    def close_all(self) -> None:
        for p in self.procs.values():
            for fd in (p.out_w, p.err_w):
                if fd is not None:
                    os.close(fd)
            p.out_w = p.err_w = None

    # --- the Spawner protocol

    def _descendants(self, pid: int) -> list[int]:
        out = [p.pid for p in self.procs.values() if p.parent == pid and p.alive]
        for child in list(out):
            out += self._descendants(child)
        return out

    def signal_group(self, pgid: int, sig: str) -> bool:
        self.group_signals.append((pgid, sig))
        return self.group_alive(pgid)

    def group_alive(self, pgid: int) -> bool:
        return any(p.alive and p.pgid == pgid for p in self.procs.values())

    def track_tree(self, pid: int) -> list[osproc.Tracked]:
        return [osproc.Tracked(d, None) for d in self._descendants(pid)]

    def track_group(self, pgid: int) -> list[osproc.Tracked]:
        return [osproc.Tracked(p.pid, None) for p in self.procs.values() if p.alive and p.pgid == pgid]

    def tracked_alive(self, t: osproc.Tracked) -> bool:
        return self.procs[t.pid].alive

    def signal_tracked(self, tracked: list[osproc.Tracked], sig: str) -> None:
        # a tracked process that is gone gets nothing: that is what the pidfd is for
        self.tracked_signals.extend((t.pid, sig) for t in tracked if self.procs[t.pid].alive)

    def untrack(self, tracked: list[osproc.Tracked]) -> None:
        self.untracked.extend(t.pid for t in tracked)

    def in_tree(self, root: int, pid: int) -> bool:
        return pid == root or pid in self._descendants(root)

    def pidfd_open(self, pid: int) -> int | None:
        return None

    def reap(self, pid: int) -> int | None:
        for i, (p, status) in enumerate(self.exits):
            if p == pid:
                del self.exits[i]
                return status
        return None

    def reap_any(self) -> list[tuple[int, int]]:
        out, self.exits = self.exits, []
        return out


def exit_status(code: int = 0, sig: int | None = None) -> int:
    return sig if sig is not None else code << 8


@dataclass
class World:
    sup: Supervisor
    loop: FakeLoop
    os: FakeSpawner
    logs: list[str]
    home: Path
    cwd: Path

    def app(self, **keys: Any) -> list[Instance]:
        raw = {"name": "web", "script": "app.py", **keys}
        cfg = normalize_app_detail(raw, base_dir=self.cwd).app
        app = self.sup.add_app(cfg, {"PATH": os.environ.get("PATH", "")})
        for inst in app.instances:
            self.sup.start(inst)
        self.settle()  # the spawn results come back on the loop
        return app.instances

    def exit(self, pid: int, status: int = 0) -> None:
        """The process exits and SIGCHLD comes."""
        self.os.die(pid, status)
        self.sup.reap_children()
        self.settle()  # a relaunch's spawn result

    def settle(self) -> None:
        self.loop.advance(0)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    (tmp_path / "app.py").write_text("")
    loop = FakeLoop()
    spawner = FakeSpawner(loop=loop)
    logs: list[str] = []
    sup = Supervisor(Home(tmp_path / "home"), cast(asyncio.AbstractEventLoop, loop), logs.append, spawner=spawner)
    w = World(sup, loop, spawner, logs, tmp_path / "home", tmp_path)
    yield w
    for inst in sup.instances():
        if inst.notify is not None:
            inst.notify.close()
        for reader in list(inst.readers):
            reader.close()
    spawner.close_all()


# ---------------------------------------------------------------- launching


def test_start_spawns_with_the_launch_plan(world: World) -> None:
    (inst,) = world.app(env={"A": "1"})
    plan = world.os.plans[0]
    assert plan.argv[1].endswith("app.py") and plan.cwd == str(world.cwd)
    assert plan.env["A"] == "1" and plan.env["CORRAL_ID"] == "0" and plan.env["PYTHONUNBUFFERED"] == "1"
    assert plan.env["NOTIFY_SOCKET"] == inst.notify.address if inst.notify else False
    assert inst.state.status is Status.ONLINE and inst.state.pid == 100 and inst.child is not None
    assert inst.env == plan.env


def test_readiness_settles_on_the_fake_clock(world: World) -> None:
    (inst,) = world.app()
    assert not inst.is_ready()
    world.loop.advance(0.49)
    assert not inst.is_ready()
    world.loop.advance(0.01)
    assert inst.is_ready()


def test_ready_1_makes_it_ready_at_once(world: World) -> None:
    (inst,) = world.app()
    world.sup.procs.channels.on_notify(inst, 100, {"READY": "1", "STATUS": "warming up"})
    assert inst.is_ready() and inst.status_text == "warming up"


def test_notify_from_outside_the_tree_is_ignored(world: World) -> None:
    (inst,) = world.app(wait_ready=True)
    world.sup.procs.channels.on_notify(inst, 4242, {"READY": "1"})
    assert inst.state.status is Status.LAUNCHING
    assert any("ignored a notify datagram from pid 4242" in line for line in world.logs)
    grandchild = world.os.fork(100)
    world.sup.procs.channels.on_notify(inst, grandchild, {"READY": "1"})
    assert inst.state.status is Status.ONLINE and inst.is_ready()


def test_spawn_failure_goes_through_the_restart_policy(world: World) -> None:
    world.os.fail_next = "app.py: permission denied"
    (inst,) = world.app(restart_delay=2000)  # SpawnFailed came on the loop
    assert inst.state.status is Status.WAITING_RESTART and inst.child is None
    world.loop.advance(2)
    world.settle()
    assert inst.state.status is Status.ONLINE and inst.state.restarts == 1


def test_stop_while_the_spawn_is_in_flight_signals_the_late_process(world: World) -> None:
    cfg = normalize_app_detail({"name": "web", "script": "app.py"}, base_dir=world.cwd).app
    (inst,) = world.sup.add_app(cfg, {}).instances
    world.sup.start(inst)
    assert inst.state.status is Status.LAUNCHING and inst.child is None  # spawn submitted, not back yet
    world.sup.stop(inst)
    assert inst.state.status is Status.STOPPING and world.os.group_signals == []
    world.settle()  # the spawn comes back: the process nobody wants any more gets the stop signal
    assert inst.child is not None and world.os.group_signals == [(100, "SIGINT")]
    world.exit(100, exit_status(sig=2))
    assert inst.state.status is Status.STOPPED and inst.child is None


def test_pid_file_and_output_to_the_log_file(world: World) -> None:
    (inst,) = world.app(pid_file=str(world.home / "run" / "web.pid"))
    assert (world.home / "run" / "web.pid").read_text() == "100\n"
    proc = world.os.procs[100]
    assert proc.out_w is not None
    os.write(proc.out_w, b"hello\npartial")
    world.loop.readable(inst.child.stdout_fd if inst.child else -1)
    out = world.home / "logs" / "web-out.log"
    assert out.read_text() == "hello\n"
    world.exit(100, exit_status(0))  # the rest is written when the app exits
    assert out.read_text() == "hello\npartial\n"


# ---------------------------------------------------------------- exits and stops


def test_crash_is_reaped_and_relaunched(world: World) -> None:
    (inst,) = world.app()
    world.loop.advance(5)
    world.exit(100, exit_status(3))
    assert inst.state.status is Status.ONLINE and inst.state.pid == 101 and inst.state.restarts == 1
    assert len(world.os.plans) == 2


def test_stop_signals_the_group_then_sigkill_after_kill_timeout(world: World) -> None:
    (inst,) = world.app(kill_timeout=2000)
    kid = world.os.fork(100)
    escaped = world.os.fork(kid, new_group=True)  # setsid: out of the group, still in the tree
    world.sup.stop(inst)
    assert world.os.group_signals == [(100, "SIGINT")]
    assert {t.pid for t in inst.tree} == {kid, escaped}
    world.loop.advance(1.99)
    assert world.os.tracked_signals == []
    world.loop.advance(0.01)
    assert world.os.group_signals[-1] == (100, "SIGKILL")
    assert sorted(world.os.tracked_signals) == [(kid, "SIGKILL"), (escaped, "SIGKILL")]
    world.os.die(kid)
    world.os.die(escaped)
    world.exit(100, exit_status(sig=signal.SIGKILL))
    assert inst.state.status is Status.STOPPED and inst.child is None


def test_leftovers_get_the_grace_period_then_sigkill(world: World) -> None:
    (inst,) = world.app(kill_timeout=1000, autorestart=False)
    in_group = world.os.fork(100)
    world.loop.advance(5)
    world.exit(100, exit_status(1))  # the leader dies; its group lives on
    assert inst.state.status is Status.STOPPED
    assert world.os.group_signals == [(100, "SIGINT")]
    assert world.os.tracked_signals == [(in_group, "SIGINT")]
    world.loop.advance(1.0)
    assert world.os.group_signals[-1] == (100, "SIGKILL")
    assert world.os.tracked_signals[-1] == (in_group, "SIGKILL")
    assert in_group in world.os.untracked and not world.sup.procs.leftovers


def test_leftovers_gone_before_the_grace_ends_are_not_signalled_by_number(world: World) -> None:
    """A pid recorded at stop and gone by the end of kill_timeout may be another process's by
    then: nothing is sent to the group id or to the pid."""
    (inst,) = world.app(kill_timeout=1000)
    left = world.os.fork(100, new_group=True)
    world.sup.stop(inst)
    world.exit(100, exit_status(sig=signal.SIGINT))
    assert inst.state.status is Status.STOPPED and world.sup.procs.leftovers
    world.os.die(left)  # ... and its pid could now be reused
    sent = len(world.os.group_signals)
    world.loop.advance(1.0)
    assert len(world.os.group_signals) == sent, "the group id was signalled with no member held alive"
    assert (left, "SIGKILL") not in world.os.tracked_signals


def test_delete_removes_the_instance_and_its_app(world: World) -> None:
    (inst,) = world.app()
    world.sup.delete(inst)
    assert inst.state.after_stop is After.DELETE
    world.exit(100, exit_status(sig=signal.SIGINT))
    assert world.sup.apps == {} and inst.notify is None


# ---------------------------------------------------------------- watchdog


def test_watchdog_expiry_fails_the_instance(world: World) -> None:
    (inst,) = world.app(watchdog_sec=1000)
    assert world.os.plans[0].env["WATCHDOG_USEC"] == "1000000"
    for _ in range(3):
        world.loop.advance(0.6)
        world.sup.procs.channels.on_notify(inst, 100, {"WATCHDOG": "1"})
    assert inst.state.status is Status.ONLINE
    world.loop.advance(1.0)
    assert inst.state.status is Status.STOPPING and inst.state.after_stop is After.FAILED
    assert any("watchdog: failed: no WATCHDOG=1 within 1s" in line for line in world.logs)
    world.exit(100, exit_status(sig=signal.SIGINT))
    assert inst.state.status is Status.ONLINE and inst.state.restarts == 1  # the restart policy applied


def test_watchdog_with_wait_ready_starts_at_ready(world: World) -> None:
    (inst,) = world.app(watchdog_sec=500, wait_ready=True, listen_timeout=10000)
    world.loop.advance(3)
    assert inst.state.status is Status.LAUNCHING  # no watchdog before READY=1
    world.sup.procs.channels.on_notify(inst, 100, {"READY": "1"})
    world.loop.advance(0.5)
    assert inst.state.status is Status.STOPPING and "watchdog" in inst.state.reason


def test_watchdog_trigger(world: World) -> None:
    (inst,) = world.app(watchdog_sec=5000)
    world.sup.procs.channels.on_notify(inst, 100, {"WATCHDOG": "trigger"})
    assert inst.state.status is Status.STOPPING and "WATCHDOG=trigger" in inst.state.reason
    assert inst.watchdog is None


# ---------------------------------------------------------------- reset and adopt


def test_reset_and_adopt_go_through_the_state_machine(world: World) -> None:
    (old,) = world.app()
    for pid in (100, 101):
        world.loop.advance(5)
        world.exit(pid, exit_status(1))
    assert old.state.restarts == 2
    new = world.sup.add_replacement(old.app, old.index)
    world.sup.adopt(new, old)
    world.settle()
    assert new.id == old.id and new.state.restarts == 3 and new.state.status is Status.ONLINE
    world.sup.reset(new)
    assert new.state.restarts == 0 and new.state.status is Status.ONLINE


# ---------------------------------------------------------------- the reaper


def test_reaper_delivers_each_exit_once_and_logs_orphans() -> None:
    loop = FakeLoop()
    spawner = FakeSpawner()
    logs: list[str] = []
    reaper = Reaper(cast(asyncio.AbstractEventLoop, loop), spawner, logs.append)
    got: list[int] = []
    reaper.watch(7, got.append)
    spawner.exits = [(7, 256), (8, 9)]
    reaper.reap_children()
    reaper.reap_children()
    assert got == [256]
    assert logs == ["[daemon] reaped orphan pid 8 (SIGKILL)"]


def test_reaper_pidfd_path(tmp_path: Path) -> None:
    loop = FakeLoop()
    spawner = FakeSpawner()
    reaper = Reaper(cast(asyncio.AbstractEventLoop, loop), spawner, lambda _line: None)
    r, w = os.pipe()
    got: list[int] = []
    reaper.watch(7, got.append, pidfd=r)
    assert r in loop.readers
    spawner.exits = [(7, 0)]
    loop.readable(r)  # the pidfd became readable
    assert got == [0] and r not in loop.readers and 7 not in reaper.watched
    reaper.reap_children()  # SIGCHLD after the pidfd path: nothing twice
    assert got == [0]
    os.close(w)
