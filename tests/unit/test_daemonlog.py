"""The daemon's own log rotates like an app's: size limit, retention, fds 1 and 2 follow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from corral.logs.daemonlog import DaemonLog
from corral.logs.rotate import rotated_files

SCRIPT = """
import os, sys
from corral.logs.daemonlog import install
log = install(sys.argv[1], max_size=1000, retain=2)
for i in range(200):
    print(f"[daemon] line {i:04d} " + "x" * 30)
os.write(2, b"written below python\\n")
raise SystemExit(0)
"""


def test_daemon_log_rotates_keeps_retain_files_and_fds_follow(tmp_path: Path) -> None:
    path = tmp_path / "corral.log"
    with open(path, "ab") as out:
        proc = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], stdout=out, stderr=out, timeout=60)
    assert proc.returncode == 0
    rotated = rotated_files(str(path))
    assert len(rotated) == 2  # retention
    assert all(Path(p).stat().st_size <= 1000 for p in rotated)
    current = path.read_text()
    assert "written below python" in current  # fd 2 was moved onto the fresh file
    everything = "".join(Path(p).read_text() for p in rotated) + current
    assert "line 0199" in everything and everything.index("line 0198") < everything.index("line 0199")
    assert path.stat().st_size <= 1000 + 100


def test_daemon_log_writes_whole_lines_only(tmp_path: Path) -> None:
    log = DaemonLog(str(tmp_path / "d.log"))
    try:
        log.write("half ")
        assert (tmp_path / "d.log").read_text() == ""
        log.write("line\nnext")
        assert (tmp_path / "d.log").read_text() == "half line\n"
    finally:
        log.close()
    assert (tmp_path / "d.log").read_text() == "half line\nnext\n"
