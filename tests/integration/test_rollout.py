"""Rolling replacement on real processes (daemon/rollout.py)."""

from __future__ import annotations

from tests.conftest import Corral, write

SLEEPER = "import time\nwhile True:\n    time.sleep(0.5)\n"


def test_reload_of_an_app_that_restarted_before(corral: Corral) -> None:
    """A fork-mode reload restarts in place and waits for each instance to be ready; an
    earlier restart does not count as a failure (it did: "failed to start (restart requested)")."""
    write(corral.cwd / "s.py", SLEEPER)
    corral.run("start", "s.py", "-i", "2")
    corral.run("restart", "s")
    before = {p["instance"]: p for p in corral.jlist()}
    out = corral.run("reload", "s", check=False)
    assert out.returncode == 0, out.stderr
    after = {p["instance"]: p for p in corral.jlist()}
    for index in (0, 1):
        assert after[index]["status"] == "online"
        assert after[index]["pid"] != before[index]["pid"]
        assert after[index]["restarts"] == before[index]["restarts"] + 1
        assert after[index]["ready"] is True


def test_reload_reports_an_instance_that_crashes(corral: Corral) -> None:
    flag = corral.cwd / "crash"
    write(corral.cwd / "s.py", f"import os, sys, time\nif os.path.exists({str(flag)!r}):\n    sys.exit(3)\nwhile True:\n    time.sleep(0.5)\n")
    corral.run("start", "s.py")
    flag.write_text("")
    out = corral.run("reload", "s", check=False)
    assert out.returncode != 0
    assert "instance 0" in out.stderr and "Traceback" not in out.stderr
