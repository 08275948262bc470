"""Health probes on real processes: http, tcp and exec probes, thresholds, liveness,
`corral healthcheck`, and a hung target that must not delay anything else.

The app (tests/fixtures/health/server.py) answers 200, 500 or never, depending
on the content of a flag file the test flips.  Probes run every 300 ms.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Corral, pid_alive, wait_until, write
from tests.fixtures.health.helpers import (
    SLEEPER,
    free_port,
    health,
    server_app,
    start,
    stays,
    use_venv,
    wait_health,
)

FAST = {"interval": "300ms", "timeout": "2s"}


@pytest.fixture
def corral(corral: Corral) -> Corral:
    return use_venv(corral)


class LoopbackServer:
    """A TCP server in this process (a thread per connection) with a custom handler."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = int(self.sock.getsockname()[1])
        self.conns: list[socket.socket] = []
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            self.handler(conn)
        except OSError:
            pass

    def close(self) -> None:
        self.closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self.sock.close()
        for c in self.conns:
            c.close()
        self.thread.join(5)


@pytest.fixture
def servers() -> Iterator[Callable[[Callable[[socket.socket], None]], LoopbackServer]]:
    made: list[LoopbackServer] = []

    def make(handler: Callable[[socket.socket], None]) -> LoopbackServer:
        made.append(LoopbackServer(handler))
        return made[-1]

    yield make
    for srv in made:
        srv.close()


def healthcheck(corral: Corral, *names: str) -> tuple[int, str]:
    """(exit code, its one line of output: stdout, or stderr for a usage error)."""
    out = corral.run("healthcheck", *names, check=False, timeout=20)
    text = out.stdout + out.stderr
    assert text.count("\n") == 1 and text.endswith("\n"), f"not one line: {out.stdout!r} {out.stderr!r}"
    return out.returncode, text.strip()


def events(corral: Corral, text: str) -> int:
    log = corral.home / "corral.log"
    return log.read_text().count(text) if log.exists() else 0


def test_http_probe_thresholds_and_healthcheck(corral: Corral) -> None:
    port = free_port()
    flag = corral.cwd / "flag"
    probe = {"http": "/health", **FAST, "failure_threshold": 2, "success_threshold": 2}
    start(corral, server_app("web", port, env={"FLAG_FILE": str(flag)}, health=probe))
    h = wait_health(corral, "web", "healthy")
    assert h["successes"] >= 2 and h["failures"] == 0 and h["last_error"] is None
    assert h["checks"] >= 2
    assert isinstance(h["last_latency_ms"], float) and 0 < h["last_latency_ms"] < 2000
    assert abs(h["last_change"] - time.time()) < 30
    assert healthcheck(corral) == (0, "healthy: web: 1/1 online, healthy")
    assert healthcheck(corral, "web") == (0, "healthy: web: 1/1 online, healthy")

    flag.write_text("fail")
    h = wait_health(corral, "web", "unhealthy")
    assert h["failures"] >= 2 and h["successes"] == 0
    assert h["last_error"] == "HTTP 500"
    assert corral.proc("web")["status"] == "online"  # readiness only: no restart
    assert corral.proc("web")["restarts"] == 0
    assert healthcheck(corral) == (1, "unhealthy: web: health unhealthy (HTTP 500)")

    flag.write_text("")
    h = wait_health(corral, "web", "healthy")
    assert h["successes"] >= 2 and h["last_error"] is None
    assert healthcheck(corral) == (0, "healthy: web: 1/1 online, healthy")
    # each change is announced once
    assert events(corral, "health: healthy") == 2
    assert events(corral, "health: unhealthy: HTTP 500") == 1
    # describe --json shows the same health
    desc = json.loads(corral.run("describe", "web", "--json").stdout)[0]
    assert desc["health"]["status"] == "healthy"
    assert corral.proc("web")["restarts"] == 0


def test_expect_status_and_body(corral: Corral) -> None:
    port = free_port()
    write(corral.cwd / "app.py", SLEEPER)
    one = {**FAST, "failure_threshold": 1}
    start(
        corral,
        server_app("body", port, health={"http": "/", **one, "expect_body": "ok", "expect_status": 200}),
        # probes of another app's URL
        {"name": "wantbody", "script": "app.py", "health": {"http": f"http://127.0.0.1:{port}/x", **one, "expect_body": "nope"}},
        {"name": "status", "script": "app.py", "health": {"http": f"http://127.0.0.1:{port}/", **one, "expect_status": "500-599"}},
    )
    wait_health(corral, "body", "healthy")
    h = wait_health(corral, "wantbody", "unhealthy")
    assert h["last_error"] == "HTTP 200 without 'nope' in the body"
    h = wait_health(corral, "status", "unhealthy")
    assert h["last_error"] == "HTTP 200"


def test_start_period_hides_early_failures(corral: Corral) -> None:
    flag = corral.cwd / "flag"
    flag.write_text("fail")
    port = free_port()
    start(corral, server_app("slow", port, env={"FLAG_FILE": str(flag)}, health={"http": "/", **FAST, "failure_threshold": 1, "start_period": "2s"}))
    t0 = time.monotonic()
    h = wait_until(lambda: (h := health(corral, "slow"))["checks"] >= 2 and h, timeout=10)
    if time.monotonic() - t0 < 1.5:  # still inside the start period (generous margin)
        assert h["status"] == "starting" and h["failures"] == 0
        assert h["last_error"] == "HTTP 500"
    h = wait_health(corral, "slow", "unhealthy", timeout=10)
    assert h["failures"] >= 1


def test_healthcheck_exit_codes(corral: Corral, tmp_path: Path) -> None:
    # no daemon: exit 1, and none is started
    assert healthcheck(corral)[0] == 1
    assert not (corral.home / "corral.sock").exists() and corral.daemon_pid() is None

    write(corral.cwd / "ok.py", SLEEPER)
    write(corral.cwd / "crash.py", "import sys\nsys.exit(3)\n")
    start(corral, {"name": "good", "script": "ok.py"})
    assert healthcheck(corral) == (0, "healthy: good: 1/1 online")
    assert healthcheck(corral, "nope") == (1, "corral: error: no app named 'nope'")

    start(corral, {"name": "good", "script": "ok.py"}, {"name": "crash", "script": "crash.py", "max_restarts": 1})
    wait_until(lambda: corral.proc("crash")["status"] == "errored", timeout=15)
    code, line = healthcheck(corral)
    assert code == 1 and line.startswith("unhealthy: crash: 0/1 online (crash:1 is errored"), line
    assert "good" not in line  # only the unhealthy apps are named
    assert healthcheck(corral, "good") == (0, "healthy: good: 1/1 online")
    assert healthcheck(corral, "crash")[0] == 1

    corral.run("stop", "good")
    code, line = healthcheck(corral, "good")
    assert code == 1 and line.startswith("unhealthy: good: 0/1 online (good:0 is stopped"), line

    # a daemon that went away: exit 1
    corral.run("kill")
    assert healthcheck(corral)[0] == 1
    assert not (corral.home / "corral.sock").exists()


def test_liveness_restarts_the_instance(corral: Corral) -> None:
    port = free_port()
    flag = corral.cwd / "flag"
    probe = {"http": "/health", **FAST, "failure_threshold": 2, "liveness": True}
    start(corral, server_app("live", port, env={"FLAG_FILE": str(flag)}, health=probe))
    wait_health(corral, "live", "healthy")
    first = corral.proc("live")
    assert first["restarts"] == 0 and first["last_restart_reason"] is None

    flag.write_text("fail")
    p = wait_until(lambda: (p := corral.proc("live"))["restarts"] >= 1 and p, timeout=10)
    flag.write_text("")
    assert "liveness" in p["last_restart_reason"] and "HTTP 500" in p["last_restart_reason"]
    p = wait_until(lambda: (p := corral.proc("live"))["status"] == "online" and p["pid"] != first["pid"] and p, timeout=10)
    assert not pid_alive(first["pid"])
    assert p["id"] == first["id"]
    h = wait_health(corral, "live", "healthy")
    assert h["checks"] < 20  # a fresh state for the new process
    restarts = corral.proc("live")["restarts"]
    stays(lambda: corral.proc("live")["restarts"] == restarts, 1.0)
    assert events(corral, "liveness") >= 1


def test_tcp_probe(corral: Corral) -> None:
    port = free_port()
    nobody = free_port()
    write(corral.cwd / "ok.py", SLEEPER)
    start(
        corral,
        server_app("tcp", port, health={"tcp": "127.0.0.1:{port}", **FAST, "failure_threshold": 1}),
        {"name": "closed", "script": "ok.py", "health": {"tcp": f"127.0.0.1:{nobody}", **FAST, "failure_threshold": 1}},
    )
    h = wait_health(corral, "tcp", "healthy")
    assert h["last_error"] is None
    h = wait_health(corral, "closed", "unhealthy")
    assert h["last_error"] == "connection refused"
    code, line = healthcheck(corral)
    assert code == 1 and line == "unhealthy: closed: health unhealthy (connection refused)"
    assert healthcheck(corral, "tcp")[0] == 0


def test_exec_probe(corral: Corral) -> None:
    write(corral.cwd / "ok.py", SLEEPER)
    check = write(corral.cwd / "check.sh", '[ "$PROBE_TOKEN" = "s3cret" ] || { echo "no token" >&2; exit 3; }\nexit 0\n')
    start(corral, {"name": "ex", "script": "ok.py", "env": {"PROBE_TOKEN": "s3cret"}, "health": {"exec": "sh check.sh", **FAST, "failure_threshold": 1}})
    # runs in the app's cwd (check.sh is relative) with the app's env
    wait_health(corral, "ex", "healthy")
    check.write_text("echo broken >&2\nexit 1\n")
    h = wait_health(corral, "ex", "unhealthy")
    assert h["last_error"] == "exit code 1: broken"
    check.write_text("exit 0\n")
    wait_health(corral, "ex", "healthy")
    # a command that cannot run is a failure with the reason
    start(corral, {"name": "ex", "script": "ok.py", "env": {"PROBE_TOKEN": "s3cret"}, "health": {"exec": "./missing.sh", **FAST, "failure_threshold": 1}})
    h = wait_health(corral, "ex", "unhealthy")
    assert "cannot run ./missing.sh: No such file or directory" in h["last_error"], h


def test_exec_probe_with_a_lot_of_stderr(corral: Corral) -> None:
    write(corral.cwd / "ok.py", SLEEPER)
    chatty = [sys.executable, "-c", "import sys; sys.stderr.write('warning\\n' * 20000); sys.exit(0)"]
    start(corral, {"name": "chatty", "script": "ok.py", "health": {"exec": chatty, "interval": "300ms", "timeout": "1s", "failure_threshold": 1}})
    h = wait_until(lambda: (h := health(corral, "chatty"))["checks"] >= 1 and h, timeout=10)
    assert h["status"] == "healthy", h


def test_exec_probe_timeout_kills_the_command(corral: Corral) -> None:
    write(corral.cwd / "ok.py", SLEEPER)
    write(corral.cwd / "hang.sh", 'echo $$ >> probe.pids\nexec sleep 30\n')
    start(corral, {"name": "hang", "script": "ok.py", "health": {"exec": "sh hang.sh", "interval": "300ms", "timeout": "500ms", "failure_threshold": 1}})
    h = wait_health(corral, "hang", "unhealthy")
    assert h["last_error"] == "timed out after 0.5s"
    pids = [int(x) for x in (corral.cwd / "probe.pids").read_text().split()]
    # the timed-out probe is killed (and reaped), not left behind
    wait_until(lambda: not pid_alive(pids[0]), timeout=5, message=f"probe {pids[0]} killed")


def test_hung_target_does_not_delay_other_probes_or_the_control_socket(corral: Corral) -> None:
    hang_flag = corral.cwd / "hang.flag"
    hang_flag.write_text("hang")
    hung = hang_flag.with_name("hang.flag.hung")
    probe_hang = {"http": "/", "interval": "300ms", "timeout": "3s", "failure_threshold": 1}
    probe_fine = {"http": "/", "interval": "300ms", "timeout": "2s", "failure_threshold": 1}
    start(
        corral,
        server_app("stuck", free_port(), env={"FLAG_FILE": str(hang_flag)}, health=probe_hang),
        server_app("stuck2", free_port(), env={"FLAG_FILE": str(hang_flag)}, health=probe_hang),
        server_app("fine", free_port(), health=probe_fine),
    )
    # both stuck apps' probes are in flight (accepted, never answered)
    wait_until(lambda: hung.exists() and len(hung.read_text().split()) >= 2, timeout=10)
    t_hung = float(hung.read_text().split()[0])
    before = health(corral, "fine")["checks"]
    # the control socket answers at once
    t0 = time.monotonic()
    corral.run("ls")
    assert time.monotonic() - t0 < 2.0
    # the other app keeps being probed while those hang
    wait_until(lambda: health(corral, "fine")["checks"] >= before + 3, timeout=3)
    assert time.time() - t_hung < 3.0, "the hung probes timed out before we looked: the check proved nothing"
    assert health(corral, "stuck")["checks"] == 0 and health(corral, "stuck2")["checks"] == 0
    assert health(corral, "fine")["status"] == "healthy"
    # then the hung probes time out
    h = wait_health(corral, "stuck", "unhealthy", timeout=10)
    assert h["last_error"] == "timed out after 3s"


def test_many_hung_targets_do_not_starve_other_probes(corral: Corral, servers: Callable[[Callable[[socket.socket], None]], LoopbackServer]) -> None:
    # accepts, never reads nor answers: every http probe to it hangs until its timeout
    hung = servers(lambda conn: None)
    write(corral.cwd / "ok.py", SLEEPER)
    start(
        corral,
        {"name": "many", "script": "sleep", "args": ["600"], "instances": 33, "health": {"http": f"http://127.0.0.1:{hung.port}/", "interval": "300ms", "timeout": "6s", "failure_threshold": 1}},
        # a tcp connect to the same server succeeds at once
        {"name": "fine", "script": "ok.py", "health": {"tcp": f"127.0.0.1:{hung.port}", "interval": "300ms", "failure_threshold": 1}},
    )
    wait_until(lambda: len(hung.conns) >= 32, timeout=10, message="the hung probes are in flight")
    t0 = time.monotonic()
    before = health(corral, "fine")["checks"]
    wait_until(lambda: health(corral, "fine")["checks"] >= before + 2, timeout=2, message="the fine app is probed meanwhile")
    assert time.monotonic() - t0 < 6


def _split_body(conn: socket.socket) -> None:
    conn.recv(4096)
    first, rest = b"status: " + b"." * 100, b" ok\n"
    conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(first) + len(rest)}\r\nConnection: close\r\n\r\n".encode() + first)
    time.sleep(0.1)  # the body comes in two segments, as from any real server now and then
    conn.sendall(rest)
    conn.close()


def test_expect_body_spread_over_segments(corral: Corral, servers: Callable[[Callable[[socket.socket], None]], LoopbackServer]) -> None:
    srv = servers(_split_body)
    write(corral.cwd / "ok.py", SLEEPER)
    start(corral, {"name": "split", "script": "ok.py", "health": {"http": f"http://127.0.0.1:{srv.port}/", **FAST, "failure_threshold": 1, "expect_body": "ok"}})
    h = wait_until(lambda: (h := health(corral, "split"))["checks"] >= 2 and h, timeout=10)
    assert h["status"] == "healthy", h


def test_port_placeholder_without_a_port_is_reported(corral: Corral) -> None:
    write(corral.cwd / "ok.py", SLEEPER)
    start(corral, {"name": "noport", "script": "ok.py", "health": {"tcp": "127.0.0.1:{port}", **FAST, "failure_threshold": 1}})
    h = wait_until(lambda: (h := health(corral, "noport"))["status"] != "starting" and h, timeout=2.5)
    assert h["status"] == "unhealthy" and h["last_error"], h


def test_cluster_probe_goes_through_the_shared_socket(corral: Corral) -> None:
    port = free_port()
    flag = corral.cwd / "flag"
    app = server_app(
        "web",
        None,
        exec_mode="cluster",
        instances=2,
        listen=f"127.0.0.1:{port}",
        wait_ready=True,
        env={"FLAG_FILE": str(flag)},
        health={"http": "/health", **FAST, "failure_threshold": 1},
    )
    start(corral, app)
    wait_health(corral, "web", "healthy")
    # one probe for the app: both instances show the same state
    a, b = health(corral, "web", 0), health(corral, "web", 1)
    assert a["status"] == b["status"] == "healthy"
    assert abs(a["checks"] - b["checks"]) <= 1
    flag.write_text("fail")
    wait_health(corral, "web", "unhealthy", index=1)
    code, line = healthcheck(corral)
    assert (code, line) == (1, "unhealthy: web: health unhealthy (HTTP 500)")


def cluster_live(port: int, flag: Path) -> dict[str, object]:
    return server_app(
        "web",
        None,
        exec_mode="cluster",
        instances=2,
        listen=f"127.0.0.1:{port}",
        wait_ready=True,
        env={"FLAG_FILE": str(flag)},
        health={"http": "/", **FAST, "failure_threshold": 2, "liveness": True},
    )


def test_cluster_liveness_reloads_the_app(corral: Corral) -> None:
    port = free_port()
    flag = corral.cwd / "flag"
    start(corral, cluster_live(port, flag))
    wait_health(corral, "web", "healthy")
    before = {p["instance"]: p for p in corral.jlist()}
    flag.write_text("fail")

    def reloaded() -> dict[int, dict[str, object]] | None:
        procs = corral.jlist()  # 3 rows while a replacement runs beside the instance it replaces
        now = {p["instance"]: p for p in procs}
        done = len(procs) == 2 and all(now[i]["pid"] != before[i]["pid"] and now[i]["status"] == "online" for i in (0, 1))
        return now if done else None

    wait_health(corral, "web", "unhealthy")
    flag.write_text("")  # the reload has begun: the new instances answer 200
    after = wait_until(reloaded, timeout=10, message="every instance replaced")
    log = (corral.home / "corral.log").read_text()
    for i in (0, 1):
        assert after[i]["id"] == before[i]["id"] and after[i]["restarts"] == 1, log
        assert not pid_alive(int(str(before[i]["pid"])))
    assert events(corral, "health: app web unhealthy: HTTP 500") == 1


def test_cluster_liveness_restarts_again_while_it_keeps_failing(corral: Corral) -> None:
    port = free_port()
    flag = corral.cwd / "flag"
    start(corral, cluster_live(port, flag))
    wait_health(corral, "web", "healthy")
    flag.write_text("fail")
    wait_until(lambda: corral.proc("web")["restarts"] >= 1, timeout=10)
    # 300 ms probes, threshold 2: a fork-mode instance is restarted about every second
    wait_until(lambda: corral.proc("web")["restarts"] >= 2, timeout=3, message="a second liveness restart")


def test_cluster_liveness_reason_is_recorded(corral: Corral) -> None:
    port = free_port()
    flag = corral.cwd / "flag"
    start(corral, cluster_live(port, flag))
    wait_health(corral, "web", "healthy")
    flag.write_text("fail")
    p = wait_until(lambda: (p := corral.proc("web"))["restarts"] >= 1 and p["status"] == "online" and p, timeout=10)
    assert p["last_restart_reason"] and "liveness" in p["last_restart_reason"], p


def test_bad_health_config_is_a_config_error(corral: Corral) -> None:
    write(corral.cwd / "ok.py", SLEEPER)
    out = start(corral, {"name": "web", "script": "ok.py", "health": {"http": "/", "interval": "soon"}}, check=False)
    assert out.returncode == 2
    assert "app 'web'" in out.stderr and "key 'health'" in out.stderr and "health.interval" in out.stderr, out.stderr
    out = start(corral, {"name": "web", "script": "ok.py", "health": {"http": "/", "tcp": "h:1"}}, check=False)
    assert out.returncode == 2 and "health.http" in out.stderr
    assert corral.jlist() == []
