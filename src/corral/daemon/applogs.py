"""App output: pipes read into log files, rotation ticks and the compression pool.

:class:`PipeReader` reads one of an instance's pipes off the event loop,
frames whole lines and writes them to the instance's log files synchronously
(which slows a flooding app through its pipe instead of losing lines).
:class:`AppLogs` owns the open log files (shared by path, reference counted),
checks them every second while any is open, as a job on the daemon's scheduler
(moved or deleted from under us, scheduled rotations), and compresses and prunes rotated files in one worker thread, never
on the event loop.  Both take callbacks and plain values, not the supervisor.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from corral.core.appspec import AppSpec, as_dict
from corral.logs.rotate import RotatePolicy, policy_from
from corral.logs.sink import LineFormatter, LineFramer, LogEvents, LogFile, LogFiles
from corral.system import osproc

if TYPE_CHECKING:
    from corral.daemon.scheduler import Scheduler

READ_CHUNK = 65536
READS_PER_WAKEUP = 16

CHECK_EVERY = 1.0  # seconds between checks of the open log files
CHECK_JOB = ("logs",)  # the check's key on the daemon's scheduler

Publish = Callable[[str, list[bytes], float], None]


class PipeReader:
    """Reads one of an instance's pipes until EOF, even past the instance's own exit."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fd: int,
        stream: str,
        targets: list[LogFile],
        formatter: Callable[[], LineFormatter],
        following: Callable[[], bool],
        publish: Publish,
        on_closed: Callable[[PipeReader], None],
    ) -> None:
        """formatter: the instance's current line formatter; following: whether anyone
        follows the logs (lines are then published); on_closed: called once at EOF."""
        self.loop = loop
        self.fd = fd
        self.stream = stream
        self.targets = targets
        self.formatter = formatter
        self.following = following
        self.publish = publish
        self.on_closed = on_closed
        self.framer = LineFramer()
        self.closed = False
        loop.add_reader(fd, self.on_readable)

    def on_readable(self) -> None:
        # Chunks of 64 KiB are processed one by one: larger buffers fall above glibc's
        # mmap threshold and cost an mmap/munmap (or brk trim) per read under a flood.
        formatter = self.formatter()
        following = self.following()
        plain = formatter.plain and not following
        by_block = formatter.by_block and not following  # JSON: a whole block at once
        for _ in range(READS_PER_WAKEUP):
            try:
                chunk = os.read(self.fd, READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.close()
                return
            if plain:
                # plain text, nobody following: whole lines go out as one block
                block = self.framer.feed_block(chunk)
                if block:
                    count = block.count(b"\n")
                    for target in self.targets:
                        target.write(block, count)
            elif by_block:
                block = self.framer.feed_block(chunk)
                if block:
                    data, count = formatter.format_block(block, self.stream, time.time())
                    for target in self.targets:
                        target.write(data, count)
            else:
                lines = self.framer.feed(chunk)
                if lines:
                    self.emit(lines)
            if len(chunk) < READ_CHUNK:
                return

    def drain(self) -> None:
        """Read what is buffered now (called when the instance exits)."""
        if not self.closed:
            self.on_readable()

    def emit(self, lines: list[bytes]) -> None:
        ts = time.time()
        data = self.formatter().format(lines, self.stream, ts)
        for target in self.targets:
            target.write(data, len(lines))
        if self.following():
            self.publish(self.stream, lines, ts)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        rest = self.framer.flush()
        if rest:
            self.emit(rest)
        self.loop.remove_reader(self.fd)
        osproc.close_fd(self.fd)
        self.on_closed(self)


@dataclass
class LogSetup:
    """An app's log settings, worked out once per config (not per instance or spawn)."""

    config: AppSpec
    defaults: Mapping[str, Any]
    policy: RotatePolicy | None


class AppLogs:
    """The daemon's open app log files, their ticks and rotations.

    report(path, kind, message) tells the daemon about a failing or recovered file;
    log(line) writes to the daemon's own log."""

    def __init__(self, loop: asyncio.AbstractEventLoop, log: Callable[[str], None], report: Callable[[str, str, str], None]) -> None:
        self.loop = loop
        self.log = log
        self.report = report
        self.files = LogFiles(_Events(self))
        self.defaults: dict[str, Any] = {}
        self._compressor: Any = None
        self._setups: dict[str, LogSetup] = {}
        self.scheduler: Scheduler | None = None

    def setup(self, app: str, cfg: AppSpec) -> LogSetup:
        """The app's log settings for this config (configs are replaced, never changed in place)."""
        s = self._setups.get(app)
        if s is None or s.config is not cfg or s.defaults is not self.defaults:
            s = LogSetup(cfg, self.defaults, policy_from(as_dict(cfg), self.defaults))
            self._setups[app] = s
        return s

    def forget(self, app: str) -> None:
        self._setups.pop(app, None)

    def acquire(self, paths: Iterable[str | None], policy: RotatePolicy | None) -> list[LogFile]:
        return [self.files.acquire(p, policy) for p in paths if p]

    def release(self, targets: list[LogFile]) -> None:
        for t in targets:
            self.files.release(t)

    def rotated_file(self, path: str, rotated_path: str, policy: RotatePolicy) -> None:
        """Compress and prune in a worker thread, in order, never on the event loop."""
        if not policy.compress and policy.retain is None:
            return
        if self._compressor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._compressor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="corral-logrotate")
        fut = self.loop.run_in_executor(self._compressor, _finish_rotation, path, rotated_path, policy.compress, policy.retain)

        def done(f: asyncio.Future[list[str]]) -> None:
            if f.exception() is not None:
                self.log(f"[daemon] rotating {path}: {f.exception()!r}")

        fut.add_done_callback(done)

    def follow(self, scheduler: Scheduler) -> None:
        """Check the open files every second on the daemon's scheduler, only while some are open."""
        self.scheduler = scheduler
        scheduler.on_change(self.sync_checks)
        self.sync_checks()

    def sync_checks(self) -> None:
        if self.scheduler is None:
            return
        if self.files.all():
            self.scheduler.every(CHECK_JOB, CHECK_EVERY, self.check)
        else:
            self.scheduler.cancel(CHECK_JOB)

    def check(self) -> None:
        try:
            self.tick()
        except Exception as e:
            self.log(f"[daemon] log file check failed: {e!r}")

    def tick(self) -> None:
        """Every second: notice files moved or deleted from under us; scheduled rotations."""
        now = time.time()
        for f in self.files.all():
            if f.check_moved():
                self.log(f"[daemon] {f.path} was moved or deleted: reopened")
            policy = f.policy
            if policy is not None and policy.interval:
                from corral.logs.rotate import next_interval

                if f.next_rotation is None:
                    f.next_rotation = next_interval(policy.interval, now)
                elif now >= f.next_rotation:
                    f.rotate()
                    f.next_rotation = next_interval(policy.interval, now)


class _Events(LogEvents):
    """Log file failures are reported once (daemon log, event stream); rotated files are
    compressed and pruned off the event loop."""

    def __init__(self, logs: AppLogs) -> None:
        self.logs = logs

    def write_failed(self, f: LogFile, error: str) -> None:
        self.logs.report(f.path, "log-error", f"cannot write {error}; the app keeps running, lost lines are counted")

    def write_recovered(self, f: LogFile, dropped: int) -> None:
        self.logs.report(f.path, "log-recovered", f"writing to {f.path} again; {dropped} lines could not be written")

    def rotated(self, f: LogFile, rotated_path: str) -> None:
        self.logs.report(f.path, "log-rotated", f"{f.path} rotated to {rotated_path}")
        if f.policy is not None:
            self.logs.rotated_file(f.path, rotated_path, f.policy)


def _finish_rotation(path: str, rotated_path: str, compress: bool, retain: int) -> list[str]:
    from corral.logs.rotate import apply_retention, compress_file

    if compress:
        try:
            compress_file(rotated_path)
        except FileNotFoundError:
            pass
    return apply_retention(path, retain)
