"""Where Corral keeps its files: ``CORRAL_HOME`` (default ``~/.corral``)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from corral.core.errors import CorralError


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Home:
        env = os.environ if environ is None else environ
        root = env.get("CORRAL_HOME") or os.path.join(os.path.expanduser("~"), ".corral")
        return cls(Path(root).absolute())

    @property
    def socket(self) -> Path:
        return self.root / "corral.sock"

    @property
    def pid_file(self) -> Path:
        return self.root / "corral.pid"

    @property
    def lock_file(self) -> Path:
        return self.root / "corral.lock"

    @property
    def daemon_log(self) -> Path:
        return self.root / "corral.log"

    @property
    def dump_file(self) -> Path:
        return self.root / "dump.json"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def pids_dir(self) -> Path:
        return self.root / "pids"

    def take_lock(self) -> int | None:
        """Hold the home for this process (one daemon or runtime per home): the lock fd,
        or None when another process holds it. Released when the process exits."""
        import fcntl

        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def ensure(self) -> None:
        """Create the home folder with mode 0700 (and tighten it if it exists).

        The home must be a real folder owned by the user running Corral: a symlink,
        or a folder someone else made (where they could plant a ``dump.json`` to be
        resurrected, or a socket to impersonate the daemon), is refused."""
        self.root.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(self.root, 0o700)
        except FileExistsError:
            pass
        check_home(self.root)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) != 0o700:
                os.fchmod(fd, 0o700)
        finally:
            os.close(fd)


class UnsafeHomeError(CorralError):
    """CORRAL_HOME is a symlink, not a folder, or not owned by the user."""


def check_home(root: Path, uid: int | None = None) -> None:
    """Refuse a home that is a symlink, not a folder, or owned by another user."""
    me = os.getuid() if uid is None else uid
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeHomeError(f"CORRAL_HOME {root} is a symlink: point CORRAL_HOME at the real folder")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeHomeError(f"CORRAL_HOME {root} is not a folder")
    if st.st_uid != me:
        raise UnsafeHomeError(
            f"CORRAL_HOME {root} belongs to uid {st.st_uid}, not to you (uid {me}): refusing to use a folder "
            "someone else controls; remove it or choose another CORRAL_HOME"
        )
