"""Log rotation policy: naming, retention and compression of rotated files.

Rotated files are named like pm2-logrotate's: ``web-out__2026-11-28_10-30-00.log``
(``log_date_suffix`` in moment tokens), with ``_N`` added when several rotations
fall in the same second, and ``.gz`` when compressed.  Retention keeps the
newest ``log_retain`` rotated files of each log and deletes the oldest first.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Any

from corral.logs.dates import compile_date_format, date_pattern
from corral.system import safefs

DEFAULT_DATE_SUFFIX = "YYYY-MM-DD_HH-mm-ss"
DEFAULT_RETAIN = 30
SEPARATOR = "__"

# pm2-logrotate's setting names, accepted in the daemon settings ([logs] in corral.toml)
PM2_LOGROTATE_NAMES = {
    "max_size": "log_max_size",
    "retain": "log_retain",
    "compress": "log_compress",
    "dateFormat": "log_date_suffix",
    "rotateInterval": "log_rotate_interval",
}
NAMED_INTERVALS = {"daily": "0 0 * * *", "hourly": "0 * * * *", "weekly": "0 0 * * 0", "monthly": "0 0 1 * *"}


@dataclass(frozen=True)
class RotatePolicy:
    max_size: int | None = None
    interval: str | None = None  # cron pattern
    retain: int = DEFAULT_RETAIN
    compress: bool = False
    date_suffix: str = DEFAULT_DATE_SUFFIX

    @property
    def active(self) -> bool:
        return bool(self.max_size or self.interval)


def policy_from(cfg: dict[str, Any], defaults: dict[str, Any] | None = None) -> RotatePolicy | None:
    """The app's keys win over the daemon-wide defaults."""
    d = defaults or {}

    def pick(key: str) -> Any:
        value = cfg.get(key)
        return value if value is not None else d.get(key)

    max_size = pick("log_max_size")
    interval = pick("log_rotate_interval")
    if not max_size and not interval:
        return None
    if interval:
        interval = NAMED_INTERVALS.get(str(interval).strip().lower(), str(interval))
    retain = pick("log_retain")
    compress = pick("log_compress")
    suffix = pick("log_date_suffix")
    return RotatePolicy(
        max_size=int(max_size) if max_size else None,
        interval=interval or None,
        retain=DEFAULT_RETAIN if retain is None else int(retain),
        compress=bool(compress),
        date_suffix=suffix or DEFAULT_DATE_SUFFIX,
    )


# The date suffix each live log rotates with (recorded when the log is opened), so
# that retention, flush and history recognise its rotated files by their exact name.
_SUFFIXES: dict[str, str] = {}


def remember_suffix(path: str, date_suffix: str) -> None:
    _SUFFIXES[path] = date_suffix


def rotated_name(path: str, ts: float, date_suffix: str) -> str:
    stem, ext = os.path.splitext(path)
    stamp = compile_date_format(date_suffix)(ts)
    candidate = f"{stem}{SEPARATOR}{stamp}{ext or '.log'}"
    n = 1
    while os.path.exists(candidate) or os.path.exists(candidate + ".gz"):
        candidate = f"{stem}{SEPARATOR}{stamp}_{n}{ext or '.log'}"
        n += 1
    return candidate


def rotated_pattern(path: str, date_suffix: str | None = None) -> re.Pattern[str]:
    """The exact names of one log's rotated files: ``<stem>__<stamp>[_N]<ext>[.gz]`` where
    the stamp is what ``date_suffix`` produces (default: the suffix the log was opened
    with).  ``web-out__x-out.log`` (the live log of an app named ``web-out__x``) is
    not a rotated file of ``web-out.log``."""
    suffix = date_suffix or _SUFFIXES.get(path) or DEFAULT_DATE_SUFFIX
    stem, ext = os.path.splitext(os.path.basename(path))
    return re.compile(
        re.escape(stem + SEPARATOR) + "(?:" + date_pattern(suffix) + ")" + r"(?:_\d+)?" + re.escape(ext or ".log") + r"(?:\.gz)?"
    )


def rotated_files(path: str, date_suffix: str | None = None) -> list[str]:
    """Rotated files of one log, oldest first (by modification time, then name)."""
    stem, ext = os.path.splitext(path)
    folder = os.path.dirname(path) or "."
    exact = rotated_pattern(path, date_suffix)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = [os.path.join(os.path.dirname(path), n) for n in names if exact.fullmatch(n)]

    def key(p: str) -> tuple[float, str, int]:
        # (mtime, date stamp, same-second counter): `_10` sorts after `_2` on equal mtimes
        rest = p[len(stem) + len(SEPARATOR) :]
        if rest.endswith(".gz"):
            rest = rest[:-3]
        if ext and rest.endswith(ext):
            rest = rest[: -len(ext)]
        stamp, _, counter = rest.rpartition("_")
        n = int(counter) if counter.isdigit() and stamp else 0
        if not (counter.isdigit() and stamp):
            stamp = rest
        try:
            mtime = os.lstat(p).st_mtime
        except OSError:
            mtime = 0.0
        return mtime, stamp, n

    return sorted(found, key=key)


def apply_retention(path: str, retain: int, date_suffix: str | None = None) -> list[str]:
    """Delete rotated files beyond ``retain``, oldest first; returns what was deleted."""
    files = rotated_files(path, date_suffix)
    doomed = files[: max(0, len(files) - retain)]
    for p in doomed:
        try:
            safefs.unlink(p)
        except FileNotFoundError:
            pass
    return doomed


def compress_file(path: str) -> str:
    """gzip a rotated file next to itself, keeping its mtime; removes the original.
    Never through a symlink; the output is an O_EXCL temp file renamed into place."""
    # level 1: logs shrink ~8x already, at a fraction of level 6's CPU (measured in bench/)
    return safefs.compress(path, level=1)


def next_interval(pattern: str, after: float) -> float:
    from corral.core.cron import next_cron

    return next_cron(pattern, after)


def now() -> float:
    return time.time()
