"""``pid_file``: the instance's pid written where the config asks."""

from __future__ import annotations

import os


def write_pid_file(path: str, pid: int) -> str | None:
    """Write pid; an error message if it could not be written."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(f"{pid}\n")
    except OSError as e:
        return f"cannot write pid_file {path}: {e.strerror}"
    return None
