"""Line framing and formatting: whole lines, per-line stamps and JSON records."""

from __future__ import annotations

import json
import time

import pytest

from corral.logs.sink import MAX_LINE, LineFormat, LineFormatter, LineFramer, compile_date_format


@pytest.mark.parametrize(
    ("chunks", "lines", "rest"),
    [
        ([b"a\nb\n"], [b"a", b"b"], []),
        ([b"hel", b"lo\nwor", b"ld\n"], [b"hello", b"world"], []),
        ([b"no newline"], [], [b"no newline"]),
        ([b"\n\n"], [b"", b""], []),
        ([b"a\r\nb"], [b"a\r"], [b"b"]),
        ([b"x" * 10, b"", b"y\n"], [b"x" * 10 + b"y"], []),
    ],
)
def test_framer(chunks: list[bytes], lines: list[bytes], rest: list[bytes]) -> None:
    f = LineFramer()
    got: list[bytes] = []
    for c in chunks:
        got.extend(f.feed(c))
    assert got == lines
    assert f.flush() == rest
    assert f.flush() == []


def test_framer_cuts_giant_lines() -> None:
    f = LineFramer()
    out = f.feed(b"z" * (MAX_LINE + 5))
    assert out == [b"z" * (MAX_LINE + 5)]
    assert f.flush() == []


def test_text_format_without_and_with_dates() -> None:
    plain = LineFormatter(LineFormat("text", "web", 0))
    assert plain.format([b"a", b"b"], "out", 0.0) == b"a\nb\n"
    dated = LineFormatter(LineFormat("text", "web", 0, "YYYY-MM-DD HH:mm:ss.SSS"))
    ts = time.mktime((2026, 1, 2, 3, 4, 5, 0, 0, -1)) + 0.25
    assert dated.format([b"x", b"y"], "out", ts) == b"2026-01-02 03:04:05.250: x\n2026-01-02 03:04:05.250: y\n"


def test_json_format_has_pm2_keys_per_line() -> None:
    fmt = LineFormatter(LineFormat("json", "api", 4))
    data = fmt.format([b"hello", 'caf\u00e9 "q"'.encode(), b"\xff bad"], "err", 1_700_000_000.5)
    records = [json.loads(line) for line in data.decode().splitlines()]
    assert [r["message"] for r in records] == ["hello", 'caf\u00e9 "q"', "\ufffd bad"]
    assert all(r["app_name"] == "api" and r["process_id"] == 4 and r["type"] == "err" for r in records)
    assert records[0]["timestamp"].startswith(time.strftime("%Y-%m-%dT", time.localtime(1_700_000_000.5)))


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("YYYY-MM-DD", "2026-03-04"),
        ("HH:mm:ss", "05:06:07"),
        ("YY/MM", "26/03"),
        ("[at] HH", "at 05"),
        ("X", None),
    ],
)
def test_moment_tokens(fmt: str, expected: str | None) -> None:
    ts = time.mktime((2026, 3, 4, 5, 6, 7, 0, 0, -1))
    got = compile_date_format(fmt)(ts)
    assert got == (expected if expected is not None else str(int(ts)))


def test_moment_timezone_token() -> None:
    got = compile_date_format("Z")(0.0)
    assert len(got) == 6 and got[0] in "+-" and got[3] == ":"
