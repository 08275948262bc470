"""Rotation policy: names, listing, retention, compression, policy precedence, daemon defaults,
and the rotation/failure behaviour of LogFile."""

from __future__ import annotations

import errno
import gzip
import os
import time
from pathlib import Path
from typing import Any

import pytest

from corral.core.errors import ConfigError
from corral.daemon import settings
from corral.logs import sink as logsink
from corral.logs.rotate import (
    DEFAULT_DATE_SUFFIX,
    DEFAULT_RETAIN,
    NAMED_INTERVALS,
    PM2_LOGROTATE_NAMES,
    RotatePolicy,
    apply_retention,
    compress_file,
    next_interval,
    policy_from,
    rotated_files,
    rotated_name,
)
from corral.logs.sink import LogEvents, LogFile

TS = time.mktime((2026, 11, 28, 10, 30, 5, 0, 0, -1)) + 0.25  # local time


def touch(path: Path, mtime: float, data: bytes = b"x\n") -> Path:
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


# ---------------------------------------------------------------- names


def test_rotated_name_is_pm2_logrotate_style(tmp_path: Path) -> None:
    path = str(tmp_path / "app-out.log")
    assert rotated_name(path, TS, DEFAULT_DATE_SUFFIX) == str(tmp_path / "app-out__2026-11-28_10-30-05.log")
    assert rotated_name(path, TS, "YYYYMMDD") == str(tmp_path / "app-out__20261128.log")
    # a log without an extension still gets .log
    assert rotated_name(str(tmp_path / "app"), TS, DEFAULT_DATE_SUFFIX) == str(tmp_path / "app__2026-11-28_10-30-05.log")


def test_rotated_names_are_unique_within_one_second(tmp_path: Path) -> None:
    path = str(tmp_path / "app-out.log")
    made = []
    for _ in range(12):
        name = rotated_name(path, TS, DEFAULT_DATE_SUFFIX)
        Path(name).write_text("x")
        made.append(os.path.basename(name))
    assert made[:3] == ["app-out__2026-11-28_10-30-05.log", "app-out__2026-11-28_10-30-05_1.log", "app-out__2026-11-28_10-30-05_2.log"]
    assert made[-1] == "app-out__2026-11-28_10-30-05_11.log"
    assert len(set(made)) == 12


def test_a_compressed_rotated_file_also_takes_its_name(tmp_path: Path) -> None:
    path = str(tmp_path / "app-out.log")
    first = rotated_name(path, TS, DEFAULT_DATE_SUFFIX)
    Path(first + ".gz").write_bytes(b"")  # compressed: the plain name is free again, but taken
    second = rotated_name(path, TS, DEFAULT_DATE_SUFFIX)
    assert second.endswith("_1.log")
    Path(second).write_text("x")
    assert rotated_name(path, TS, DEFAULT_DATE_SUFFIX).endswith("_2.log")


# ---------------------------------------------------------------- listing


def test_rotated_files_oldest_first_by_mtime(tmp_path: Path) -> None:
    base = time.time() - 100
    # names out of time order on purpose: mtime decides
    c = touch(tmp_path / "app-out__2026-11-28_10-30-05.log", base + 3)
    a = touch(tmp_path / "app-out__2026-11-28_10-30-07.log.gz", base + 1)
    b = touch(tmp_path / "app-out__2026-11-28_10-30-06_1.log", base + 2)
    touch(tmp_path / "app-out.log", base + 4)
    assert rotated_files(str(tmp_path / "app-out.log")) == [str(a), str(b), str(c)]


def test_rotated_files_do_not_mix_app_out_with_app_out_0(tmp_path: Path) -> None:
    now = time.time()
    mine = [touch(tmp_path / "app-out__2026-11-28_10-30-05.log", now - 2), touch(tmp_path / "app-out__2026-11-28_10-30-06.log.gz", now - 1)]
    others = [
        touch(tmp_path / "app-out-0__2026-11-28_10-30-05.log", now - 3),
        touch(tmp_path / "app-out-1__2026-11-28_10-30-05.log.gz", now - 3),
        touch(tmp_path / "app-out__x__2026-11-28_10-30-05.log", now - 3),  # log "app-out__x.log" rotated
        touch(tmp_path / "app-out__2026-11-28_10-30-07.log.gz.tmp", now),  # compression in progress
        touch(tmp_path / "app-out__2026-11-28_10-30-08.txt", now),  # another extension
        touch(tmp_path / "app-error__2026-11-28_10-30-05.log", now - 3),
        touch(tmp_path / "app__2026-11-28_10-30-05.log", now - 3),  # the combined log "app.log"
    ]
    assert rotated_files(str(tmp_path / "app-out.log")) == [str(p) for p in mine]
    assert rotated_files(str(tmp_path / "app-out-0.log")) == [str(others[0])]
    assert rotated_files(str(tmp_path / "app-out-1.log")) == [str(others[1])]
    assert rotated_files(str(tmp_path / "app.log")) == [str(others[-1])]
    assert rotated_files(str(tmp_path / "none-out.log")) == []


def test_rotated_files_with_glob_characters_in_the_path(tmp_path: Path) -> None:
    folder = tmp_path / "logs[1]"
    folder.mkdir()
    p = touch(folder / "a*b-out__2026-11-28_10-30-05.log", time.time())
    touch(folder / "aXb-out__2026-11-28_10-30-05.log", time.time())
    assert rotated_files(str(folder / "a*b-out.log")) == [str(p)]


def test_rotated_files_same_mtime_keep_rotation_order(tmp_path: Path) -> None:
    path = str(tmp_path / "app-out.log")
    made = []
    for _ in range(12):
        name = rotated_name(path, TS, DEFAULT_DATE_SUFFIX)
        touch(Path(name), TS)  # same mtime, as on a filesystem with coarse timestamps
        made.append(name)
    assert rotated_files(path) == made


# ---------------------------------------------------------------- retention


def test_retention_deletes_oldest_first(tmp_path: Path) -> None:
    path = str(tmp_path / "app-out.log")
    base = time.time() - 100
    files = [str(touch(tmp_path / f"app-out__2026-11-28_10-30-0{i}.log{'.gz' if i % 2 else ''}", base + i)) for i in range(6)]
    other = touch(tmp_path / "app-out-0__2026-11-28_10-30-00.log", base - 10)
    current = touch(tmp_path / "app-out.log", base - 20)  # the current file is never a candidate
    assert apply_retention(path, 4) == files[:2]
    assert rotated_files(path) == files[2:]
    assert apply_retention(path, 4) == []
    assert apply_retention(path, 1) == files[2:5]
    assert rotated_files(path) == files[5:]
    assert apply_retention(path, 0) == files[5:]
    assert rotated_files(path) == []
    assert other.exists() and current.exists()


# ---------------------------------------------------------------- compression


def test_compress_file_keeps_content_and_mtime(tmp_path: Path) -> None:
    data = b"".join(f"line {i} {'y' * 50}\n".encode() for i in range(20000))
    mtime = time.time() - 3600.5
    src = touch(tmp_path / "app-out__2026-11-28_10-30-05.log", mtime, data)
    target = compress_file(str(src))
    assert target == str(src) + ".gz"
    assert not src.exists()
    assert not Path(target + ".tmp").exists()
    with gzip.open(target, "rb") as f:
        assert f.read() == data
    assert os.stat(target).st_mtime == pytest.approx(mtime, abs=1e-3)
    assert os.path.getsize(target) < len(data) // 10
    # still listed as the same rotated file, at the same place in the order
    assert rotated_files(str(tmp_path / "app-out.log")) == [target]


# ---------------------------------------------------------------- policy


def test_policy_off_without_size_or_interval() -> None:
    assert policy_from({}) is None
    assert policy_from({"log_max_size": None, "log_rotate_interval": None, "log_retain": 3, "log_compress": True}) is None
    assert policy_from({}, {"log_retain": 3}) is None


def test_policy_defaults() -> None:
    assert policy_from({"log_max_size": 1024}) == RotatePolicy(max_size=1024, interval=None, retain=DEFAULT_RETAIN, compress=False, date_suffix=DEFAULT_DATE_SUFFIX)
    assert DEFAULT_RETAIN == 30


def test_policy_app_keys_win_over_daemon_defaults() -> None:
    defaults = {"log_max_size": 100 * 1024, "log_retain": 2, "log_compress": True, "log_date_suffix": "YYYYMMDD", "log_rotate_interval": "hourly"}
    app = {"log_max_size": 1024 * 1024, "log_retain": 0, "log_compress": False, "log_date_suffix": None, "log_rotate_interval": None}
    p = policy_from(app, defaults)
    assert p == RotatePolicy(max_size=1024 * 1024, interval=NAMED_INTERVALS["hourly"], retain=0, compress=False, date_suffix="YYYYMMDD")
    # an app without its own keys (the loader gives None) takes every default
    blank = dict.fromkeys(app)
    assert policy_from(blank, defaults) == RotatePolicy(max_size=100 * 1024, interval="0 * * * *", retain=2, compress=True, date_suffix="YYYYMMDD")


@pytest.mark.parametrize(
    "name,cron",
    [("daily", "0 0 * * *"), ("hourly", "0 * * * *"), ("weekly", "0 0 * * 0"), ("monthly", "0 0 1 * *"), ("Daily", "0 0 * * *"), (" HOURLY ", "0 * * * *")],
)
def test_policy_named_intervals(name: str, cron: str) -> None:
    p = policy_from({"log_rotate_interval": name})
    assert p is not None and p.interval == cron and p.max_size is None


def test_policy_cron_interval_kept_and_every_second_with_six_fields() -> None:
    p = policy_from({"log_rotate_interval": "* * * * * *"})
    assert p is not None and p.interval == "* * * * * *"
    # croniter reads a 6th field as seconds
    assert next_interval("* * * * * *", TS) == pytest.approx(TS - 0.25 + 1)
    assert next_interval("0 0 * * *", TS) == time.mktime((2026, 11, 29, 0, 0, 0, 0, 0, -1))


# ---------------------------------------------------------------- [logs] in corral.toml


def test_daemon_log_defaults_accept_pm2_logrotate_names(tmp_path: Path) -> None:
    (tmp_path / "corral.toml").write_text('[logs]\nmax_size = "100K"\nretain = 2\ncompress = true\ndateFormat = "YYYY-MM-DD"\nrotateInterval = "daily"\n')
    d = settings.log_defaults(str(tmp_path))
    assert d == {"log_max_size": 100 * 1024, "log_retain": 2, "log_compress": True, "log_date_suffix": "YYYY-MM-DD", "log_rotate_interval": "daily"}
    assert policy_from({}, d) == RotatePolicy(max_size=102400, interval="0 0 * * *", retain=2, compress=True, date_suffix="YYYY-MM-DD")
    assert set(PM2_LOGROTATE_NAMES) == {"max_size", "retain", "compress", "dateFormat", "rotateInterval"}


def test_daemon_log_defaults_corral_names_and_errors(tmp_path: Path) -> None:
    assert settings.log_defaults(str(tmp_path)) == {}  # no corral.toml
    (tmp_path / "corral.toml").write_text('[logs]\nlog_max_size = "10M"\nlog_retain = 10\nrotateInterval = ""\n')
    assert settings.log_defaults(str(tmp_path)) == {"log_max_size": 10 * 1024 * 1024, "log_retain": 10}
    (tmp_path / "corral.toml").write_text("[logs]\nkeep = 3\n")
    with pytest.raises(ConfigError, match="unknown key"):
        settings.log_defaults(str(tmp_path))
    (tmp_path / "corral.toml").write_text('[logs]\nmax_size = "lots"\n')
    with pytest.raises(ConfigError):
        settings.log_defaults(str(tmp_path))


# ---------------------------------------------------------------- LogFile


class Recorder(LogEvents):
    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def write_failed(self, f: LogFile, error: str) -> None:
        self.seen.append(("failed", error))

    def write_recovered(self, f: LogFile, dropped: int) -> None:
        self.seen.append(("recovered", dropped))

    def rotated(self, f: LogFile, rotated_path: str) -> None:
        self.seen.append(("rotated", rotated_path))


def batch(start: int, count: int) -> bytes:
    return b"".join(f"{i:05d} {'r' * 43}\n".encode() for i in range(start, start + count))  # 50 bytes a line


def test_logfile_rotates_at_the_line_that_would_pass_max_size(tmp_path: Path) -> None:
    ev = Recorder()
    f = LogFile(str(tmp_path / "app-out.log"), RotatePolicy(max_size=1000), ev)
    try:
        f.write(batch(0, 19), 19)  # 950 bytes: below the limit
        assert rotated_files(f.path) == []
        f.write(batch(19, 3), 3)  # 1100 bytes: line 19 fits (1000), then rotate, then 20 and 21
        rotated = rotated_files(f.path)
        assert len(rotated) == 1 and ev.seen == [("rotated", rotated[0])]
        assert Path(rotated[0]).read_bytes() == batch(0, 20)
        assert Path(f.path).read_bytes() == batch(20, 2) and f.size == 100 and f.rotations == 1
        f.write(batch(22, 18), 18)  # 100 + 900 = exactly the limit: rotated right after
        assert len(rotated_files(f.path)) == 2 and f.size == 0
        f.write(batch(40, 1), 1)
        assert Path(f.path).read_bytes() == batch(40, 1)
        big = LogFile(str(tmp_path / "big.log"), RotatePolicy(max_size=1000))
        try:  # one batch much larger than the limit: every rotated file stays within it
            big.write(batch(0, 100), 100)
            sizes = [os.path.getsize(p) for p in rotated_files(big.path)]
            assert sizes and all(s <= 1000 for s in sizes)
            content = b"".join(Path(p).read_bytes() for p in rotated_files(big.path)) + Path(big.path).read_bytes()
            assert content == batch(0, 100)
        finally:
            big.close()
        assert f.rotate() is not None and f.rotate() is None  # an empty file is not rotated
    finally:
        f.close()


def test_logfile_check_moved_reopens_after_rename_or_delete(tmp_path: Path) -> None:
    f = LogFile(str(tmp_path / "app-out.log"))
    try:
        f.write(b"one\n", 1)
        assert f.check_moved() is False
        os.rename(f.path, f.path + ".1")
        assert f.check_moved() is True
        f.write(b"two\n", 1)
        os.unlink(f.path)
        assert f.check_moved() is True
        f.write(b"three\n", 1)
        assert Path(f.path + ".1").read_bytes() == b"one\n"
        assert Path(f.path).read_bytes() == b"three\n"
    finally:
        f.close()


def test_logfile_failures_counted_and_reported_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ev = Recorder()
    f = LogFile(str(tmp_path / "app-out.log"), None, ev)
    real_write = os.write
    full = True

    def fake_write(fd: int, data: Any) -> int:
        if full and fd == f.fd:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(logsink.os, "write", fake_write)
    try:
        for i in range(5):
            f.write(batch(i * 2, 2), 2)
        assert f.lines_dropped == 10 and f.failing
        assert ev.seen == [("failed", f"{f.path}: No space left on device")]
        full = False
        f.write(batch(10, 1), 1)
        assert ev.seen[1:] == [("recovered", 10)]
        assert not f.failing and f.lines_dropped == 10
        assert Path(f.path).read_bytes() == batch(10, 1)
    finally:
        f.close()


def test_logfile_short_write_leaves_no_partial_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = LogFile(str(tmp_path / "app-out.log"))
    real_write = os.write
    room = [60]  # the disk has room for one line and ten bytes

    def fake_write(fd: int, data: Any) -> int:
        if fd != f.fd:
            return real_write(fd, data)
        if room[0] == 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real_write(fd, bytes(data[: room[0]]))
        room[0] -= n
        return n

    monkeypatch.setattr(logsink.os, "write", fake_write)
    try:
        f.write(batch(0, 3), 3)
        room[0] = 10_000
        f.write(batch(3, 1), 1)
        assert Path(f.path).read_bytes() == batch(0, 1) + batch(3, 1)
    finally:
        f.close()


def test_logfile_never_rotates_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.log"
    os.mkfifo(fifo)
    rd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    f = LogFile(str(fifo), RotatePolicy(max_size=10))
    try:
        f.write(batch(0, 4), 4)
        assert not f.regular and f.rotate() is None and f.check_moved() is False
        assert os.read(rd, 1000) == batch(0, 4)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.log"]
        assert f.errors == 0
    finally:
        f.close()
        os.close(rd)


def test_logfile_does_not_rename_a_symlinked_path(tmp_path: Path) -> None:
    target = tmp_path / "real.log"
    link = tmp_path / "stdout"
    link.symlink_to(target)
    f = LogFile(str(link), RotatePolicy(max_size=100))
    try:
        f.write(batch(0, 3), 3)
        f.write(batch(3, 3), 3)
        assert link.is_symlink() and os.readlink(link) == str(target)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["real.log", "stdout"]
    finally:
        f.close()
