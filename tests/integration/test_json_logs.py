"""JSON logs on a real app under a flood: every line one valid record, all of them, in order."""

from __future__ import annotations

import json

from tests.conftest import Corral, wait_until, write

# Lines of every kind, fast: quotes, backslashes, control characters, DEL, non-ASCII,
# invalid UTF-8, long lines; each starts with its number.
FLOOD = r"""
import os, sys
n = int(sys.argv[1])
kinds = [
    b"plain",
    b'say "hi" \\ C:\\dir',
    b"tab\tcr\rnul\x00esc\x1b[1m",
    b"del\x7f",
    "caf\u00e9 \u20ac \U0001F40E".encode(),
    b"bad \xff\xfe utf-8 \xc3",
    b"long " + b"y" * 5000,
]
out = []
for i in range(n):
    out.append(b"%07d " % i + kinds[i % len(kinds)] + b"\n")
    if len(out) == 500:
        os.write(1, b"".join(out)); out = []
os.write(1, b"".join(out))
sys.stderr.write("done\n")
"""

KINDS = [
    "plain",
    'say "hi" \\ C:\\dir',
    "tab\tcr\rnul\x00esc\x1b[1m",
    "del\x7f",
    "caf\u00e9 \u20ac \U0001f40e",
    "bad \ufffd\ufffd utf-8 \ufffd",
    "long " + "y" * 5000,
]


def test_json_flood_every_line_one_record_in_order(corral: Corral) -> None:
    n = 200_000
    write(corral.cwd / "flood.py", FLOOD)
    corral.run("start", "flood.py", "--log-type", "json", "--no-autorestart", "--", str(n))
    wait_until(lambda: corral.proc("flood")["status"] == "stopped", timeout=120)
    out = corral.home / "logs" / "flood-out.log"
    wait_until(lambda: out.read_bytes().count(b"\n") >= n, timeout=30)
    rows = out.read_bytes().split(b"\n")
    assert rows.pop() == b""
    assert len(rows) == n
    for i, row in enumerate(rows):
        rec = json.loads(row)  # each row valid JSON on its own, valid UTF-8
        assert rec["message"] == f"{i:07d} {KINDS[i % len(KINDS)]}", i
        assert rec["type"] == "out" and rec["app_name"] == "flood" and rec["process_id"] == 0
    err = [json.loads(line) for line in (corral.home / "logs" / "flood-error.log").read_text().splitlines()]
    assert [r["message"] for r in err] == ["done"]
