"""Where Corral keeps its files: ``CORRAL_HOME`` (default ``~/.corral``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


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
        """Create the home folder with mode 0700 (and tighten it if it exists)."""
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
