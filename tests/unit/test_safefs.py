"""The safe file layer: every write the daemon makes for an app refuses to be redirected.

The attacks are those of an app running as another user (``nobody``) that can
write its log folder: it swaps a log, a rotated log, a pid file or a temp name
for a symlink (or a hard link) to a file root owns.  They need root to set up
(files owned by nobody); they are skipped with a reason otherwise.
"""

from __future__ import annotations

import gzip
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.logs import rotate as logrotate
from corral.logs.dates import compile_date_format, date_pattern
from corral.logs.rotate import RotatePolicy, rotated_files
from corral.logs.sink import LogFile
from corral.system import safefs
from corral.system.paths import Home, UnsafeHomeError, check_home
from corral.system.safefs import UnsafePathError

NOBODY = 65534
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: files owned by another user (nobody) model the attacker")


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A root-owned file the attacker wants the daemon to write to."""
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir(mode=0o700)
    p = secret_dir / "shadow"
    p.write_bytes(b"root:precious\n")
    return p


@pytest.fixture
def app_dir(tmp_path: Path) -> Iterator[Path]:
    """A log folder the app's user (nobody) owns and can write."""
    d = tmp_path / "applogs"
    d.mkdir()
    if os.geteuid() == 0:
        os.chown(d, NOBODY, NOBODY)
    yield d


def plant_symlink(link: Path, target: Path) -> None:
    """The attacker (nobody) plants a symlink: owned by nobody, as the kernel would make it."""
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)
    if os.geteuid() == 0:
        os.lchown(link, NOBODY, NOBODY)


# ---------------------------------------------------------------- opening logs


@root_only
def test_open_append_refuses_a_symlink_planted_by_the_app_user(app_dir: Path, victim: Path) -> None:
    log = app_dir / "web-out.log"
    plant_symlink(log, victim)
    with pytest.raises(UnsafePathError, match="symlink"):
        safefs.open_append(str(log))
    assert victim.read_bytes() == b"root:precious\n"


def test_open_append_follows_a_trusted_symlink(tmp_path: Path) -> None:
    # the operator's own `out_file = "/dev/stdout"`-style link, in a folder only root can write
    target = tmp_path / "real.log"
    link = tmp_path / "out"
    link.symlink_to(target)
    fd, st = safefs.open_append(str(link))
    try:
        os.write(fd, b"ok\n")
    finally:
        os.close(fd)
    assert target.read_bytes() == b"ok\n" and stat.S_ISREG(st.st_mode)


def test_open_append_to_dev_null_and_a_fifo_is_allowed(tmp_path: Path) -> None:
    fd, st = safefs.open_append("/dev/null")
    os.close(fd)
    assert stat.S_ISCHR(st.st_mode)


def test_open_append_refuses_a_hard_link(app_dir: Path, victim: Path) -> None:
    log = app_dir / "web-out.log"
    os.link(victim, log)
    with pytest.raises(UnsafePathError, match="hard links"):
        safefs.open_append(str(log))
    assert victim.read_bytes() == b"root:precious\n"


@root_only
def test_a_log_swapped_for_a_symlink_is_never_written_through(app_dir: Path, victim: Path) -> None:
    """The live log is replaced by a symlink while the daemon writes it: the check for moved
    files sees a new identity, reopening refuses, lines are counted as lost, the target is intact."""
    log = app_dir / "web-out.log"
    f = LogFile(str(log))
    try:
        f.write(b"one\n", 1)
        log.unlink()
        plant_symlink(log, victim)
        assert f.check_moved() is False  # moved, but reopening is refused
        f.write(b"two\n", 1)
        assert f.lines_dropped >= 1 and f.last_error is not None and "symlink" in f.last_error
    finally:
        f.close()
    assert victim.read_bytes() == b"root:precious\n"


@root_only
def test_rotation_never_renames_a_name_swapped_in_by_the_app(app_dir: Path, victim: Path) -> None:
    log = app_dir / "web-out.log"
    f = LogFile(str(log), RotatePolicy(max_size=10))
    try:
        f.write(b"12345\n", 1)
        log.unlink()
        plant_symlink(log, victim)
        assert f.rotate() is None
        assert f.last_error is not None and "replaced" in f.last_error
        assert log.is_symlink()
    finally:
        f.close()
    assert victim.read_bytes() == b"root:precious\n"


def test_check_moved_reopens_after_external_rotation(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    f = LogFile(str(log))
    try:
        f.write(b"old\n", 1)
        log.rename(tmp_path / "a.log.1")
        assert f.check_moved() is True
        f.write(b"new\n", 1)
        assert log.read_bytes() == b"new\n"
        assert f.check_moved() is False
    finally:
        f.close()


# ---------------------------------------------------------------- flush, gzip, pid files


@root_only
def test_truncate_refuses_a_symlink(app_dir: Path, victim: Path) -> None:
    log = app_dir / "web-out.log"
    plant_symlink(log, victim)
    with pytest.raises(UnsafePathError):
        safefs.truncate(str(log))
    assert victim.read_bytes() == b"root:precious\n"


def test_truncate_empties_a_regular_file_and_refuses_others(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"x" * 100)
    safefs.truncate(str(log))
    assert log.read_bytes() == b""
    fifo = tmp_path / "fifo.log"
    os.mkfifo(fifo)
    with pytest.raises(UnsafePathError, match="not a regular file"):
        safefs.truncate(str(fifo))
    with pytest.raises(FileNotFoundError):
        safefs.truncate(str(tmp_path / "missing.log"))


@root_only
def test_compress_refuses_a_symlinked_rotated_file_and_never_writes_through_a_planted_gz(app_dir: Path, victim: Path) -> None:
    rotated = app_dir / "web-out__2026-11-28_10-30-00.log"
    plant_symlink(rotated, victim)
    with pytest.raises(UnsafePathError):
        safefs.compress(str(rotated))
    # a real rotated file, with its .gz name planted as a symlink: replaced, not followed
    rotated.unlink()
    rotated.write_bytes(b"line\n" * 100)
    plant_symlink(app_dir / (rotated.name + ".gz"), victim)
    out = safefs.compress(str(rotated))
    assert victim.read_bytes() == b"root:precious\n"
    assert not Path(out).is_symlink() and gzip.decompress(Path(out).read_bytes()) == b"line\n" * 100
    assert not rotated.exists()


def test_compress_keeps_mtime_and_leaves_no_temp_file(tmp_path: Path) -> None:
    src = tmp_path / "a__2026-11-28_10-30-00.log"
    src.write_bytes(b"hello\n")
    os.utime(src, (1_000_000, 1_000_000))
    out = safefs.compress(str(src))
    assert os.stat(out).st_mtime == 1_000_000
    assert sorted(p.name for p in tmp_path.iterdir()) == [Path(out).name]


@root_only
def test_pid_file_replaces_a_planted_symlink_instead_of_following_it(app_dir: Path, victim: Path) -> None:
    pid_file = app_dir / "web.pid"
    plant_symlink(pid_file, victim)
    safefs.write_pid_file(str(pid_file), 1234)
    assert victim.read_bytes() == b"root:precious\n"
    assert not pid_file.is_symlink() and pid_file.read_text() == "1234\n"
    assert [p.name for p in app_dir.iterdir()] == ["web.pid"]  # no temp file left


def test_open_read_refuses_untrusted_symlinks_and_non_regular_files(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UnsafePathError):
        safefs.open_read(str(tmp_path / "fifo"))  # would block the reader forever


# ---------------------------------------------------------------- folders the app user can write


@root_only
def test_check_not_writable_by_refuses_folders_the_app_user_can_write(tmp_path: Path, app_dir: Path) -> None:
    with pytest.raises(UnsafePathError, match="uid 65534"):
        safefs.check_not_writable_by(str(app_dir / "web-out.log"), NOBODY)
    with pytest.raises(UnsafePathError):  # deeper: a folder under one nobody owns
        safefs.check_not_writable_by(str(app_dir / "sub" / "web-out.log"), NOBODY)
    world = tmp_path / "world"
    world.mkdir()
    os.chmod(world, 0o777)
    with pytest.raises(UnsafePathError):
        safefs.check_not_writable_by(str(world / "web.pid"), NOBODY, what="pid file")
    safe = tmp_path / "rootlogs"
    safe.mkdir(mode=0o755)
    os.chmod(tmp_path, 0o755)
    safefs.check_not_writable_by(str(safe / "web-out.log"), NOBODY)  # root's 0755 folders: fine
    safefs.check_not_writable_by(str(app_dir / "web-out.log"), os.geteuid())  # the daemon's own uid: nothing to gain


@root_only
def test_check_not_writable_by_sticky_tmp(tmp_path: Path) -> None:
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    os.chmod(tmp_path, 0o755)
    owned = sticky / "corral-logs"
    owned.mkdir(mode=0o755)
    safefs.check_not_writable_by(str(owned / "a.log"), NOBODY)  # root's folder in a sticky one: cannot be swapped
    with pytest.raises(UnsafePathError):  # not there yet: nobody could create it first
        safefs.check_not_writable_by(str(sticky / "missing" / "a.log"), NOBODY)
    with pytest.raises(UnsafePathError):  # the file right in the sticky folder
        safefs.check_not_writable_by(str(sticky / "a.log"), NOBODY)


# ---------------------------------------------------------------- exact rotated names


def touch(p: Path) -> Path:
    p.write_bytes(b"x\n")
    return p


def test_rotated_files_never_match_another_apps_live_logs(tmp_path: Path) -> None:
    """`flush web` deleted the logs of an app named `web-out__x`: its live logs matched `web-out__*`."""
    mine = touch(tmp_path / "web-out__2026-11-28_10-30-05.log")
    mine_gz = touch(tmp_path / "web-out__2026-11-28_10-30-05_2.log.gz")
    for other in ("web-out__x-out.log", "web-out__x-error.log", "web-out__x.log", "web-out__2026-x.log", "web-out__1.log"):
        touch(tmp_path / other)
    assert sorted(rotated_files(str(tmp_path / "web-out.log"))) == sorted([str(mine), str(mine_gz)])
    assert logrotate.apply_retention(str(tmp_path / "web-out.log"), 0) and (tmp_path / "web-out__x-out.log").exists()


def test_rotated_files_with_a_custom_suffix_remembered_from_the_open_log(tmp_path: Path) -> None:
    path = tmp_path / "w-out.log"
    f = LogFile(str(path), RotatePolicy(max_size=5, date_suffix="X"))
    try:
        f.write(b"abcdef\n", 1)
        rotated = rotated_files(str(path))
        assert len(rotated) == 1 and Path(rotated[0]).name.startswith("w-out__")
        touch(tmp_path / "w-out__2026-11-28_10-30-05.log")  # another suffix's name is not one of ours
        assert len(rotated_files(str(path))) == 1
        assert len(rotated_files(str(path), "YYYY-MM-DD_HH-mm-ss")) == 1
    finally:
        f.close()


@pytest.mark.parametrize(
    "fmt",
    ["YYYY-MM-DD_HH-mm-ss", "YYYY-MM-DD", "X", "x", "YY.MM.DD-hh.mm A", "DD MMM YYYY", "dddd [at] HH:mm", "YYYY-MM-DDTHH:mm:ss.SSSZ", "ZZ", "a Do MMMM"],
)
def test_date_pattern_matches_exactly_what_the_format_produces(fmt: str) -> None:
    import re

    pattern = re.compile(date_pattern(fmt))
    for ts in (0.0, 1_764_000_000.123, time.time()):
        assert pattern.fullmatch(compile_date_format(fmt)(ts)), (fmt, compile_date_format(fmt)(ts))
    assert not pattern.fullmatch("x-out")


def test_logrotate_no_longer_imports_logsink() -> None:
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(logrotate))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "corral.logs.sink" not in imported


# ---------------------------------------------------------------- CORRAL_HOME


def test_home_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "home"
    link.symlink_to(real)
    with pytest.raises(UnsafeHomeError, match="symlink"):
        Home(link).ensure()


@root_only
def test_home_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    planted = tmp_path / "home"
    planted.mkdir()
    (planted / "dump.json").write_text("[]")
    os.chown(planted, NOBODY, NOBODY)
    with pytest.raises(UnsafeHomeError, match="belongs to uid 65534"):
        Home(planted).ensure()


def test_home_is_created_0700_and_tightened(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    home.ensure()
    assert stat.S_IMODE(os.stat(home.root).st_mode) == 0o700
    os.chmod(home.root, 0o755)
    home.ensure()
    assert stat.S_IMODE(os.stat(home.root).st_mode) == 0o700
    check_home(home.root)
    (tmp_path / "file").write_text("")
    with pytest.raises(UnsafeHomeError, match="not a folder"):
        check_home(tmp_path / "file")


@root_only
def test_check_app_files_names_the_app_and_key(tmp_path: Path, app_dir: Path) -> None:
    from corral.core.errors import ConfigError

    os.chmod(tmp_path, 0o755)
    safe = tmp_path / "rootlogs"
    safe.mkdir(mode=0o755)
    base = {"name": "web", "uid": "nobody", "gid": None, "out_file": "default", "error_file": "default", "log_file": None, "pid_file": None}
    safefs.check_app_files(base)  # defaults live in CORRAL_HOME
    safefs.check_app_files({**base, "out_file": str(safe / "web-out.log"), "log_file": True, "pid_file": "/dev/null"})
    with pytest.raises(ConfigError) as err:
        safefs.check_app_files({**base, "error_file": str(app_dir / "web-err.log")})
    assert err.value.app == "web" and err.value.key == "error_file" and "can write" in err.value.render()
    with pytest.raises(ConfigError) as err:
        safefs.check_app_files({**base, "pid_file": "/tmp/web.pid"})  # right in sticky /tmp
    assert err.value.key == "pid_file"
    safefs.check_app_files({**base, "uid": None, "error_file": str(app_dir / "web-err.log")})  # runs as the daemon's user
    safefs.check_app_files({**base, "uid": "root", "error_file": str(app_dir / "web-err.log")})
