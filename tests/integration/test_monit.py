"""`corral monit` driven for real: in a detached tmux session, with keys sent by tmux.

Every wait polls the pane (or `corral jlist`) with a deadline; nothing is asserted after a
fixed sleep. Each test runs its own tmux server (`-L <unique socket>`, no user config) and
kills it at the end.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Corral, wait_until, write

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

SLEEPER = """
import itertools, sys, time
name = sys.argv[1]
for i in itertools.count():
    print(f"{name} tick {i}", flush=True)
    time.sleep(0.2)
"""

DEADLINE = 20.0


class Tmux:
    """One isolated tmux server running one session."""

    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"corral-monit-{uuid.uuid4().hex[:12]}"
        self.session = "monit"
        self.env = {k: v for k, v in env.items() if k not in ("TMUX", "TMUX_PANE")}
        self.env["SHELL"] = "/bin/sh"  # tmux runs the command with the server's default shell
        self.socket_path = ""

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=15,
            check=check,
        )

    def start(self, command: str, width: int, height: int) -> None:
        self.run("new-session", "-d", "-s", self.session, "-x", str(width), "-y", str(height), command)
        self.socket_path = self.run("display-message", "-p", "-t", self.session, "#{socket_path}").stdout.strip()

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.session, check=False).stdout

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", self.session, *keys)

    def alive(self) -> bool:
        return self.run("has-session", "-t", self.session, check=False).returncode == 0

    def pane_pid(self) -> int:
        return int(self.run("list-panes", "-t", self.session, "-F", "#{pane_pid}").stdout.split()[0])

    def wait_screen(self, predicate: object, message: str, timeout: float = DEADLINE) -> str:
        def check() -> str | None:
            text = self.screen()
            return text if predicate(text) else None  # type: ignore[operator]

        try:
            return wait_until(check, timeout=timeout, interval=0.05, message=message)
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- screen ---\n{self.screen()}") from None

    def kill(self) -> None:
        self.run("kill-server", check=False)
        if self.socket_path:  # tmux leaves its socket file behind
            Path(self.socket_path).unlink(missing_ok=True)


@pytest.fixture
def tmux(corral: Corral) -> Iterator[Tmux]:
    t = Tmux(corral.env)
    try:
        yield t
    finally:
        t.kill()


def start_sleepers(corral: Corral, *names: str) -> None:
    write(corral.cwd / "sleeper.py", SLEEPER)
    for name in names:
        corral.run("start", "sleeper.py", "--name", name, "--", name)
    wait_until(lambda: sorted(p["name"] for p in corral.jlist() if p["status"] == "online") == sorted(names), timeout=DEADLINE, message="apps online")


def monit_command(corral: Corral, tmp_path: Path) -> str:
    """monit between two snapshots of the terminal modes (`stty -g`, without the size); then
    the pane waits for Enter (so its last screen can be read) and ends."""
    monit = f"env CORRAL_HOME={shlex.quote(str(corral.home))} {shlex.quote(sys.executable)} -m corral monit --interval 0.5"
    before, after = shlex.quote(str(tmp_path / "stty-before")), shlex.quote(str(tmp_path / "stty-after"))
    readable = shlex.quote(str(tmp_path / "stty-readable"))
    # `trap : INT`: the shell survives the Ctrl-C meant for monit (its child gets the default)
    return f"trap : INT; cd {shlex.quote(str(corral.cwd))} && stty -g > {before}; {monit}; echo \"monit exited $?\"; stty -a > {readable}; stty -g > {after}; read _"


def selected_row(screen: str) -> str:
    return next((line for line in screen.splitlines() if line.startswith("▶")), "")


def table_rows(screen: str, name: str) -> list[str]:
    # a row: marker, id, then the name (alone or with its instance number)
    out = []
    for line in screen.splitlines():
        parts = line[2:].split()
        if len(parts) >= 2 and parts[0].isdigit() and parts[1] == name:
            out.append(line)
    return out


def cell(screen: str, row: str, header: str) -> str:
    """The value in `row` under the right-aligned column `header` of the table header line."""
    head = next(line for line in screen.splitlines() if line.lstrip().startswith("id ") and header in line)
    end = head.index(header) + len(header)
    return row[:end].split()[-1]


def monit_snapshot(corral: Corral, columns: int) -> str:
    """`corral monit` without a terminal: one snapshot of the table on stdout (exit 0)."""
    proc = subprocess.run(
        [sys.executable, "-m", "corral", "monit"],
        cwd=corral.cwd,
        env={**corral.env, "COLUMNS": str(columns)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def row_status(row: str) -> str:
    return row[2:].split()[2]  # id, name, then the (left-aligned) status


def log_pane(screen: str) -> list[str]:
    lines = screen.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("─ logs")), None)
    if start is None:
        return []
    return lines[start + 1 :]


def assert_terminal_restored(tmux: Tmux, tmp_path: Path) -> None:
    screen = tmux.wait_screen(lambda s: "monit exited 0" in s, "monit exits with status 0")
    # the alternate screen is gone: the dashboard no longer shows
    assert "logs:" not in screen and "q quit" not in screen, screen
    after = wait_until(lambda: (tmp_path / "stty-after").read_text(), timeout=DEADLINE, message="stty after monit")
    before = (tmp_path / "stty-before").read_text()
    assert after == before, f"terminal modes changed:\nbefore: {before}\nafter: {after}"
    modes = (tmp_path / "stty-readable").read_text().replace(";", " ").split()
    assert "icanon" in modes and "echo" in modes
    tmux.keys("Enter")
    wait_until(lambda: not tmux.alive(), timeout=DEADLINE, message="the tmux session ends")


def test_monit_dashboard_keys_logs_and_exit(corral: Corral, tmux: Tmux, tmp_path: Path) -> None:
    start_sleepers(corral, "alpha", "beta")
    tmux.start(monit_command(corral, tmp_path), 120, 30)

    screen = tmux.wait_screen(
        lambda s: table_rows(s, "alpha") and table_rows(s, "beta") and all("online" in r for r in table_rows(s, "alpha") + table_rows(s, "beta")) and "q quit" in s,
        "both apps online on the dashboard",
    )
    assert screen.splitlines()[0].startswith("corral monit")
    # the first row is selected, and its logs follow
    assert "alpha" in selected_row(screen)
    tmux.wait_screen(lambda s: any("alpha tick" in line for line in log_pane(s)), "alpha's logs in the log pane")

    # move down: beta selected, the log pane follows beta instead
    tmux.keys("Down")
    tmux.wait_screen(
        lambda s: "beta" in selected_row(s) and "logs: beta" in s and any("beta tick" in line for line in log_pane(s)) and not any("alpha tick" in line for line in log_pane(s)),
        "beta selected, its logs shown",
    )
    # and the log pane keeps following: a later line arrives
    shown = [int(line.split()[-1]) for line in log_pane(tmux.screen()) if line.startswith("beta tick")]
    tmux.wait_screen(lambda s: any(line.startswith("beta tick") and int(line.split()[-1]) > max(shown) for line in log_pane(s)), "new beta log lines")

    # r: restart the selected app
    restarts = corral.proc("beta")["restarts"]
    alpha_restarts = corral.proc("alpha")["restarts"]
    tmux.keys("r")
    wait_until(lambda: corral.proc("beta")["restarts"] == restarts + 1, timeout=DEADLINE, message="beta restarted")
    tmux.wait_screen(lambda s: "restarted beta" in s, "the status line reports the restart")
    tmux.wait_screen(lambda s: cell(s, table_rows(s, "beta")[0], "↺") == str(restarts + 1), "the restart counter on screen")
    assert corral.proc("alpha")["restarts"] == alpha_restarts

    # +: one more instance of beta
    tmux.keys("+")
    wait_until(lambda: sum(1 for p in corral.jlist() if p["name"] == "beta" and p["status"] == "online") == 2, timeout=DEADLINE, message="beta scaled to 2")
    tmux.wait_screen(lambda s: "scaled beta to 2 instances" in s and len(table_rows(s, "beta")) == 2, "two beta rows and the result")

    # -: back to one
    tmux.keys("-")
    wait_until(lambda: sum(1 for p in corral.jlist() if p["name"] == "beta") == 1, timeout=DEADLINE, message="beta scaled to 1")
    tmux.wait_screen(lambda s: "scaled beta to 1 instance" in s and len(table_rows(s, "beta")) == 1, "one beta row again")

    # an error from the daemon goes to the status line; monit carries on
    tmux.keys("-")
    tmux.wait_screen(lambda s: "scaling beta -1 failed" in s and "use stop or delete" in s, "the daemon's refusal shown")
    assert sum(1 for p in corral.jlist() if p["name"] == "beta") == 1

    # 80x24: everything still there, on one line each
    tmux.run("resize-window", "-t", tmux.session, "-x", "80", "-y", "24")
    screen = tmux.wait_screen(
        lambda s: len(s.splitlines()) <= 24 and s.splitlines()[0].startswith("corral monit") and "q quit" in s.splitlines()[-1] and len(table_rows(s, "alpha")) == 1 and len(table_rows(s, "beta")) == 1 and "logs: beta" in s,
        "the dashboard redrawn at 80x24",
    )
    assert all(len(line) <= 80 for line in screen.splitlines())

    # s: stop, then r starts it again
    tmux.keys("s")
    wait_until(lambda: corral.proc("beta")["status"] == "stopped", timeout=DEADLINE, message="beta stopped")
    tmux.wait_screen(lambda s: "stopped beta" in s and "stopped" in table_rows(s, "beta")[0], "beta shown stopped")
    tmux.keys("r")
    wait_until(lambda: corral.proc("beta")["status"] == "online", timeout=DEADLINE, message="beta started again")
    tmux.wait_screen(lambda s: "started beta" in s, "the start reported")

    # q: monit exits, the terminal is as it was
    tmux.keys("q")
    assert_terminal_restored(tmux, tmp_path)


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_monit_restores_terminal_on_interrupt(corral: Corral, tmux: Tmux, tmp_path: Path, how: str) -> None:
    start_sleepers(corral, "solo")
    tmux.start(monit_command(corral, tmp_path), 100, 30)
    tmux.wait_screen(lambda s: table_rows(s, "solo") and "online" in table_rows(s, "solo")[0], "solo on the dashboard")
    if how == "ctrl-c":
        tmux.keys("C-c")
    else:
        shell = tmux.pane_pid()

        def monit_pid() -> int | None:
            children = Path(f"/proc/{shell}/task/{shell}/children").read_text().split()
            return int(children[0]) if children else None

        os.kill(wait_until(monit_pid, timeout=DEADLINE, message="the monit process"), signal.SIGTERM)
    assert_terminal_restored(tmux, tmp_path)
    # quitting the dashboard leaves the apps alone
    assert corral.proc("solo")["status"] == "online"


def test_monit_without_a_tty_prints_a_snapshot(corral: Corral) -> None:
    start_sleepers(corral, "alpha", "beta")
    out = monit_snapshot(corral, 100)
    assert "\x1b" not in out  # no alternate screen, no colour into a pipe
    assert out.startswith("corral monit")
    assert len(table_rows(out, "alpha")) == 1 and len(table_rows(out, "beta")) == 1
    assert all("online" in r for r in table_rows(out, "alpha") + table_rows(out, "beta"))
    assert all(len(line) <= 100 for line in out.splitlines())


def test_rich_is_not_imported_by_the_cli() -> None:
    code = "import sys, corral.cli, corral.tools.monit; sys.exit('rich' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_monit_snapshot_shows_waiting_and_blocked_apps(corral: Corral) -> None:
    """Apps held back by `depends_on` show as `waiting` (the dependency is still running) and
    `blocked` (it failed), each with the dependency named, like `ls` shows them."""
    write(corral.cwd / "until.py", "import os, time\nwhile not os.path.exists('go'):\n    time.sleep(0.05)\n")
    write(corral.cwd / "fail.py", "raise SystemExit(3)\n")
    write(corral.cwd / "sleeper.py", SLEEPER)
    write(
        corral.cwd / "ecosystem.toml",
        """
[[apps]]
name = "slowjob"
script = "until.py"
autorestart = false

[[apps]]
name = "badjob"
script = "fail.py"
autorestart = false

[[apps]]
name = "waiter"
script = "sleeper.py"
args = ["waiter"]
depends_on = { slowjob = "completed_successfully" }

[[apps]]
name = "stuck"
script = "sleeper.py"
args = ["stuck"]
depends_on = { badjob = "completed_successfully" }
""",
    )
    corral.run("start", "ecosystem.toml", "--no-wait", check=False)

    def statuses() -> dict[str, str] | None:
        got = {p["name"]: p["status"] for p in corral.jlist()}
        return got if got.get("waiter") == "waiting" and got.get("stuck") == "blocked" else None

    wait_until(statuses, timeout=DEADLINE, message="waiter waiting, stuck blocked")
    out = monit_snapshot(corral, 120)
    [waiter] = table_rows(out, "waiter")
    [stuck] = table_rows(out, "stuck")
    assert row_status(waiter) == "waiting" and row_status(stuck) == "blocked", out
    assert "slowjob" in waiter and "badjob" in stuck, out  # the reason names the dependency

    # the dependency completes: the waiting app starts and monit shows it online
    write(corral.cwd / "go", "")
    wait_until(lambda: corral.proc("waiter")["status"] == "online", timeout=DEADLINE, message="waiter online")
    again = monit_snapshot(corral, 120)
    [waiter] = table_rows(again, "waiter")
    [stuck] = table_rows(again, "stuck")
    assert row_status(waiter) == "online" and row_status(stuck) == "blocked", again
