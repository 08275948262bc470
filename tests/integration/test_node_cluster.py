"""An unchanged Node http app in PM2's cluster mode under the real daemon: no `listen` key,
one port for every instance, readiness from process.send('ready'), logs in JSON."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from tests.conftest import ROOT, Corral, free_port, wait_until, write

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")
SERVER_JS = ROOT / "tests" / "fixtures" / "node" / "server.js"


def get(port: int) -> dict[str, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert resp.status == 200
        return json.loads(resp.read())  # type: ignore[no-any-return]
    finally:
        conn.close()


def test_node_cluster_without_listen_shares_one_port_and_reloads_losslessly(corral: Corral) -> None:
    port = free_port()
    shutil.copy(SERVER_JS, corral.cwd / "server.js")
    write(corral.cwd / "ecosystem.config.js", f"""
module.exports = {{
  apps: [{{
    name: 'api',
    script: 'server.js',
    instances: 2,               // no exec_mode: PM2's default for node is cluster
    node_args: '--max-old-space-size=128',
    wait_ready: true,
    env_production: {{ PORT: {port} }},
    log_type: 'json',
    out_file: 'logs/api-out.log',
  }}],
}};
""")
    check = corral.run("ecosystem", "check", "--env", "production")
    assert "no listen socket" not in check.stdout
    corral.run("start", "ecosystem.config.js", "--env", "production")
    wait_until(lambda: [p["status"] for p in corral.jlist()] == ["online", "online"], timeout=20)
    procs = corral.jlist()
    for p in procs:
        cmdline = Path(f"/proc/{p['pid']}/cmdline").read_bytes().split(b"\0")
        assert b"--max-old-space-size=128" in cmdline
    pids = {p["pid"] for p in procs}
    answered: set[int] = set()
    wait_until(lambda: answered.add(int(get(port)["pid"])) or answered == pids, timeout=10)  # type: ignore[func-returns-value,call-overload]

    failures: list[str] = []
    ok = [0]
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                get(port)
                ok[0] += 1
            except Exception as e:  # noqa: BLE001 - every failure counts
                failures.append(repr(e))

    loader = threading.Thread(target=load)
    loader.start()
    try:
        wait_until(lambda: ok[0] > 20)
        for _ in range(2):
            corral.run("reload", "api")
        seen = ok[0]
        wait_until(lambda: ok[0] > seen + 20)
    finally:
        stop.set()
        loader.join(10)
    assert failures == []
    new_pids = {p["pid"] for p in corral.jlist()}
    assert new_pids.isdisjoint(pids) and len(new_pids) == 2
    lines = (corral.cwd / "logs" / "api-out-0.log").read_text().splitlines()
    assert all(json.loads(line)["app_name"] == "api" for line in lines if line.strip())


def test_shell_and_node_apps_report_ready_through_corral_ready_fd(corral: Corral) -> None:
    write(corral.cwd / "ready.sh", '#!/bin/sh\nsleep 0.3\necho "STATUS=warm" > /dev/fd/"$CORRAL_READY_FD"\necho READY=1 > /dev/fd/"$CORRAL_READY_FD"\nexec sleep 60\n')
    (corral.cwd / "ready.sh").chmod(0o755)
    write(corral.cwd / "ready.js", "require('fs').writeSync(+process.env.CORRAL_READY_FD, 'READY=1\\n');\nsetInterval(() => {}, 1000);\n")
    write(corral.cwd / "never.sh", "#!/bin/sh\nexec sleep 60\n")
    (corral.cwd / "never.sh").chmod(0o755)
    write(corral.cwd / "ecosystem.config.js", """
module.exports = { apps: [
  { name: 'sh', script: 'ready.sh', wait_ready: true, listen_timeout: 8000 },
  { name: 'js', script: 'ready.js', wait_ready: true, listen_timeout: 8000 },
  { name: 'never', script: 'never.sh', wait_ready: true, listen_timeout: 1500, autorestart: false },
] };
""")
    corral.run("start", "ecosystem.config.js", check=False)
    wait_until(lambda: {p["name"]: p["status"] for p in corral.jlist()} == {"sh": "online", "js": "online", "never": "errored"}
               or {p["name"]: p["status"] for p in corral.jlist()} == {"sh": "online", "js": "online", "never": "stopped"}, timeout=15)


def test_node_cluster_under_corral_runtime(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    port = free_port()
    shutil.copy(SERVER_JS, tmp_path / "server.js")
    eco = write(tmp_path / "ecosystem.config.js",
                f"module.exports = {{ apps: [{{ name: 'api', script: 'server.js', instances: 2, env: {{ PORT: {port} }} }}] }};\n")
    env = dict(os.environ, CORRAL_HOME=str(tmp_path / "home"))
    proc = subprocess.Popen([sys.executable, "-m", "corral", "runtime", str(eco)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        answered: set[int] = set()

        def two() -> bool:
            answered.add(int(get(port)["pid"]))  # type: ignore[call-overload]
            return len(answered) == 2

        wait_until(two, timeout=20)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def listening_socket_flags(pid: int, port: int) -> int:
    """The file status flags with which process `pid` holds the socket listening on `port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                flags = next(x for x in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines() if x.startswith("flags:"))
                return int(flags.split()[1], 8)
        except OSError:
            continue
    raise AssertionError(f"process {pid} holds no socket listening on port {port}")


@pytest.mark.parametrize("with_port_key", [True, False], ids=["port-key", "env-PORT"])
def test_node_workers_accept_on_a_non_blocking_shared_socket(corral: Corral, with_port_key: bool) -> None:
    """Whether the socket is the app's own `listen` (PM2's `port` key) or bound on the
    workers' request, Node's workers get it non-blocking, as from Node's own primary: on a
    blocking one, a worker woken for a connection another took sits in accept() until the
    next connection, deaf to its IPC channel, and a graceful stop is never heard."""
    port = free_port()
    shutil.copy(SERVER_JS, corral.cwd / "server.js")
    port_key = f"port: {port}," if with_port_key else ""
    write(corral.cwd / "ecosystem.config.js", f"""
module.exports = {{ apps: [{{ name: 'api', script: 'server.js', exec_mode: 'cluster', instances: 2,
  {port_key} env: {{ PORT: {port} }}, kill_timeout: 30000 }}] }};
""")
    corral.run("start", "ecosystem.config.js", "--wait")
    pids = {p["pid"] for p in corral.jlist()}
    answered: set[int] = set()  # both listen (they asked the daemon for the socket)
    wait_until(lambda: answered.add(int(get(port)["pid"])) or answered == pids, timeout=10)  # type: ignore[func-returns-value,call-overload]
    for pid in pids:
        assert listening_socket_flags(pid, port) & os.O_NONBLOCK, "Node workers accept on a blocking socket"
    for _ in range(30):  # connections that wake both workers, one of them for nothing
        get(port)
    # a graceful stop is heard at once by both (kill_timeout is 30 s: the CLI's timeout would hit first)
    corral.run("stop", "api", timeout=20)
    assert all(p["status"] == "stopped" for p in corral.jlist())
