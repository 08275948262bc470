"""Log capture: whole-line framing, line formatting (plain, dated, JSON) and log files.

Lines are framed from the bytes read off an app's pipes; the timestamp
prefix or the JSON record is made per line, never per read chunk (a JSON
block is escaped in one pass but still gives one record per line); a
partial last line is written when the app exits.  Writes go straight to
files opened with O_APPEND, so several instances (merge_logs) and the
combined log can share a file without tearing lines.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from dataclasses import dataclass

import msgspec

from corral.logs.dates import compile_date_format, iso_time
from corral.logs.rotate import DEFAULT_DATE_SUFFIX, RotatePolicy, remember_suffix, rotated_name
from corral.system import safefs

MAX_LINE = 1024 * 1024  # a longer line is cut into pieces of this size


class LineFramer:
    """Turns a stream of byte chunks into whole lines (without their newline)."""

    __slots__ = ("_partial",)

    def __init__(self) -> None:
        self._partial = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        if not chunk:
            return []
        data = self._partial + chunk if self._partial else chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) >= MAX_LINE:
            lines.append(self._partial)
            self._partial = b""
        return lines

    def feed_block(self, chunk: bytes) -> bytes:
        """Whole lines of (partial + chunk) as one block, newlines kept: the fast path for
        plain text, where nothing is made per line."""
        data = self._partial + chunk if self._partial else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            if len(data) >= MAX_LINE:
                self._partial = b""
                return data + b"\n"
            self._partial = data
            return b""
        self._partial = data[cut + 1 :]
        block = data[: cut + 1]
        if len(self._partial) >= MAX_LINE:
            block += self._partial + b"\n"
            self._partial = b""
        return block

    def flush(self) -> list[bytes]:
        """The partial last line, if any (when the stream ends)."""
        if self._partial:
            line, self._partial = self._partial, b""
            return [line]
        return []


# ---------------------------------------------------------------- formatting


@dataclass(frozen=True)
class LineFormat:
    kind: str  # "text" or "json"
    app_name: str
    process_id: int
    date_format: str | None = None


class LineFormatter:
    """Formats a batch of lines read together (they share a timestamp)."""

    def __init__(self, spec: LineFormat) -> None:
        self.spec = spec
        self._date = compile_date_format(spec.date_format) if spec.date_format else None
        self._last_ts = -1.0
        self._last_stamp = ""
        self._json = JsonRecords(spec.app_name, spec.process_id) if spec.kind == "json" else None

    def _stamp(self, ts: float) -> str:
        if ts != self._last_ts:
            self._last_ts = ts
            if self._date is not None:
                self._last_stamp = self._date(ts)
            else:
                self._last_stamp = iso_time(ts)
        return self._last_stamp

    @property
    def plain(self) -> bool:
        """Lines are written as they are: whole blocks can bypass per-line work."""
        return self.spec.kind != "json" and self._date is None

    @property
    def by_block(self) -> bool:
        """Whole blocks of lines are formatted at once (:meth:`format_block`), never split into lines."""
        return self._json is not None

    def format(self, lines: list[bytes], stream: str, ts: float) -> bytes:
        """Render lines (without newlines) to bytes ready to append to a file."""
        if self._json is not None:
            return bytes(self._json.block(b"\n".join(lines) + b"\n", stream, self._stamp(ts))[0])
        if self._date is not None:
            prefix = (self._stamp(ts) + ": ").encode()
            return b"".join(prefix + line + b"\n" for line in lines)
        return b"\n".join(lines) + b"\n"

    def format_block(self, block: bytes, stream: str, ts: float) -> tuple[bytes | memoryview, int]:
        """Render a block of whole lines (each ending with a newline): (bytes to append, line count)."""
        if self._json is not None:
            return self._json.block(block, stream, self._stamp(ts))
        count = block.count(b"\n")
        if self._date is not None:
            return self.format(block[:-1].split(b"\n"), stream, ts), count
        return block, count


# JSON-escaped forms of the bytes JSON strings cannot hold raw (besides the newline,
# which separates records): what json.dumps writes for them
_CONTROL_BYTES = bytes(c for c in range(0x20) if c != 0x0A)
_CONTROL = re.compile(b"[" + re.escape(_CONTROL_BYTES) + b"]")
_CONTROL_ESCAPES = {bytes([c]): json.dumps(chr(c)).strip('"').encode() for c in range(0x20)}
# Stands for the newlines while a block is JSON-escaped in one piece: ASCII, left as it is
# by the encoder (JSON strings may hold DEL), and in no block that takes this path
_SEP = b"\x7f"


_heap_tuned = False


def _keep_buffers_on_heap() -> None:
    """Let glibc's malloc serve and keep the JSON path's buffers (~2x a read) from the heap.

    A block's records are about twice the size of the read they come from; by default such
    a buffer lands near malloc's mmap and trim thresholds, so under a flood many reads
    would cost fresh pages (a page fault per 4 KiB), which doubled the daemon's CPU.
    Fixed thresholds keep buffers up to 1 MiB on the heap and at most 4 MiB of free heap
    (done once, in a daemon that writes JSON logs; other C libraries are left alone)."""
    global _heap_tuned
    if _heap_tuned:
        return
    _heap_tuned = True
    import platform

    if platform.libc_ver()[0] != "glibc":
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 1 << 20)
    mallopt(m_trim_threshold, 4 << 20)


class JsonRecords:
    """One JSON record per line, made for a whole block of lines at a time.

    A record is ``{"timestamp":..,"app_name":..,"process_id":..,"type":..,"message":..}``.
    Everything but the message is the same for every line of a block (the lines of one
    read share its timestamp), so it is encoded once per block; the messages are escaped
    for the whole block in one pass, with the newlines, which separate the records, kept
    out of the escaping.  Invalid UTF-8 becomes U+FFFD, as with ``decode("utf-8", "replace")``.
    """

    __slots__ = ("_app", "_heads", "_encode")

    def __init__(self, app_name: str, process_id: int) -> None:
        _keep_buffers_on_heap()
        self._app = f'"app_name":{json.dumps(app_name, ensure_ascii=False)},"process_id":{int(process_id)},"type":'
        self._heads: dict[tuple[str, str], bytes] = {}
        self._encode = msgspec.json.Encoder().encode

    def _head(self, stream: str, stamp: str) -> bytes:
        key = (stream, stamp)
        head = self._heads.get(key)
        if head is None:
            if len(self._heads) > 8:
                self._heads.clear()
            head = f'{{"timestamp":{json.dumps(stamp, ensure_ascii=False)},{self._app}{json.dumps(stream)},"message":"'.encode()
            self._heads[key] = head
        return head

    def block(self, block: bytes, stream: str, stamp: str) -> tuple[bytes | memoryview, int]:
        """Records for ``block`` (whole lines, each ending with a newline), and how many."""
        if not block:
            return b"", 0
        head = self._head(stream, stamp)
        sep = b'"}\n' + head
        if _SEP not in block:
            # Every newline, and the start, becomes DEL; the encoder then escapes quotes,
            # backslashes and control characters in C, and each DEL of its output becomes
            # the end of one record and the start of the next.
            enc: bytes = self._encode((_SEP + block).replace(b"\n", _SEP).decode("utf-8", "replace"))
            size = len(enc)
            body = enc.replace(_SEP, sep)  # '"' + sep + l1 + sep + ... + ln + sep + '"'
            del enc
            count = (len(body) - size) // (len(sep) - 1) - 1
            # a view, not a copy: one more buffer of this size per read would cost page
            # faults (it lands above malloc's mmap threshold) under a flood
            return memoryview(body)[4 : len(body) - len(head) - 1], count
        # rare: the block holds DEL itself; escape in bytes
        if not block.isascii():
            try:
                block.decode("utf-8")
            except UnicodeDecodeError:
                block = block.decode("utf-8", "replace").encode("utf-8")
        esc = block.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        if len(esc.translate(None, _CONTROL_BYTES)) != len(esc):
            esc = _CONTROL.sub(lambda m: _CONTROL_ESCAPES[m.group()], esc)
        return b"".join((head, esc[:-1].replace(b"\n", sep), b'"}\n')), esc.count(b"\n")


# ---------------------------------------------------------------- files


class LogFile:
    """An append-only log file shared by every writer that names the same path.

    Rotation (by size, checked after each whole-line batch, or on a schedule)
    renames the file and reopens a fresh one, so a line is never split and an
    app is never held up for longer than a rename.  A write that fails (disk
    full, unwritable path) counts the lines it could not write, reports the
    failure once, and writing resumes by itself when it can.
    """

    def __init__(self, path: str, policy: RotatePolicy | None = None, events: LogEvents | None = None) -> None:
        self.path = path
        self.policy = policy
        self.events = events
        self.fd = -1
        self.refs = 0
        self.size = 0
        self.regular = False
        self.ident: tuple[int, int] | None = None
        self.errors = 0
        self.last_error: str | None = None
        self.failing = False
        self.lines_dropped = 0
        self.dropped_in_streak = 0
        self.rotations = 0
        self.next_rotation: float | None = None
        try:
            self.open()
        except OSError as e:
            self._fail(e, 0)

    def open(self) -> None:
        # through safefs: never follows a symlink someone could have planted, refuses hard
        # links; O_NONBLOCK: a FIFO with no reader must not freeze the daemon (ENXIO is a
        # write failure, retried later)
        self.fd, st = safefs.open_append(self.path)
        # a trusted symlink (e.g. /dev/stdout) is never rotated: rename would move the link itself
        self.regular = stat.S_ISREG(st.st_mode) and not safefs.is_symlink(self.path)
        self.size = st.st_size if self.regular else 0
        self.ident = (st.st_dev, st.st_ino)
        if self.policy is not None:
            remember_suffix(self.path, self.policy.date_suffix)

    def reopen(self) -> None:
        old = self.fd
        self.fd = -1
        try:
            self.open()
        finally:
            if old >= 0 and old != self.fd:
                os.close(old)

    def _fail(self, e: OSError, line_count: int) -> None:
        self.errors += 1
        self.lines_dropped += line_count
        self.dropped_in_streak += line_count
        self.last_error = f"{self.path}: {e.strerror or e}"
        if not self.failing:
            self.failing = True
            if self.events is not None:
                self.events.write_failed(self, self.last_error)

    def _recovered(self) -> None:
        self.failing = False
        if self.events is not None:
            self.events.write_recovered(self, self.dropped_in_streak)
        self.dropped_in_streak = 0

    def write(self, data: bytes | memoryview, line_count: int) -> None:
        """Append whole lines. With a size limit, rotate at a line boundary as soon as the
        file would pass it, so a rotated file exceeds the limit by at most one line."""
        if self.fd < 0:
            try:
                self.open()
            except OSError as e:
                self._fail(e, line_count)
                return
        limit = self.policy.max_size if self.policy is not None and self.regular else None
        if limit and data and self.size + len(data) > limit:
            self._write_cut(data if isinstance(data, bytes) else bytes(data), limit)
        elif data:
            self._write(data, line_count)
        if limit and self.size >= limit:
            self.rotate()

    def _write_cut(self, data: bytes, limit: int) -> None:
        """Write what passes the size limit, rotating at line boundaries on the way."""
        while data and self.size + len(data) > limit:
            room = limit - self.size
            cut = data.rfind(b"\n", 0, room) + 1 if room > 0 else 0
            if cut <= 0:
                if self.size > 0:
                    if self.rotate() is None:  # not even one more line fits: rotate first
                        break
                    continue
                cut = data.find(b"\n") + 1 or len(data)  # one line longer than the limit
            head, data = data[:cut], data[cut:]
            if not self._write(head, head.count(b"\n")):
                if data:
                    self._write(data, data.count(b"\n"))
                return
            if self.rotate() is None:
                break
        if data:
            self._write(data, data.count(b"\n"))

    def _write(self, data: bytes | memoryview, line_count: int) -> bool:
        view = memoryview(data)
        written = 0
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
                written += n
        except OSError as e:
            # keep whole lines only: a short write before the error is cut back to the
            # last newline, and every line that did not make it is counted
            data = data if isinstance(data, bytes) else bytes(data)
            keep = data.rfind(b"\n", 0, written) + 1 if written else 0
            if written > keep and self.regular:
                try:
                    os.ftruncate(self.fd, self.size + keep)
                except OSError:
                    keep = written
            elif written > keep:
                keep = written
            self.size += keep
            self._fail(e, data[keep:].count(b"\n") or (1 if written < len(data) else 0))
            return False
        self.size += written
        if self.failing:
            self._recovered()
        return True

    def rotate(self) -> str | None:
        """Rename the current file aside and start a fresh one; None when nothing to rotate."""
        if not self.regular or self.size == 0:
            return None
        suffix = self.policy.date_suffix if self.policy else DEFAULT_DATE_SUFFIX
        target = rotated_name(self.path, time.time(), suffix)
        try:
            # only the file we write to is renamed (lstat identity), never a name swapped in
            safefs.rename_if_same(self.path, target, self.ident)
            self.reopen()
        except OSError as e:
            self._fail(e, 0)
            return None
        self.rotations += 1
        if self.events is not None:
            self.events.rotated(self, target)
        return target

    def check_moved(self) -> bool:
        """Reopen when the file was deleted or moved from under us (external rotation)."""
        if self.fd < 0 or not self.regular:
            return False
        try:
            if safefs.identity(self.path) == self.ident:  # lstat: a symlink put in its place is "moved"
                return False
        except OSError:
            return False
        try:
            self.reopen()
        except OSError as e:
            self._fail(e, 0)
            return False
        return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class LogEvents:
    """What a LogFile reports to its owner (the daemon): failures, recovery, rotations."""

    def write_failed(self, f: LogFile, error: str) -> None:
        pass

    def write_recovered(self, f: LogFile, dropped: int) -> None:
        pass

    def rotated(self, f: LogFile, rotated_path: str) -> None:
        pass


class LogFiles:
    """Registry of open log files by path, reference counted (merge_logs shares them)."""

    def __init__(self, events: LogEvents | None = None) -> None:
        self._files: dict[str, LogFile] = {}
        self.events = events
        self._retired: dict[str, tuple[int, int]] = {}  # path -> (rotations, lines dropped) of closed files

    def acquire(self, path: str, policy: RotatePolicy | None = None) -> LogFile:
        f = self._files.get(path)
        if f is None:
            f = LogFile(path, policy, self.events)
            self._files[path] = f
        elif policy is not None:
            f.policy = policy
        f.refs += 1
        return f

    def release(self, f: LogFile) -> None:
        f.refs -= 1
        if f.refs <= 0:
            f.close()
            self._files.pop(f.path, None)
            rot, dropped = self._retired.get(f.path, (0, 0))
            self._retired[f.path] = (rot + f.rotations, dropped + f.lines_dropped)

    def counters(self, path: str) -> tuple[int, int]:
        """(rotations, lines that could not be written) of a path, over the daemon's life."""
        rot, dropped = self._retired.get(path, (0, 0))
        live = self._files.get(path)
        if live is not None:
            rot += live.rotations
            dropped += live.lines_dropped
        return rot, dropped

    def get(self, path: str) -> LogFile | None:
        return self._files.get(path)

    def reopen_all(self) -> int:
        n = 0
        for f in list(self._files.values()):
            try:
                f.reopen()
                n += 1
            except OSError as e:
                f.last_error = f"{f.path}: {e.strerror}"
        return n

    def all(self) -> list[LogFile]:
        return list(self._files.values())
