"""All OS work on child processes, behind one small interface.

Spawning (own process group, pipes for stdout and stderr, uid/gid),
signalling a whole process tree, reaping (pidfd for our children, and as a
child subreaper for orphaned grandchildren) and exit status decoding live
here, so the supervisor above stays free of OS details.

A pid signalled later than the moment it was observed is held as a
:class:`Tracked` pidfd, never signalled by number: by then the process may be
gone and its pid given to another one.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import select
import signal
import subprocess
from dataclasses import dataclass

PR_SET_CHILD_SUBREAPER = 36
F_SETPIPE_SZ = 1031
PIPE_SIZE = 1024 * 1024


class SpawnError(Exception):
    pass


@dataclass
class Child:
    pid: int
    pgid: int
    stdout_fd: int  # read ends, non-blocking, owned by the caller
    stderr_fd: int
    pidfd: int | None
    popen: subprocess.Popen[bytes] | None = None


def mark_reaped(child: Child, status: int) -> None:
    """The child was reaped by us: keep subprocess from reaping it again."""
    if child.popen is not None:
        child.popen.returncode = status


@dataclass
class Tracked:
    """A process observed at some moment, held by pidfd so that a later signal reaches it
    or nothing (pid reuse). ``fd`` is None where pidfds are not available."""

    pid: int
    fd: int | None


def track_group(pgid: int) -> list[Tracked]:
    """The members of process group pgid, held by pidfd (a /proc scan: only when the
    group outlived its leader)."""
    out: list[Tracked] = []
    for pid in group_members(pgid):
        try:
            fd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        except (OSError, AttributeError):
            fd = None
        try:
            # checked after the pidfd is opened: it names a member of the group
            same = os.getpgid(pid) == pgid
        except OSError:
            same = False
        if not same:
            close_fd(fd)
            continue
        out.append(Tracked(pid, fd))
    return out


def track_tree(pid: int) -> list[Tracked]:
    """Every descendant of pid (also those that left its group), held by pidfd."""
    import psutil

    try:
        procs = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    out: list[Tracked] = []
    for p in procs:
        try:
            fd: int | None = os.pidfd_open(p.pid)
        except ProcessLookupError:
            continue
        except (OSError, AttributeError):
            fd = None
        # psutil compares the start time: the pidfd opened after the listing names the
        # process listed only if that process still holds the pid now
        if not p.is_running():
            close_fd(fd)
            continue
        out.append(Tracked(p.pid, fd))
    return out


def tracked_alive(t: Tracked) -> bool:
    if t.fd is None:
        return _pid_alive(t.pid)
    # a pidfd becomes readable when its process has exited
    poller = select.poll()
    poller.register(t.fd, select.POLLIN)
    return not poller.poll(0)


def signal_tracked(tracked: list[Tracked], sig: str | int) -> None:
    num = signal_number(sig) if isinstance(sig, str) else sig
    for t in tracked:
        try:
            if t.fd is not None:
                signal.pidfd_send_signal(t.fd, num)
            else:
                os.kill(t.pid, num)
        except (ProcessLookupError, PermissionError):
            pass
        except OSError:
            pass


def untrack(tracked: list[Tracked]) -> None:
    for t in tracked:
        close_fd(t.fd)
        t.fd = None


def group_members(pgid: int) -> list[int]:
    """Pids in process group pgid (a /proc scan: only when the group outlived its leader)."""
    out: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rfind(b")") + 2 :].split()
        try:
            if int(rest[2]) == pgid:
                out.append(int(name))
        except (IndexError, ValueError):
            continue
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def set_child_subreaper() -> bool:
    """Make orphaned descendants re-parent to us, so we can reap and kill them."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _resolve_user(uid: str | int | None, gid: str | int | None) -> tuple[int | None, int | None]:
    import grp
    import pwd

    u: int | None = None
    g: int | None = None
    if uid is not None:
        try:
            entry = pwd.getpwuid(uid) if isinstance(uid, int) else pwd.getpwnam(uid)
        except KeyError:
            raise SpawnError(f"unknown user {uid!r}")
        u = entry.pw_uid
        if gid is None:
            g = entry.pw_gid
    if gid is not None:
        try:
            g = (grp.getgrgid(gid) if isinstance(gid, int) else grp.getgrnam(gid)).gr_gid
        except KeyError:
            raise SpawnError(f"unknown group {gid!r}")
    changes_identity = (u is not None and u != os.geteuid()) or (g is not None and g != os.getegid())
    if changes_identity and os.geteuid() != 0:
        raise SpawnError("uid/gid need the daemon to run as root")
    return u, g


def spawn(
    argv: list[str],
    *,
    cwd: str,
    env: dict[str, str],
    uid: str | int | None = None,
    gid: str | int | None = None,
    pass_fds: tuple[int, ...] = (),
) -> Child:
    """Start a process in its own process group with its output on two pipes."""
    u, g = _resolve_user(uid, gid)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    for fd in (out_w, err_w):
        # a bigger pipe lets a chatty app run ahead of the daemon for longer before it
        # blocks (backpressure), and lets the daemon read more per wakeup
        try:
            fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass
    try:
        popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            close_fds=True,
            pass_fds=pass_fds,
            process_group=0,
            restore_signals=True,
            user=u,
            group=g,
            extra_groups=[] if (u is not None and os.geteuid() == 0) else None,
        )
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        for fd in (out_r, out_w, err_r, err_w):
            os.close(fd)
        msg = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise SpawnError(f"{argv[0]}: {msg}")
    os.close(out_w)
    os.close(err_w)
    os.set_blocking(out_r, False)
    os.set_blocking(err_r, False)
    try:
        pidfd: int | None = os.pidfd_open(popen.pid)
    except (OSError, AttributeError):
        pidfd = None
    return Child(pid=popen.pid, pgid=popen.pid, stdout_fd=out_r, stderr_fd=err_r, pidfd=pidfd, popen=popen)


def decode_status(status: int) -> tuple[int | None, str | None]:
    """``(exit code, signal name)`` from a wait status."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return None, signal.Signals(sig).name
        except ValueError:
            return None, f"SIG{sig}"
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status), None
    return None, None


def reap(pid: int) -> int | None:
    """Reap one child if it has exited; its wait status, or None if still running or gone."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    if got == 0:
        return None
    return status


def reap_any() -> list[tuple[int, int]]:
    """Reap every exited child (ours and re-parented orphans)."""
    reaped = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        reaped.append((pid, status))
    return reaped


def signal_number(name: str) -> int:
    return int(signal.Signals[name])


def signal_group(pgid: int, sig: str | int) -> bool:
    """Send a signal to a whole process group; False if the group is gone."""
    num = signal_number(sig) if isinstance(sig, str) else sig
    try:
        os.killpg(pgid, num)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def descendants(pid: int) -> list[int]:
    """Every descendant of pid, also those that left its process group (setsid)."""
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def close_fd(fd: int | None) -> None:
    if fd is None:
        return
    try:
        os.close(fd)
    except OSError as e:
        if e.errno != errno.EBADF:
            raise
