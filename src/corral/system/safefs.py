"""Safe file operations for files the daemon writes on an app's behalf.

A daemon running as root writes log files, pid files and rotated (gzipped)
logs in folders an app may be able to write.  Every such operation goes
through this module so that an app user can never redirect a root write:

- the parent folder is opened once (``O_DIRECTORY``) and the file is reached
  from that folder's fd (``openat``) with ``O_NOFOLLOW``: a symlink planted in
  place of a log is refused, not followed;
- a symlink is followed only when nobody else could have planted it: owned by
  root or the daemon's user, in a folder only they can write (``out_file =
  "/dev/stdout"`` keeps working);
- truncation, rotation and compression act only on regular files with a
  single link (a hard link to ``/etc/shadow`` is refused);
- temporary files are created with ``O_EXCL`` and renamed into place;
- a moved log is recognised by comparing ``lstat`` identities, never by
  following the name.

``check_not_writable_by`` refuses, for an app running as another user, a log
or pid path in a folder that user can write (where it could race any check).
"""

from __future__ import annotations

import errno
import gzip
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from typing import Any

from corral.core.errors import CorralError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class UnsafePathError(CorralError, OSError):
    """A path the daemon refuses to write: a planted symlink, a hard link, a folder
    the app's user can write.  An OSError too, so callers that count write
    failures treat it as one (with this clear message)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        CorralError.__init__(self, f"{path}: {reason}")
        self.strerror = reason
        self.filename = path
        self.errno = errno.EPERM

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def _split(path: str) -> tuple[str, str]:
    parent, name = os.path.split(os.path.abspath(path))
    return parent or "/", name


def open_dir(path: str, *, create: bool = False, mode: int = 0o755) -> int:
    """An fd on a folder (created with its parents when asked)."""
    if create:
        os.makedirs(path, mode=mode, exist_ok=True)
    return os.open(path, _DIR_FLAGS)


def _trusted_owner(uid: int) -> bool:
    return uid in (0, os.geteuid())


def _trusted_dir(st: os.stat_result) -> bool:
    """Only root or the daemon's user can change this folder's entries."""
    return _trusted_owner(st.st_uid) and not (st.st_mode & 0o022)


def _check_written(path: str, st: os.stat_result) -> None:
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        raise UnsafePathError(path, f"refusing to write a file with {st.st_nlink} hard links")
    if stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(path, "is a folder, not a file")


def open_append(path: str, mode: int = 0o644) -> tuple[int, os.stat_result]:
    """Open (create) a log file for appending: (fd, its stat).

    Non-blocking (a FIFO without a reader must not freeze the daemon).  A
    symlink is followed only when trusted (see the module doc); a regular file
    must have one link."""
    parent, name = _split(path)
    dfd = open_dir(parent, create=True)
    try:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW
        try:
            fd = os.open(name, flags, mode, dir_fd=dfd)
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            lst = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if not (stat.S_ISLNK(lst.st_mode) and _trusted_owner(lst.st_uid) and _trusted_dir(os.fstat(dfd))):
                raise UnsafePathError(path, "is a symlink someone else could have planted: refusing to follow it")
            fd = os.open(path, flags & ~os.O_NOFOLLOW, mode)
        try:
            st = os.fstat(fd)
            _check_written(path, st)
        except BaseException:
            os.close(fd)
            raise
        return fd, st
    finally:
        os.close(dfd)


def is_symlink(path: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the name itself (lstat: a symlink is not followed); None when absent."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _open_regular(dfd: int, name: str, path: str, flags: int) -> tuple[int, os.stat_result]:
    pre = os.stat(name, dir_fd=dfd, follow_symlinks=False)  # a FIFO is refused before it can block
    if stat.S_ISLNK(pre.st_mode):
        raise UnsafePathError(path, "is a symlink: refusing to follow it")
    if not stat.S_ISREG(pre.st_mode):
        raise UnsafePathError(path, "is not a regular file")
    try:
        fd = os.open(name, flags | _NOFOLLOW, dir_fd=dfd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafePathError(path, "is a symlink: refusing to follow it")
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(path, "is not a regular file")
        _check_written(path, st)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def truncate(path: str) -> None:
    """Empty a log file (``flush``): a regular file only, never through a symlink.
    FileNotFoundError when absent."""
    parent, name = _split(path)
    dfd = open_dir(parent)
    try:
        fd, _ = _open_regular(dfd, name, path, os.O_WRONLY)
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)
    finally:
        os.close(dfd)


def rename_if_same(path: str, target: str, ident: tuple[int, int] | None) -> None:
    """Rename a log aside (rotation) only if the name still is the file we write to
    (``ident`` from its fstat): a file swapped in under the name is left alone.
    Both names in the same folder; renaming never follows a symlink."""
    parent, name = _split(path)
    tparent, tname = _split(target)
    if tparent != parent:
        raise UnsafePathError(target, "a rotated log must stay in its log's folder")
    dfd = open_dir(parent)
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode) or (ident is not None and (st.st_dev, st.st_ino) != ident):
            raise UnsafePathError(path, "was replaced by another file: not rotated")
        os.rename(name, tname, src_dir_fd=dfd, dst_dir_fd=dfd)
    finally:
        os.close(dfd)


def unlink(path: str) -> None:
    """Remove a name (never follows a symlink: unlink removes the link itself)."""
    parent, name = _split(path)
    dfd = open_dir(parent)
    try:
        os.unlink(name, dir_fd=dfd)
    finally:
        os.close(dfd)


def _temp_in(dfd: int, name: str, mode: int) -> tuple[int, str]:
    for _ in range(16):
        tmp = f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode, dir_fd=dfd), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", name)


def write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write a small file (a pid file) whole: a temp file made with O_EXCL next to it,
    renamed over the name (which replaces a planted symlink rather than following it)."""
    parent, name = _split(path)
    dfd = open_dir(parent, create=True)
    try:
        fd, tmp = _temp_in(dfd, name, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.close(fd)
            fd = -1
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
            raise
    finally:
        os.close(dfd)


def write_pid_file(path: str, pid: int) -> None:
    """The pid file of an app instance (see write_atomic)."""
    write_atomic(path, f"{pid}\n".encode())


def compress(path: str, level: int = 1) -> str:
    """gzip a rotated log next to itself (``path.gz``), keeping its mtime and mode, and
    remove the original.  The source must be a regular file reached without a
    symlink; the output is a fresh O_EXCL temp file renamed into place."""
    parent, name = _split(path)
    dfd = open_dir(parent)
    try:
        src, st = _open_regular(dfd, name, path, os.O_RDONLY)
        try:
            out, tmp = _temp_in(dfd, name + ".gz", stat.S_IMODE(st.st_mode) & 0o666)
            try:
                with os.fdopen(out, "wb") as raw, gzip.GzipFile(filename=name, mode="wb", fileobj=raw, compresslevel=level, mtime=int(st.st_mtime)) as gz:
                    while True:
                        block = os.read(src, 1024 * 1024)
                        if not block:
                            break
                        gz.write(block)
                os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dfd, follow_symlinks=False)
                os.rename(tmp, name + ".gz", src_dir_fd=dfd, dst_dir_fd=dfd)
            except BaseException:
                try:
                    os.unlink(tmp, dir_fd=dfd)
                except OSError:
                    pass
                raise
        finally:
            os.close(src)
        cur = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if (cur.st_dev, cur.st_ino) == (st.st_dev, st.st_ino):
            os.unlink(name, dir_fd=dfd)
    finally:
        os.close(dfd)
    return path + ".gz"


def open_read(path: str) -> int:
    """An fd to read a log (history): a regular file, not through a planted symlink."""
    parent, name = _split(path)
    dfd = open_dir(parent)
    try:
        try:
            fd = os.open(name, os.O_RDONLY | _NOFOLLOW, dir_fd=dfd)
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            lst = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if not (_trusted_owner(lst.st_uid) and _trusted_dir(os.fstat(dfd))):
                raise UnsafePathError(path, "is a symlink someone else could have planted: refusing to follow it")
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise UnsafePathError(path, "is not a regular file")
        os.set_blocking(fd, True)
        return fd
    finally:
        os.close(dfd)


# ------------------------------------------------------------ another user's folders


def _groups_of(uid: int, gid: int | None) -> set[int]:
    import pwd

    groups: set[int] = set() if gid is None else {gid}
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return groups
    groups.add(entry.pw_gid)
    try:
        groups.update(os.getgrouplist(entry.pw_name, entry.pw_gid))
    except OSError:
        pass
    return groups


def _writable_by(st: os.stat_result, uid: int, groups: Iterable[int]) -> bool:
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IWUSR)
    if st.st_gid in set(groups):
        return bool(st.st_mode & stat.S_IWGRP)
    return bool(st.st_mode & stat.S_IWOTH)


def check_not_writable_by(path: str, uid: int, gid: int | None = None, *, what: str = "log file") -> None:
    """Refuse (UnsafePathError) a path an app running as ``uid`` could redirect: a file
    in a folder, or under a folder, that user can write.  A sticky folder (like
    /tmp) is fine when the next folder down exists and belongs to root or the
    daemon's user (the app cannot rename or replace it).  Missing folders are
    skipped: the daemon creates them, owned by itself."""
    if uid == os.geteuid():
        return  # the app writes as the daemon's own user: nothing to gain
    groups = _groups_of(uid, gid)
    current = os.path.dirname(os.path.abspath(path))
    below: os.stat_result | None = None
    while True:
        try:
            st = os.stat(current)
        except FileNotFoundError:
            st = None
        if st is not None and _writable_by(st, uid, groups):
            sticky_ok = bool(st.st_mode & stat.S_ISVTX) and below is not None and _trusted_owner(below.st_uid)
            if not sticky_ok:
                raise UnsafePathError(
                    path,
                    f"{what} in {current}, a folder uid {uid} (the app's user) can write: it could swap the file for a "
                    "symlink and redirect the daemon's writes; choose a folder only root can write",
                )
        if st is not None:
            below = st
        parent = os.path.dirname(current)
        if parent == current:
            return
        current = parent


APP_FILE_KEYS = (("out_file", "log file"), ("error_file", "log file"), ("log_file", "log file"), ("pid_file", "pid file"))


def check_app_files(app: Mapping[str, Any]) -> None:
    """For an app that runs as another user under a root daemon: refuse (ConfigError naming
    the app and the key) a log or pid path in a folder that user can write.  Paths left to
    their default (in ``$CORRAL_HOME``, the daemon's own 0700 folder) and ``/dev/null`` are
    fine.  Nothing to check when the app runs as the daemon's user."""
    from corral.core.errors import ConfigError

    user = app.get("uid")
    if user is None or os.geteuid() != 0:
        return
    uid, gid = _resolve_ids(user, app.get("gid"))
    if uid is None or uid == os.geteuid():
        return
    for key, what in APP_FILE_KEYS:
        path = app.get(key)
        if not isinstance(path, str) or path in ("default", "/dev/null", "NULL", "") or not os.path.isabs(path):
            continue
        try:
            check_not_writable_by(path, uid, gid, what=what)
        except UnsafePathError as e:
            raise ConfigError(e.reason, app=str(app.get("name") or ""), key=key)


def _resolve_ids(user: Any, group: Any) -> tuple[int | None, int | None]:
    import grp
    import pwd

    try:
        entry = pwd.getpwuid(int(user)) if str(user).isdigit() else pwd.getpwnam(str(user))
    except (KeyError, ValueError):
        return None, None
    gid: int | None = entry.pw_gid
    if group is not None:
        try:
            gid = int(group) if str(group).isdigit() else grp.getgrnam(str(group)).gr_gid
        except (KeyError, ValueError):
            gid = entry.pw_gid
    return entry.pw_uid, gid
