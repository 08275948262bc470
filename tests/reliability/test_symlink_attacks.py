"""Symlink attacks by an app running as another user, on a real root daemon.

The app runs as ``nobody``.  A log or pid folder that user can write is
refused when the app is registered; here the folder is root's at start and
handed to ``nobody`` afterwards (an operator's later mistake), so the daemon's
own file layer is what holds: the app swaps its log or pid file for a symlink
to a file only root may write, and the daemon must never write through it.
Skipped unless root.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Corral, ecosystem, wait_until, write

NOBODY = 65534
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the daemon is root and the app runs as nobody")
PRECIOUS = b"root:precious\n"


@pytest.fixture
def stage() -> Iterator[dict[str, Path]]:
    """A folder tree nobody can reach (pytest's tmp_path is 0700), a victim file only root writes."""
    top = Path(tempfile.mkdtemp(prefix="corral-attack-"))
    try:
        os.chmod(top, 0o755)
        logs = top / "logs"
        logs.mkdir(mode=0o755)  # root's at start: registration accepts it
        secret = top / "secret"
        secret.mkdir(mode=0o755)
        victim = secret / "victim"
        victim.write_bytes(PRECIOUS)
        os.chmod(victim, 0o644)
        yield {"top": top, "logs": logs, "victim": victim}
    finally:
        shutil.rmtree(top, ignore_errors=True)


def hand_over(folder: Path) -> None:
    """The operator's mistake after start: the app's user can now write the folder."""
    os.chown(folder, NOBODY, NOBODY)


def attacker(target: Path, victim: Path, then: str = "while true; do echo pwned; sleep 0.05; done") -> dict[str, object]:
    # waits until it can write the folder, then swaps the file for a symlink
    script = f"echo before; while ! [ -w {target.parent} ]; do sleep 0.05; done; rm -f {target}; ln -s {victim} {target}; {then}"
    return {"script": "/bin/sh", "args": ["-c", script], "interpreter": "none", "uid": "nobody", "autorestart": False}


def test_live_log_swapped_for_a_symlink_is_not_followed(corral: Corral, stage: dict[str, Path]) -> None:
    out = stage["logs"] / "evil-out.log"
    app = {"name": "evil", **attacker(out, stage["victim"]), "out_file": str(out), "error_file": str(stage["logs"] / "evil-err.log")}
    write(corral.cwd / "ecosystem.toml", ecosystem(app))
    corral.run("start", "ecosystem.toml")
    hand_over(stage["logs"])
    # the daemon notices the move within a second, refuses the symlink and counts lost lines
    wait_until(lambda: "symlink" in (corral.home / "corral.log").read_text(), timeout=15, message="the refused symlink is reported")
    wait_until(lambda: corral.run("describe", "evil", "--json", check=False).returncode == 0, timeout=5)
    assert stage["victim"].read_bytes() == PRECIOUS
    assert out.is_symlink()
    assert corral.proc("evil")["status"] == "online"  # the app keeps running


def test_flush_does_not_truncate_through_a_symlink(corral: Corral, stage: dict[str, Path]) -> None:
    out = stage["logs"] / "evil-out.log"
    app = {"name": "evil", **attacker(out, stage["victim"], then="sleep 600"), "out_file": str(out), "error_file": str(stage["logs"] / "evil-err.log")}
    write(corral.cwd / "ecosystem.toml", ecosystem(app))
    corral.run("start", "ecosystem.toml")
    hand_over(stage["logs"])
    wait_until(lambda: out.is_symlink(), timeout=10)
    corral.run("flush", "evil", check=False)
    assert stage["victim"].read_bytes() == PRECIOUS


def test_pid_file_planted_as_a_symlink_is_replaced_not_followed(corral: Corral, stage: dict[str, Path]) -> None:
    pid_file = stage["logs"] / "evil.pid"
    app = {"name": "evil", "script": "/bin/sh", "args": ["-c", "sleep 600"], "interpreter": "none", "uid": "nobody", "pid_file": str(pid_file), "autorestart": False}
    write(corral.cwd / "ecosystem.toml", ecosystem(app))
    corral.run("start", "ecosystem.toml")
    hand_over(stage["logs"])
    # the app's user plants a symlink; the next start writes the pid file again
    pid_file.unlink()
    pid_file.symlink_to(stage["victim"])
    os.lchown(pid_file, NOBODY, NOBODY)
    corral.run("restart", "evil")
    pid = wait_until(lambda: (p := corral.proc("evil"))["status"] == "online" and p["pid"], timeout=10)
    wait_until(lambda: pid_file.exists() and not pid_file.is_symlink() or stage["victim"].read_bytes() != PRECIOUS, timeout=10)
    assert stage["victim"].read_bytes() == PRECIOUS
    assert pid_file.read_text() == f"{pid}\n"


def test_a_log_folder_the_apps_user_can_write_is_refused_at_start(corral: Corral, stage: dict[str, Path]) -> None:
    hand_over(stage["logs"])
    app = {"name": "evil", "script": "/bin/sh", "args": ["-c", "sleep 600"], "interpreter": "none", "uid": "nobody", "out_file": str(stage["logs"] / "evil-out.log")}
    write(corral.cwd / "ecosystem.toml", ecosystem(app))
    proc = corral.run("start", "ecosystem.toml", check=False)
    assert proc.returncode == 2, proc.stderr
    assert "app 'evil': key 'out_file'" in proc.stderr and "uid 65534" in proc.stderr and "Traceback" not in proc.stderr
    assert corral.jlist() == []
