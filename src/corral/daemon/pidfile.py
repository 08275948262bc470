"""``pid_file``: the instance's pid written where the config asks."""

from __future__ import annotations


def write_pid_file(path: str, pid: int) -> str | None:
    """Write pid; an error message if it could not be written."""
    try:
        from corral.system import safefs

        safefs.write_pid_file(path, pid)
    except OSError as e:
        return f"cannot write pid_file {path}: {e.strerror}"
    return None
