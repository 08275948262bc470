"""Reading log history: line times, the current file plus rotated and gzipped ones, filters, interleaving."""

from __future__ import annotations

import gzip
import json
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from corral.logs.read import LogLine, history, interleave, parse_time
from corral.logs.sink import LineFormat, LineFormatter

T0 = datetime(2026, 11, 28, 10, 30, 0, tzinfo=UTC).timestamp()


# ---------------------------------------------------------------- parse_time


def test_parse_time_json_records() -> None:
    rec = {"timestamp": "2026-11-28T11:30:00.250+01:00", "app_name": "a", "process_id": 0, "type": "out", "message": "hello"}
    assert parse_time(json.dumps(rec).encode(), 1.0) == (T0 + 0.25, "hello")
    rec["timestamp"] = "2026-11-28T10:30:00Z"
    assert parse_time(json.dumps(rec).encode(), 1.0) == (T0, "hello")
    rec["timestamp"] = T0 + 1  # Unix seconds
    assert parse_time(json.dumps(rec).encode(), 1.0) == (T0 + 1, "hello")
    rec["timestamp"] = int((T0 + 2) * 1000)  # Unix milliseconds
    assert parse_time(json.dumps(rec).encode(), 1.0) == (T0 + 2, "hello")
    # no timestamp: the fallback (the file's mtime), still the message only
    assert parse_time(b'{"message": "bare"}', 7.0) == (7.0, "bare")


def test_parse_time_json_like_lines_that_are_not_records() -> None:
    assert parse_time(b"{not json", 3.0) == (3.0, "{not json")
    assert parse_time(b'{"timestamp": "yesterday", "message": "m"}', 3.0) == (3.0, '{"timestamp": "yesterday", "message": "m"}')


def test_parse_time_iso_prefixes() -> None:
    assert parse_time(b"2026-11-28T11:30:00.500+01:00: started", 1.0) == (T0 + 0.5, "2026-11-28T11:30:00.500+01:00: started")
    assert parse_time(b"2026-11-28T10:30:00Z: z", 1.0)[0] == T0
    assert parse_time(b"2026-11-28T12:30:00+0200: compact offset", 1.0)[0] == T0
    # no offset: local time
    local = time.mktime((2026, 11, 28, 10, 30, 0, 0, 0, -1))
    assert parse_time(b"2026-11-28 10:30:00: spaced", 1.0) == (local, "2026-11-28 10:30:00: spaced")


def test_parse_time_plain_lines_take_the_fallback() -> None:
    assert parse_time(b"just text", 42.0) == (42.0, "just text")
    assert parse_time(b"2026-11-28 but not a prefix", 42.0) == (42.0, "2026-11-28 but not a prefix")
    assert parse_time(b"", 42.0) == (42.0, "")
    assert parse_time("caf\u00e9 ".encode() + b"\xff", 1.0)[1] == "caf\u00e9 \ufffd"


@pytest.mark.parametrize("spec", [LineFormat("json", "a", 3), LineFormat("text", "a", 3, "YYYY-MM-DDTHH:mm:ss.SSSZ")])
def test_parse_time_reads_back_what_the_formatter_wrote(spec: LineFormat) -> None:
    ts = T0 + 0.123
    line = LineFormatter(spec).format([b"msg"], "out", ts).rstrip(b"\n")
    got, message = parse_time(line, 0.0)
    assert got == pytest.approx(ts, abs=1e-6)
    assert message.endswith("msg")


# ---------------------------------------------------------------- history


def numbered(start: int, stop: int) -> bytes:
    return b"".join(f"line {i}\n".encode() for i in range(start, stop))


def make_logs(tmp_path: Path) -> Path:
    """A log rotated twice: a .gz (0-9), a plain rotated file (10-19) and the current file (20-29)."""
    base = time.time() - 100
    old = tmp_path / "app-out__2026-11-28_10-30-00.log.gz"
    with gzip.open(old, "wb") as f:
        f.write(numbered(0, 10))
    mid = tmp_path / "app-out__2026-11-28_10-30-01.log"
    mid.write_bytes(numbered(10, 20))
    cur = tmp_path / "app-out.log"
    cur.write_bytes(numbered(20, 30))
    for i, p in enumerate((old, mid, cur)):
        os.utime(p, (base + i, base + i))
    # another log's rotated file next to it is never read
    (tmp_path / "app-out-0__2026-11-28_10-30-00.log").write_bytes(b"other\n")
    return cur


def msgs(lines: list[LogLine]) -> list[str]:
    return [ln.message for ln in lines]


def test_history_reaches_into_rotated_and_gzipped_files(tmp_path: Path) -> None:
    cur = str(make_logs(tmp_path))
    kw = {"name": "app", "id": 0, "type": "out"}
    assert msgs(history(cur, lines=5, **kw)) == [f"line {i}" for i in range(25, 30)]
    assert msgs(history(cur, lines=10, **kw)) == [f"line {i}" for i in range(20, 30)]
    assert msgs(history(cur, lines=15, **kw)) == [f"line {i}" for i in range(15, 30)]
    assert msgs(history(cur, lines=25, **kw)) == [f"line {i}" for i in range(5, 30)]
    assert msgs(history(cur, lines=1000, **kw)) == [f"line {i}" for i in range(30)]
    assert history(cur, lines=0, **kw) == []
    got = history(cur, lines=30, **kw)
    assert [ln.order for ln in got] == list(range(30))
    assert {(ln.name, ln.id, ln.type) for ln in got} == {("app", 0, "out")}
    # plain lines take their file's mtime: older files first
    assert [ln.time for ln in got] == sorted(ln.time for ln in got)


def test_history_when_the_current_file_is_missing_or_empty(tmp_path: Path) -> None:
    cur = make_logs(tmp_path)
    cur.write_bytes(b"")
    assert msgs(history(str(cur), lines=3, name="app", id=0, type="out")) == ["line 17", "line 18", "line 19"]
    cur.unlink()
    assert msgs(history(str(cur), lines=3, name="app", id=0, type="out")) == ["line 17", "line 18", "line 19"]
    assert history(str(tmp_path / "nothing.log"), lines=3, name="x", id=1, type="err") == []


def test_history_tail_of_a_big_file_reads_whole_lines(tmp_path: Path) -> None:
    cur = tmp_path / "big-out.log"
    cur.write_bytes(b"".join(f"{i:06d} {'q' * 93}\n".encode() for i in range(5000)) + b"partial")  # 500K
    got = msgs(history(str(cur), lines=2000, name="big", id=0, type="out"))
    assert got == [f"{i:06d} {'q' * 93}" for i in range(3001, 5000)] + ["partial"]


def rec(i: int, message: str | None = None) -> bytes:
    stamp = datetime.fromtimestamp(T0 + i, UTC).isoformat()
    return (json.dumps({"timestamp": stamp, "app_name": "j", "process_id": 0, "type": "out", "message": message or f"m{i}"}) + "\n").encode()


def json_log(tmp_path: Path) -> Path:
    """JSON records one second apart: 0-9 in a .gz, 10-19 in a plain rotated file, 20-29 current;
    each file's mtime is its last record's time."""
    old = tmp_path / "j-out__2026-11-28_10-30-00.log.gz"
    with gzip.open(old, "wb") as f:
        f.write(b"".join(rec(i) for i in range(10)))
    mid = tmp_path / "j-out__2026-11-28_10-30-10.log"
    mid.write_bytes(b"".join(rec(i) for i in range(10, 20)))
    cur = tmp_path / "j-out.log"
    cur.write_bytes(b"".join(rec(i) for i in range(20, 30)))
    for last, p in ((9, old), (19, mid), (29, cur)):
        os.utime(p, (T0 + last, T0 + last))
    return cur


def test_history_json_times_come_from_the_records(tmp_path: Path) -> None:
    got = history(str(json_log(tmp_path)), lines=30, name="j", id=0, type="out")
    assert msgs(got) == [f"m{i}" for i in range(30)]
    assert [ln.time for ln in got] == [T0 + i for i in range(30)]




@pytest.mark.parametrize(
    "filters,expected",
    [
        pytest.param({"since": T0 + 15}, [f"m{i}" for i in range(15, 30)], id="since"),
        pytest.param({"until": T0 + 4.5}, [f"m{i}" for i in range(5)], id="until-only-in-gz"),
        pytest.param({"until": T0 + 24}, [f"m{i}" for i in range(25)], id="until"),
        pytest.param({"since": T0 + 12, "until": T0 + 22}, [f"m{i}" for i in range(12, 23)], id="since-until"),
        pytest.param({"grep": re.compile(r"^m\d?5$")}, ["m5", "m15", "m25"], id="grep"),
        pytest.param({"grep": re.compile(r"^m[0-4]$")}, [f"m{i}" for i in range(5)], id="grep-only-in-gz"),
    ],
)
def test_history_filters(tmp_path: Path, filters: dict[str, object], expected: list[str]) -> None:
    got = history(str(json_log(tmp_path)), lines=100, name="j", id=0, type="out", **filters)  # type: ignore[arg-type]
    assert msgs(got) == expected


def test_history_grep_with_lines_takes_the_last_matches(tmp_path: Path) -> None:
    cur = str(make_logs(tmp_path))
    got = history(cur, lines=2, name="app", id=0, type="out", grep=re.compile(r"line \d*[05]$"))
    assert msgs(got) == ["line 20", "line 25"]


def test_history_since_does_not_open_rotated_files_that_ended_before_since(tmp_path: Path) -> None:
    cur = json_log(tmp_path)
    old = next(tmp_path.glob("*.gz"))
    with gzip.open(old, "wb") as f:  # a record that would pass the filter, in a file that ended before it
        f.write(rec(20, "sneaky"))
    os.utime(old, (T0 + 9, T0 + 9))
    got = history(str(cur), lines=100, name="j", id=0, type="out", since=T0 + 15)
    assert "sneaky" not in msgs(got)
    # when --since reaches back into that file's time, it is read
    got = history(str(cur), lines=100, name="j", id=0, type="out", since=T0 + 5, until=T0 + 25)
    assert "sneaky" in msgs(got)


# ---------------------------------------------------------------- interleave


def L(t: float, name: str, i: int) -> LogLine:
    return LogLine(t, i, name, 0, "out", f"{name}{i}")


def test_interleave_orders_by_time() -> None:
    a = [L(1.0, "a", 0), L(3.0, "a", 1), L(5.0, "a", 2)]
    b = [L(2.0, "b", 0), L(4.0, "b", 1), L(6.0, "b", 2)]
    assert msgs(interleave([a, b])) == ["a0", "b0", "a1", "b1", "a2", "b2"]


def test_interleave_is_stable_for_equal_times() -> None:
    # plain lines of one file share its mtime: they keep their order, and earlier groups come first
    a = [L(5.0, "a", i) for i in range(3)]
    b = [L(5.0, "b", i) for i in range(2)]
    c = [L(1.0, "c", 0), L(9.0, "c", 1)]
    assert msgs(interleave([a, b, c])) == ["c0", "a0", "a1", "a2", "b0", "b1", "c1"]
    assert interleave([]) == [] and interleave([[], []]) == []


def test_a_snapshot_reads_the_log_as_it_was_when_taken(tmp_path: Path) -> None:
    """A follower's history comes from a snapshot taken when it registers: lines written
    (or a rotation) after it are not in the history, so the follower gets them once, live."""
    from corral.logs import read as logread

    log = tmp_path / "app-out.log"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(10)))
    snap = logread.snapshot(str(log))
    try:
        with log.open("ab") as f:
            f.write(b"after the snapshot\n")
        log.rename(tmp_path / "app-out__2026-12-06_00-00-00.log")  # rotated away, a new live file
        log.write_bytes(b"in the new live file\n")
        got = logread.history(str(log), lines=100, name="app", id=0, type="out", snap=snap)
    finally:
        snap.close()
    assert [ln.message for ln in got] == [f"line {i}" for i in range(10)]
    assert snap.fd is None


def test_a_snapshot_of_a_missing_log_is_empty(tmp_path: Path) -> None:
    from corral.logs import read as logread

    snap = logread.snapshot(str(tmp_path / "none.log"))
    assert logread.history(snap.path, lines=5, name="a", id=0, type="out", snap=snap) == []
    snap.close()
