"""Start order, events and hooks on real processes under a real daemon.

Each app writes timestamps (CLOCK_MONOTONIC, one clock for every process) to files in
the test's folder: when it started, when it finished or was told to stop. The tests
compare those, with deadlines on every wait."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Corral, ecosystem, free_port, wait_until, write

APP = """
import os, signal, sys, time
name = sys.argv[1]
mode = sys.argv[2] if len(sys.argv) > 2 else "run"
out = os.path.join(os.environ["STAMPS"], name)
def stamp(what):
    with open(out + "." + what, "w") as f:
        f.write(repr(time.monotonic()))
stamp("start")
if mode.startswith("exit"):          # a one-shot: work a little, then exit with the code
    time.sleep(0.4)
    stamp("end")
    sys.exit(int(mode[4:]))
def on_stop(*_):
    stamp("stop")
    time.sleep(0.3)
    sys.exit(0)
signal.signal(signal.SIGINT, on_stop)
signal.signal(signal.SIGTERM, on_stop)
if mode.startswith("listen"):        # open a port only after a delay (a slow dependency)
    import socket
    delay, port = mode[6:].split(":")
    time.sleep(float(delay))
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(port))); s.listen(); stamp("listening")
    while True:
        c, _ = s.accept(); c.close()
if mode == "crash":
    time.sleep(0.2)
    sys.exit(1)
while True:
    time.sleep(1)
"""


def app(name: str, mode: str = "run", **kw: Any) -> dict[str, Any]:
    return {"name": name, "script": "app.py", "args": [name, mode], **kw}


@pytest.fixture
def stamps(corral: Corral) -> Path:
    folder = corral.cwd / "stamps"
    folder.mkdir()
    write(corral.cwd / "app.py", APP)
    corral.env["STAMPS"] = str(folder)
    return folder


def stamp(folder: Path, name: str, what: str) -> float | None:
    try:
        return float((folder / f"{name}.{what}").read_text())
    except (OSError, ValueError):
        return None


def test_chain_starts_in_order(corral: Corral, stamps: Path) -> None:
    write(corral.cwd / "ecosystem.toml", ecosystem(
        app("worker", depends_on=["web"]),
        app("web", depends_on=["migrate"]),
        app("migrate", "exit0", autorestart=False),
    ))
    proc = corral.run("start", "ecosystem.toml", "--wait", timeout=60)
    assert proc.returncode == 0, proc.stderr
    m_end = wait_until(lambda: stamp(stamps, "migrate", "end"))
    web = wait_until(lambda: stamp(stamps, "web", "start"))
    worker = wait_until(lambda: stamp(stamps, "worker", "start"))
    assert stamp(stamps, "migrate", "start") is not None
    assert m_end <= web and m_end <= worker  # started after the one-shot had finished
    # worker needs web `ready`, which for an app without wait_ready is online, at its spawn:
    # the two interpreters then start side by side, so the order shows in the events, not
    # in their first lines
    events = [json.loads(line) for line in corral.run("events", "--json", "--nostream", "--lines", "50").stdout.splitlines()]
    kinds = [(e["app"], e["kind"]) for e in events]
    assert kinds.index(("migrate", "exited")) < kinds.index(("web", "started")) < kinds.index(("web", "online")) < kinds.index(("worker", "started")), kinds
    procs = {p["name"]: p for p in corral.jlist()}
    assert procs["migrate"]["status"] == "stopped" and procs["migrate"]["exit_code"] == 0
    assert procs["web"]["status"] == "online" and procs["worker"]["status"] == "online"


def test_start_answers_before_the_chain_is_up_unless_told_to_wait(corral: Corral, stamps: Path) -> None:
    write(corral.cwd / "ecosystem.toml", ecosystem(app("migrate", "exit0", autorestart=False), app("web", depends_on=["migrate"])))
    proc = corral.run("start", "ecosystem.toml", "--json", timeout=60)
    procs = {p["name"]: p for p in json.loads(proc.stdout)}
    assert procs["migrate"]["pid"] and procs["web"]["status"] == "waiting", procs  # the one-shot works 0.4 s
    wait_until(lambda: corral.proc("web")["status"] == "online", timeout=15)


def test_a_failing_migration_stops_the_chain(corral: Corral, stamps: Path) -> None:
    write(corral.cwd / "ecosystem.toml", ecosystem(
        app("migrate", "exit3", autorestart=False),
        app("web", depends_on=["migrate"]),
        app("worker", depends_on={"web": "started"}),
        app("other"),
    ))
    proc = corral.run("start", "ecosystem.toml", "--wait", check=False, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "web: not started: migrate failed: exited with code 3" in proc.stderr
    assert "worker: not started: web was not started" in proc.stderr
    assert "Traceback" not in proc.stderr
    procs = {p["name"]: p for p in corral.jlist()}
    assert procs["web"]["status"] == "blocked" and "migrate failed" in procs["web"]["reason"]
    assert procs["worker"]["status"] == "blocked"
    assert procs["other"]["status"] == "online"  # independent apps are not held back
    assert stamp(stamps, "web", "start") is None and stamp(stamps, "worker", "start") is None
    table = corral.run("ls").stdout
    assert "blocked" in table and "Traceback" not in table
    described = corral.run("describe", "web").stdout
    assert "depends on" in described and "migrate (completed_successfully)" in described
    assert "web blocked (not started: migrate failed: exited with code 3)" in described


def test_a_slow_healthy_dependency_is_waited_for(corral: Corral, stamps: Path) -> None:
    port = free_port()
    write(corral.cwd / "ecosystem.toml", ecosystem(
        app("db", f"listen1.5:{port}", health={"tcp": f"127.0.0.1:{port}", "interval": "300ms", "timeout": "1s", "start_period": "5s"}),
        app("web", depends_on={"db": "healthy"}),
    ))
    proc = corral.run("start", "ecosystem.toml", "--wait", timeout=60)
    assert proc.returncode == 0, proc.stderr
    listening = wait_until(lambda: stamp(stamps, "db", "listening"))
    web = wait_until(lambda: stamp(stamps, "web", "start"))
    db_start = stamp(stamps, "db", "start")
    assert db_start is not None and listening - db_start >= 1.4
    assert web >= listening


def test_stop_in_reverse_order(corral: Corral, stamps: Path) -> None:
    write(corral.cwd / "ecosystem.toml", ecosystem(
        app("db", kill_signal="SIGTERM"),
        app("api", depends_on=["db"], kill_signal="SIGTERM"),
        app("web", depends_on=["api"], kill_signal="SIGTERM"),
    ))
    corral.run("start", "ecosystem.toml", "--wait")
    corral.run("stop", "all", timeout=60)
    web, api, db = (wait_until(lambda n=n: stamp(stamps, n, "stop")) for n in ("web", "api", "db"))
    # each got its signal only after the one that needs it had finished stopping (0.3 s)
    assert web + 0.25 <= api and api + 0.25 <= db


def test_cycles_are_config_errors(corral: Corral, stamps: Path) -> None:
    write(corral.cwd / "ecosystem.toml", ecosystem(app("a", depends_on=["b"]), app("b", depends_on=["a"])))
    proc = corral.run("start", "ecosystem.toml", check=False)
    assert proc.returncode == 2
    assert "app 'a': key 'depends_on': dependency cycle: a -> b -> a" in proc.stderr
    assert not (corral.home / "corral.sock").exists() or corral.jlist() == []


# ---------------------------------------------------------------- hooks and events


class Receiver:
    def __init__(self, hang: float = 0.0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.hang = hang
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if outer.hang:
                    time.sleep(outer.hang)
                outer.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/TOKEN123"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def hook_file(corral: Corral, url: str, events: str, mode: str = "crash", extra: str = "") -> None:
    write(corral.cwd / "ecosystem.toml", f"""
[[apps]]
name = "flaky"
script = "app.py"
args = ["flaky", "{mode}"]
min_uptime = "100ms"
max_restarts = 50
restart_delay = "300ms"
{extra}
[[apps.hooks]]
url = "{url}"
events = {events}
rate_limit = 100
""")


def test_hooks_deliver_events_to_a_webhook(corral: Corral, stamps: Path) -> None:
    r = Receiver()
    try:
        hook_file(corral, r.url, '["exited", "restarting", "started"]')
        corral.run("start", "ecosystem.toml")
        wait_until(lambda: {"exited", "restarting"} <= {b["event"]["kind"] for b in r.bodies}, timeout=15)
        exited = next(b for b in r.bodies if b["event"]["kind"] == "exited")
        assert exited["event"]["app"] == "flaky" and exited["event"]["code"] == 1
        restarting = next(b for b in r.bodies if b["event"]["kind"] == "restarting")
        assert restarting["event"]["reason"] == "crash"
        # the URL's secret path never shows in the daemon's log
        logs = "".join(p.read_text(errors="replace") for p in corral.home.glob("*.log"))
        assert "TOKEN123" not in logs
    finally:
        r.close()


def test_a_hanging_hook_does_not_delay_restarts(corral: Corral, stamps: Path) -> None:
    r = Receiver(hang=60.0)
    try:
        # every delivery hangs for a minute and the hook waits up to 50 s for each: were
        # supervision to wait on hooks, the second restart would come after 50 s
        hook_file(corral, r.url, '["exited", "restarting"]', extra='')
        eco = corral.cwd / "ecosystem.toml"
        eco.write_text(eco.read_text().replace("rate_limit = 100", 'rate_limit = 100\ntimeout = "50s"'))
        corral.run("start", "ecosystem.toml")
        wait_until(lambda: corral.proc("flaky")["restarts"] >= 3, timeout=30)
        assert len(r.bodies) == 0  # none of the deliveries has finished yet
    finally:
        r.close()


def test_event_counters_on_metrics(corral: Corral, stamps: Path) -> None:
    port = free_port()
    write(corral.home / "corral.toml", f'[http]\nlisten = "127.0.0.1:{port}"\n')
    write(corral.cwd / "ecosystem.toml", ecosystem(app("flaky", "crash", min_uptime="100ms", restart_delay="200ms")))
    corral.run("start", "ecosystem.toml")

    def restarts_counted() -> bool:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        return 'corral_events_total{kind="restarting",reason="crash"}' in text and 'corral_events_total{kind="exited",reason=""}' in text

    wait_until(restarts_counted, timeout=15)


def test_events_command_replays_and_follows(corral: Corral, stamps: Path) -> None:
    import subprocess
    import sys

    write(corral.cwd / "ecosystem.toml", ecosystem(app("m", "exit0", autorestart=False), app("svc", depends_on=["m"])))
    corral.run("start", "ecosystem.toml", "--wait")
    kept = [json.loads(line) for line in corral.run("events", "--json", "--nostream", "--lines", "50").stdout.splitlines()]
    kinds = [(e["app"], e["kind"]) for e in kept]
    assert ("svc", "waiting") in kinds and ("m", "exited") in kinds and ("svc", "online") in kinds
    assert kinds.index(("m", "exited")) < kinds.index(("svc", "started"))
    assert [e["seq"] for e in kept] == sorted(e["seq"] for e in kept)
    only = corral.run("events", "svc", "--nostream", "--lines", "50").stdout
    assert "svc#0 online" in only and "svc waiting: waiting for m (completed_successfully)" in only and " m exited" not in only and "m#0" not in only
    follower = subprocess.Popen([sys.executable, "-m", "corral", "events", "--json", "--lines", "1", "svc"], cwd=corral.cwd, env=corral.env, stdout=subprocess.PIPE, text=True)
    try:
        assert follower.stdout is not None
        # the daemon writes the replayed event and subscribes in one loop turn: once the
        # first line is read, nothing later can be missed
        assert json.loads(follower.stdout.readline())["app"] == "svc"
        corral.run("restart", "svc")
        seen: list[str] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and "online" not in seen:
            line = follower.stdout.readline()
            if line:
                seen.append(json.loads(line)["kind"])
        assert "restarting" in seen and "online" in seen, seen
    finally:
        follower.terminate()
        follower.wait(timeout=10)


@pytest.mark.parametrize(("code", "expected"), [(5, 5), (0, None)])
def test_runtime_honours_the_order_and_exits_with_a_failing_one_shots_code(tmp_path: Path, code: int, expected: int | None) -> None:
    import subprocess
    import sys

    folder = tmp_path / "rt"
    stamps = folder / "stamps"
    stamps.mkdir(parents=True)
    write(folder / "app.py", APP)
    write(folder / "ecosystem.toml", ecosystem(app("migrate", f"exit{code}", autorestart=False), app("web", depends_on=["migrate"])))
    env = dict(__import__("os").environ, CORRAL_HOME=str(tmp_path / "rt-home"), STAMPS=str(stamps))
    proc = subprocess.Popen([sys.executable, "-m", "corral", "runtime", "ecosystem.toml"], cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if expected is not None:
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == expected, err
            assert "web: not started: migrate failed: exited with code 5" in err
            assert stamp(stamps, "web", "start") is None
        else:
            web = wait_until(lambda: stamp(stamps, "web", "start"), timeout=20)
            end = stamp(stamps, "migrate", "end")
            assert end is not None and end <= web
            proc.terminate()
            proc.communicate(timeout=30)
            assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_restart_with_dependents(corral: Corral, stamps: Path) -> None:
    write(corral.cwd / "ecosystem.toml", ecosystem(
        app("db", kill_signal="SIGTERM"),
        app("api", depends_on=["db"], kill_signal="SIGTERM"),
        app("lone", kill_signal="SIGTERM"),
    ))
    corral.run("start", "ecosystem.toml", "--wait")
    before = {n: wait_until(lambda n=n: stamp(stamps, n, "start")) for n in ("db", "api", "lone")}
    corral.run("restart", "db", "--with-dependents", timeout=60)
    db = wait_until(lambda: (s := stamp(stamps, "db", "start")) is not None and s > before["db"] and s)
    api = wait_until(lambda: (s := stamp(stamps, "api", "start")) is not None and s > before["api"] and s)
    assert api >= db  # the dependent came back after what it needs
    assert stamp(stamps, "lone", "start") == before["lone"]  # others untouched
    procs = {p["name"]: p for p in corral.jlist()}
    assert procs["api"]["restarts"] == 1 and procs["db"]["restarts"] == 1 and procs["lone"]["restarts"] == 0
