"""Reading log history: the current file and its rotated (and gzipped) predecessors.

Used by the daemon to answer ``corral logs --lines N [--since] [--until] [--grep]``:
the last lines of each file, reaching back into rotated files when the current
one is short, filtered, then interleaved in time order.  A line's time comes
from its JSON record or its ISO time prefix; lines without one take their
file's modification time (so ordering between files is approximate for them).
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from corral.logs.rotate import rotated_files
from corral.system import safefs

TAIL_MAX_BYTES = 64 * 1024 * 1024  # never read more than this per log when tailing
GZ_MAX_BYTES = 64 * 1024 * 1024  # never decompress more than this per rotated file
GZ_BLOCK = 256 * 1024
MAX_LINE = 1024 * 1024  # as logsink: no stored line is longer
_ISO_PREFIX = re.compile(rb"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?): ")


@dataclass
class LogLine:
    time: float
    order: int
    name: str
    id: int
    type: str
    message: str


def _read_gz(path: str, keep: int) -> tuple[list[bytes], bool]:
    """The last ``keep`` lines (all when ``keep`` < 0) of a gzipped rotated log, streamed:
    memory holds the kept lines and one block, never the whole file, and at most
    GZ_MAX_BYTES are decompressed (a small file that expands hugely costs a bounded
    amount of time).  (lines, True when the cap cut the file short)."""
    fd = safefs.open_read(path)
    kept: deque[bytes] = deque(maxlen=keep if keep >= 0 else None)
    total = 0
    partial = b""
    truncated = False
    with os.fdopen(fd, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
        while True:
            block = gz.read(GZ_BLOCK)
            if not block:
                break
            total += len(block)
            pieces = (partial + block).split(b"\n")
            partial = pieces.pop()
            if len(partial) > MAX_LINE:
                pieces.append(partial)
                partial = b""
            kept.extend(pieces)
            if total >= GZ_MAX_BYTES:
                truncated = bool(gz.read(1))
                break
    if partial and not truncated:
        kept.append(partial)
    return list(kept), truncated


def _read_tail(path: str, max_lines: int) -> list[bytes]:
    """Up to max_lines last lines of a plain file, reading backwards in blocks."""
    fd = safefs.open_read(path)
    try:
        return _tail_of_fd(fd, os.fstat(fd).st_size, max_lines)
    finally:
        os.close(fd)


def _tail_of_fd(fd: int, size: int, max_lines: int) -> list[bytes]:
    """Up to max_lines last lines of the first ``size`` bytes of an open file (pread:
    the fd's offset is not used, so another thread may hold the same fd)."""
    pos = size
    data = b""
    while pos > 0 and (max_lines < 0 or data.count(b"\n") <= max_lines) and size - pos < TAIL_MAX_BYTES:
        step = min(65536, pos)
        pos -= step
        data = os.pread(fd, step, pos) + data
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if pos > 0 and lines:
        lines = lines[1:]  # the first piece may be a partial line
    return lines[-max_lines:] if max_lines >= 0 else lines


@dataclass
class Snapshot:
    """What of one log is history at one moment: its rotated files and the first
    ``size`` bytes of the live file, held open (a rotation that renames it later
    changes nothing). Taken on the event loop, cheaply; read in a thread."""

    path: str
    rotated: list[str]
    fd: int | None
    size: int
    mtime: float

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def snapshot(path: str) -> Snapshot:
    rotated = rotated_files(path)
    try:
        fd: int | None = safefs.open_read(path)
    except OSError:
        return Snapshot(path, rotated, None, 0, 0.0)
    assert fd is not None
    st = os.fstat(fd)
    return Snapshot(path, rotated, fd, st.st_size, st.st_mtime)


def parse_time(line: bytes, fallback: float) -> tuple[float, str]:
    """(time, message) of one stored line."""
    if line[:1] == b"{":
        try:
            rec = json.loads(line)
            ts = rec.get("timestamp")
            msg = str(rec.get("message", ""))
            if isinstance(ts, int | float):
                return float(ts) / (1000.0 if ts > 1e11 else 1.0), msg
            if isinstance(ts, str):
                return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp(), msg
            return fallback, msg
        except (ValueError, TypeError, AttributeError):
            pass
    text = line.decode("utf-8", "replace")
    m = _ISO_PREFIX.match(line)
    if m:
        try:
            stamp = m.group(1).decode().replace("Z", "+00:00")
            return datetime.fromisoformat(stamp).timestamp(), text
        except ValueError:
            pass
    return fallback, text


def history(
    path: str,
    *,
    lines: int,
    name: str,
    id: int,
    type: str,
    since: float | None = None,
    until: float | None = None,
    grep: re.Pattern[str] | None = None,
    snap: Snapshot | None = None,
) -> list[LogLine]:
    """The last ``lines`` lines of one log (current file, then rotated files, newest first)
    that pass the filters, oldest first. With ``snap``, the log as it was when the
    snapshot was taken (its live file read from the held fd, up to the size then)."""
    if lines <= 0:
        return []
    files = [*(snap.rotated if snap is not None else rotated_files(path)), path]
    picked: list[LogLine] = []
    for file_index, file in enumerate(reversed(files)):
        live = snap is not None and file_index == 0
        try:
            if live:
                assert snap is not None
                if snap.fd is None:
                    continue
                mtime = snap.mtime
            else:
                mtime = os.stat(file).st_mtime
        except OSError:
            continue
        if since is not None and mtime < since and file_index > 0:
            break  # this rotated file (and older ones) ended before --since
        keep = lines if since is None and until is None and grep is None else -1
        try:
            if file.endswith(".gz"):
                raw_lines, cut = _read_gz(file, keep)
                if cut:
                    notice = f"[corral] {file}: only the first {GZ_MAX_BYTES // (1024 * 1024)} MB (uncompressed) of this rotated log were read"
                    raw_lines.insert(0, notice.encode())
            elif live:
                assert snap is not None and snap.fd is not None
                raw_lines = _tail_of_fd(snap.fd, snap.size, keep)
            else:
                raw_lines = _read_tail(file, keep)
        except OSError:
            continue
        chunk: list[LogLine] = []
        for raw_line in raw_lines:
            ts, msg = parse_time(raw_line, mtime)
            if since is not None and ts < since:
                continue
            if until is not None and ts > until:
                continue
            if grep is not None and not grep.search(msg):
                continue
            chunk.append(LogLine(ts, 0, name, id, type, msg))
        picked = chunk + picked
        if len(picked) >= lines:
            break
    picked = picked[-lines:]
    for i, ln in enumerate(picked):
        ln.order = i
    return picked


def interleave(groups: list[list[LogLine]]) -> list[LogLine]:
    """Merge several logs' lines in time order (stable within each log)."""
    out = [ln for group in groups for ln in group]
    for gi, group in enumerate(groups):
        for ln in group:
            ln.order = ln.order + gi * 10_000_000
    # stable: within a file, lines keep their order even when their times tie
    out.sort(key=lambda ln: ln.time)
    return out
