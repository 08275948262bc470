"""JSON log records made a block at a time: one valid record per line, whatever the line holds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.logs.rotate import RotatePolicy
from corral.logs.sink import MAX_LINE, LineFormat, LineFormatter, LineFramer, LogFile

TS = 1_700_000_000.25

TRICKY = [
    b"",
    b"plain words",
    b'say "hi"',
    b"C:\\path\\to\\file",
    b"a backslash at the end \\",
    b'\\"',
    b"\\n is not a newline here",
    b"tab\there\rcarriage\x00nul\x1b[31mred\x1b[0m\x0bvt\x0cff\x08bs\x1f",
    b"\x7f DEL in the middle \x7f",
    b"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x8e",
    b"\xff\xfe invalid utf-8 \xc3",
    b"truncated multibyte at the end \xe2\x82",
    b"\xed\xa0\x80 an encoded surrogate",
    "\u2028 line separator \u2029".encode(),
    b'{"already":"json","n":1}',
    b"x" * 200_000,
    b'"' * 1000 + b"\\" * 1000,
]


def records(data: bytes | memoryview) -> list[dict[str, object]]:
    text = bytes(data).decode("utf-8")  # the file is valid UTF-8 as a whole
    assert text.endswith("\n")
    return [json.loads(line) for line in text[:-1].split("\n")]


def expected_message(line: bytes) -> str:
    return line.decode("utf-8", "replace")


@pytest.mark.parametrize("line", TRICKY, ids=range(len(TRICKY)))
def test_each_tricky_line_is_one_valid_record(line: bytes) -> None:
    fmt = LineFormatter(LineFormat("json", 'we"b\\app', 3))
    for data, count in (
        (fmt.format([line], "out", TS), 1),
        fmt.format_block(line + b"\n", "err", TS),
    ):
        recs = records(data)
        assert count == 1 and len(recs) == 1
        rec = recs[0]
        assert list(rec) == ["timestamp", "app_name", "process_id", "type", "message"]
        assert rec["message"] == expected_message(line)
        assert rec["app_name"] == 'we"b\\app' and rec["process_id"] == 3


def test_a_block_of_all_tricky_lines_keeps_order_and_count() -> None:
    fmt = LineFormatter(LineFormat("json", "api", 0))
    block = b"".join(line + b"\n" for line in TRICKY)
    data, count = fmt.format_block(block, "out", TS)
    recs = records(data)
    assert count == len(TRICKY) == len(recs)
    assert [r["message"] for r in recs] == [expected_message(line) for line in TRICKY]
    assert {r["timestamp"] for r in recs} == {recs[0]["timestamp"]}  # one read, one stamp
    # the same lines through the per-line entry point give the same bytes
    assert bytes(data) == fmt.format(list(TRICKY), "out", TS)


def test_blocks_with_and_without_del_agree() -> None:
    # DEL stands for the newlines on the fast path; a block holding DEL takes the byte path
    fmt = LineFormatter(LineFormat("json", "api", 0))
    lines = [b'q"uote', b"back\\slash", b"ctl\x01\t", b"\xff"]
    fast, n1 = fmt.format_block(b"".join(x + b"\n" for x in lines), "out", TS)
    slow, n2 = fmt.format_block(b"".join(x + b"\n" for x in [*lines, b"\x7f"]), "out", TS)
    assert n1 == 4 and n2 == 5
    assert bytes(slow).startswith(bytes(fast))
    assert [r["message"] for r in records(slow)] == [expected_message(x) for x in [*lines, b"\x7f"]]


def test_records_match_json_dumps_of_the_message() -> None:
    fmt = LineFormatter(LineFormat("json", "api", 0))
    data, _ = fmt.format_block(b"".join(line + b"\n" for line in TRICKY[:-2]), "out", TS)
    for raw, line in zip(bytes(data).split(b"\n"), TRICKY[:-2], strict=False):
        msg = json.dumps(expected_message(line), ensure_ascii=False).encode()
        assert raw.endswith(b'"message":' + msg + b"}")


def test_empty_block_and_stream_name() -> None:
    fmt = LineFormatter(LineFormat("json", "api", 0))
    assert fmt.format_block(b"", "out", TS) == (b"", 0)
    assert [r["type"] for r in records(fmt.format_block(b"a\nb\n", "err", TS)[0])] == ["err", "err"]


def test_text_formats_by_block_too() -> None:
    plain = LineFormatter(LineFormat("text", "web", 0))
    assert not plain.by_block and plain.format_block(b"a\nb\n", "out", TS) == (b"a\nb\n", 2)
    dated = LineFormatter(LineFormat("text", "web", 0, "YYYY"))
    data, count = dated.format_block(b"a\nb\n", "out", TS)
    assert count == 2 and data == dated.format([b"a", b"b"], "out", TS)
    assert LineFormatter(LineFormat("json", "web", 0)).by_block


lines_strategy = st.lists(st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"")), max_size=40)


@settings(max_examples=300, deadline=None)
@given(lines=lines_strategy, cut=st.integers(min_value=1, max_value=97))
def test_any_bytes_through_framer_and_blocks_give_one_record_per_line(lines: list[bytes], cut: int) -> None:
    """Arbitrary bytes (any control character, DEL, quotes, invalid UTF-8), read in arbitrary
    pieces: every line comes back as exactly one record with its message, in order."""
    stream = b"".join(line + b"\n" for line in lines)
    framer = LineFramer()
    fmt = LineFormatter(LineFormat("json", "p", 1))
    out = b""
    total = 0
    for i in range(0, len(stream), cut):
        block = framer.feed_block(stream[i : i + cut])
        data, count = fmt.format_block(block, "out", TS)
        out += bytes(data)
        total += count
    assert framer.flush() == []
    assert total == len(lines)
    got = records(out) if lines else []
    assert [r["message"] for r in got] == [expected_message(line) for line in lines]


def test_giant_line_is_cut_into_valid_records() -> None:
    framer = LineFramer()
    fmt = LineFormatter(LineFormat("json", "p", 0))
    line = b'"\\' * (MAX_LINE // 2 + 10)
    block = framer.feed_block(line)  # no newline yet: cut at MAX_LINE
    data, count = fmt.format_block(block, "out", TS)
    assert count == 1 and records(data)[0]["message"] == line.decode()


def test_log_file_writes_views_and_cuts_them_at_line_boundaries(tmp_path: Path) -> None:
    fmt = LineFormatter(LineFormat("json", "p", 0))
    data, count = fmt.format_block(b"".join(b"%04d\n" % i for i in range(100)), "out", TS)
    assert isinstance(data, memoryview)
    plain = LogFile(str(tmp_path / "plain.log"))
    plain.write(data, count)
    plain.close()
    assert [r["message"] for r in records((tmp_path / "plain.log").read_bytes())] == [f"{i:04d}" for i in range(100)]
    # with a size limit, the view is cut at record boundaries: every file holds whole records
    per_record = len(bytes(data)) // 100
    rotating = LogFile(str(tmp_path / "rot.log"), RotatePolicy(max_size=per_record * 30 + 5))
    rotating.write(data, count)
    rotating.close()
    messages = []
    files = sorted(tmp_path.glob("rot*.log"), key=lambda p: (p.name == "rot.log", p.stat().st_mtime_ns, p.name))
    for f in files:
        messages += [r["message"] for r in records(f.read_bytes())] if f.stat().st_size else []
    assert len(files) >= 3
    assert sorted(messages) == [f"{i:04d}" for i in range(100)]


def test_failed_write_of_a_view_counts_lost_lines(tmp_path: Path) -> None:
    fmt = LineFormatter(LineFormat("json", "p", 0))
    data, count = fmt.format_block(b"a\nb\nc\n", "out", TS)
    f = LogFile(str(tmp_path / "x.log"))
    os.close(f.fd)
    f.fd = os.open(os.devnull, os.O_RDONLY)  # writes fail with EBADF
    f.write(data, count)
    assert f.lines_dropped == 3 and f.failing
    f.close()
