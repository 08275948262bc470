"""End to end: the reference web app (examples/webapp) under corral-runtime, on PostgreSQL.

The production configuration of examples/webapp/ecosystem.toml (cluster mode, 4
instances sharing one listening socket, wait_ready, JSON logs), run the way a
container runs it: ``corral-runtime ecosystem.toml --only webapp --env production``
as PID 1 of a new PID namespace (when ``unshare`` works), against a throwaway
PostgreSQL cluster (tests/e2e/conftest.py). The ecosystem file is a temporary
copy: another free port instead of 127.0.0.1:8000, log files in a temporary
folder, ``cwd`` pointing at examples/webapp, and a fast health probe.

The module's tests run in order on one runtime: health from every instance, a
database outage and its recovery, a zero-downtime reload, then SIGTERM. The last
test runs ``make run``'s own command (SQLite, port 8000) and stops it with Ctrl-C.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from corral.core.units import parse_duration_ms
from tests.conftest import pid_alive, wait_until
from tests.e2e.conftest import PgServer, free_port
from tests.support.httpload import Load

ROOT = Path(__file__).resolve().parents[2]
WEBAPP = ROOT / "examples" / "webapp"
ECOSYSTEM = WEBAPP / "ecosystem.toml"
RUN_SH = ROOT / "examples" / "run.sh"
APP = "webapp"
INSTANCES = 4
PROBE = {"http": "/api/health", "interval": "500ms", "failure_threshold": 1}
SLACK = 3.0  # seconds on top of a probe interval: a loaded CI machine


def have_unshare() -> bool:
    if os.getuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True).returncode == 0


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


# ------------------------------------------------------------------ HTTP


def get(port: int, path: str = "/api/health", timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    """One GET on a new connection: (status, JSON body). Raises OSError when refused or reset."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    try:
        data = json.loads(body)
    except ValueError:
        data = {"raw": body[:300].decode("utf-8", "replace")}
    return resp.status, data


def answers_from_all(port: int, want_status: int, count: int = INSTANCES, timeout: float = 15.0) -> dict[int, dict[str, Any]]:
    """Request /api/health (new connection each) until `count` distinct pids answered `want_status`."""
    seen: dict[int, dict[str, Any]] = {}
    last: list[Any] = []

    def enough() -> bool:
        status, body = get(port)
        last[:] = [status, body]
        if status == want_status:
            seen[int(body["pid"])] = body
        return len(seen) >= count

    wait_until(enough, timeout=timeout, interval=0.01, message=f"HTTP {want_status} from {count} pids (seen {sorted(seen)}, last {last})")
    return seen


# ------------------------------------------------------------------ the ecosystem copy


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML for {v!r}")


def dump_apps(apps: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for app in apps:
        lines.append("[[apps]]")
        tables = {k: v for k, v in app.items() if isinstance(v, dict)}
        lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in app.items() if k not in tables]
        for name, table in tables.items():
            lines.append(f"[apps.{json.dumps(name)}]")
            lines += [f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in table.items()]
        lines.append("")
    return "\n".join(lines)


def ecosystem_copy(folder: Path, port: int) -> tuple[Path, dict[str, Any]]:
    """examples/webapp/ecosystem.toml, rewritten into `folder`: our port, logs in `folder`, cwd the app's."""
    data = tomllib.loads(ECOSYSTEM.read_text())
    assert set(data) == {"apps"}, f"ecosystem.toml has top-level keys this copy does not carry over: {sorted(data)}"
    webapp: dict[str, Any] | None = None
    for app in data["apps"]:
        # relative paths resolve against the file's folder: keep them pointing into examples/webapp
        app["cwd"] = str((WEBAPP / app["cwd"]).resolve()) if app.get("cwd") else str(WEBAPP)
        if app.get("name") != APP:
            continue
        webapp = app
        listen = app["listen"]
        if isinstance(listen, str):
            app["listen"] = listen.replace(":8000", f":{port}")
        else:
            app["listen"] = [a.replace(":8000", f":{port}") for a in listen]
        for key in ("out_file", "error_file", "log_file"):
            if app.get(key):
                app[key] = str(folder / "logs" / Path(app[key]).name)
        app["health"] = dict(PROBE)  # a fast probe, whatever the file says
    assert webapp is not None, "ecosystem.toml has no app named 'webapp'"
    assert f":{port}" in json.dumps(webapp["listen"]), f"listen was not 127.0.0.1:8000: {webapp['listen']!r}"
    path = folder / "ecosystem.toml"
    path.write_text(dump_apps(data["apps"]))
    return path, webapp


def json_records(path: Path) -> list[dict[str, Any]]:
    """Corral's JSON log records (log_type json), with `message` parsed when it is the app's JSON line."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        try:
            record["app"] = json.loads(record["message"])
        except (ValueError, TypeError, KeyError):
            record["app"] = None
        out.append(record)
    return out


def app_lines(path: Path, msg: str) -> list[dict[str, Any]]:
    return [r for r in json_records(path) if isinstance(r["app"], dict) and r["app"].get("msg") == msg]


# ------------------------------------------------------------------ the runtime


class Runtime:
    """corral-runtime on the ecosystem copy, as PID 1 of a new PID namespace when possible."""

    def __init__(self, folder: Path, eco: Path, env: dict[str, str]) -> None:
        self.home = folder / "home"
        self.env = dict(env, CORRAL_HOME=str(self.home))
        self.pid1 = have_unshare()
        cmd = [sys.executable, "-m", "corral", "runtime", str(eco), "--only", APP, "--env", "production"]
        if self.pid1:
            # --kill-child: should this test die, the namespace (and every app in it) dies with unshare
            cmd = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *cmd]
        self.out_path = folder / "runtime.out"
        self.err_path = folder / "runtime.err"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(cmd, env=self.env, cwd=eco.parent, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        self._pid: int | None = None

    def runtime_pid(self) -> int:
        """corral-runtime's pid as this test sees it (unshare's child under a PID namespace)."""
        if not self.pid1:
            return self.proc.pid
        if self._pid is None:
            self._pid = wait_until(lambda: next((c.pid for c in psutil.Process(self.proc.pid).children()), None), timeout=10, message="unshare's child")
        return self._pid

    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def corral(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        # the CLI starts a background daemon when none answers: never let it race the runtime for the home
        if self.proc.poll() is not None or not (self.home / "corral.sock").exists():
            raise AssertionError(f"corral-runtime's control socket is not there (runtime exit: {self.proc.poll()})")
        return subprocess.run([sys.executable, "-m", "corral", *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def jlist(self) -> list[dict[str, Any]]:
        out = self.corral("jlist")
        assert out.returncode == 0, out.stderr
        return [p for p in json.loads(out.stdout) if p["name"] == APP]

    def finish(self) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.runtime_pid(), signal.SIGTERM)
                self.proc.wait(20)
            except (subprocess.TimeoutExpired, AssertionError, psutil.Error, ProcessLookupError):
                self.proc.kill()
                self.proc.wait(10)


class Webapp:
    def __init__(self, folder: Path, rt: Runtime, port: int, config: dict[str, Any]) -> None:
        self.folder = folder
        self.rt = rt
        self.port = port
        self.config = config
        self.error_log = Path(config["error_file"])
        self.interval = parse_duration_ms(config["health"]["interval"]) / 1000

    def online(self) -> list[dict[str, Any]]:
        procs = self.rt.jlist()
        ok = len(procs) == INSTANCES and all(p["status"] == "online" and p["pid"] for p in procs)
        return procs if ok else []

    def pids(self) -> dict[int, int]:
        """id -> pid of every instance (pids as the runtime sees them, like the app's own)."""
        return {p["id"]: p["pid"] for p in self.online()}


@pytest.fixture(scope="module")
def webapp(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webapp]:
    folder = tmp_path_factory.mktemp("webapp-pg")
    port = free_port()
    eco, config = ecosystem_copy(folder, port)
    env = dict(os.environ, DATABASE_URL=pg_server.url)
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix  # serve.py runs with this venv's python (uvicorn, psycopg)
    rt = Runtime(folder, eco, env)
    try:
        app = Webapp(folder, rt, port, config)
        try:
            wait_until(lambda: rt.proc.poll() is not None or app.online(), timeout=40, interval=0.2, message="4 webapp instances online")
        except AssertionError as e:
            raise AssertionError(f"{e}\nruntime stderr:\n{rt.err()[-4000:]}") from None
        assert rt.proc.poll() is None, f"corral-runtime exited {rt.proc.returncode}:\n{rt.err()[-4000:]}"
        yield app
    finally:
        rt.finish()
        if not pg_server.running():  # a failed outage test must not leave the next module without a database
            pg_server.start()


# ------------------------------------------------------------------ the tests


def test_health_served_by_every_instance(webapp: Webapp) -> None:
    pids = webapp.pids()
    seen = answers_from_all(webapp.port, 200)
    assert set(seen) == set(pids.values())
    for body in seen.values():
        assert body["status"] == "ok" and body["database"] == "up", body
    assert {body["instance"] for body in seen.values()} == {str(i) for i in range(INSTANCES)}
    # Corral's own probe through the shared socket agrees
    wait_until(lambda: webapp.rt.corral("healthcheck").returncode == 0, timeout=webapp.interval + SLACK, message="corral healthcheck exits 0")
    assert all(p["health"]["status"] == "healthy" for p in webapp.rt.jlist())


def test_database_outage_and_recovery(webapp: Webapp, pg_server: PgServer) -> None:
    before = {p["id"]: (p["pid"], p["restarts"]) for p in webapp.online()}
    assert len(before) == INSTANCES
    pids = {pid for pid, _ in before.values()}
    within = webapp.interval + SLACK

    def health_answer(status: int) -> dict[str, Any] | None:
        code, body = get(webapp.port)
        return body if code == status else None

    def healthcheck_exits(code: int) -> subprocess.CompletedProcess[str] | None:
        out = webapp.rt.corral("healthcheck")
        return out if out.returncode == code else None

    def logged_by_every_instance(msg: str) -> list[dict[str, Any]] | None:
        records = app_lines(webapp.error_log, msg)
        return records if {r["app"]["pid"] for r in records} >= pids else None

    pg_server.stop()
    try:
        stopped = time.monotonic()
        # the app answers 500 within one probe interval, and Corral's probe sees it
        body = wait_until(lambda: health_answer(500), timeout=within, interval=0.02, message="/api/health answers 500")
        assert body["status"] == "error" and body["database"] == "down" and body["error"], body
        check = wait_until(lambda: healthcheck_exits(1), timeout=within, interval=0.05, message="corral healthcheck exits 1")
        assert time.monotonic() - stopped <= within + 2, "corral healthcheck noticed late"
        assert check.stdout.startswith("unhealthy: ") and f"{APP}: health unhealthy" in check.stdout, check.stdout
        assert "500" in check.stdout, check.stdout  # the reason names what the probe saw
        procs = webapp.rt.jlist()
        assert [p["health"]["status"] for p in procs] == ["unhealthy"] * INSTANCES, [p["health"] for p in procs]
        assert set(answers_from_all(webapp.port, 500, timeout=10)) == pids  # every instance, no restart

        # every instance logged the outage once, on stderr: its JSON line inside Corral's JSON record
        records = wait_until(lambda: logged_by_every_instance("database is down"), timeout=5)
        for r in records:
            assert r["app_name"] == APP and r["type"] == "err", r
            assert r["app"]["level"] == "error" and r["app"]["database"] == "down" and r["app"]["backend"] == "postgresql", r
            assert "OperationalError" in r["app"]["error"], r
        assert len({r["app"]["pid"] for r in records}) == len(records), "an outage is logged once per instance"
    finally:
        pg_server.start()

    # back, without a restart
    assert set(answers_from_all(webapp.port, 200, timeout=20)) == pids
    wait_until(lambda: healthcheck_exits(0), timeout=within + 5, interval=0.05, message="corral healthcheck exits 0 again")
    procs = webapp.rt.jlist()
    assert {p["id"]: (p["pid"], p["restarts"]) for p in procs} == before
    assert all(p["health"]["status"] == "healthy" for p in procs), [p["health"] for p in procs]
    back = wait_until(lambda: logged_by_every_instance("database is up again"), timeout=5)
    assert all(r["app"]["level"] == "info" for r in back)


def test_reload_drops_no_request(webapp: Webapp) -> None:
    before = {p["id"]: p for p in webapp.online()}
    assert len(before) == INSTANCES
    answers_from_all(webapp.port, 200)  # all serving before the load starts
    with Load(webapp.port, "/api/health", served=0, max_seconds=60.0) as load:
        wait_until(lambda: load.ok >= 20, timeout=10, message="the load is running")
        t0 = time.monotonic()
        out = webapp.rt.corral("reload", APP, timeout=60)
        took = time.monotonic() - t0
        ok_at_reload_end = load.ok
        wait_until(lambda: load.ok >= ok_at_reload_end + 20, timeout=10, message="requests after the reload")
    assert out.returncode == 0, f"{out.stdout}\n{out.stderr}"
    assert not load.failures, f"{load.failed} failed of {load.ok + load.failed} (reload took {took:.1f}s): {load.failures[:5]}"
    after = {p["id"]: p for p in wait_until(webapp.online, timeout=10, message="4 instances online after the reload")}
    assert set(after) == set(before), "ids are kept"
    assert {i: p["instance"] for i, p in after.items()} == {i: p["instance"] for i, p in before.items()}
    old_pids = {p["pid"] for p in before.values()}
    new_pids = {p["pid"] for p in after.values()}
    assert not old_pids & new_pids, (old_pids, new_pids)
    assert set(answers_from_all(webapp.port, 200)) == new_pids
    assert set(load.pids) >= old_pids and set(load.pids) & new_pids, "the load saw the old instances, then the new ones"


def test_sigterm_stops_every_instance(webapp: Webapp) -> None:
    rt = webapp.rt
    procs = webapp.online()
    assert len(procs) == INSTANCES
    app_pids = {p["pid"] for p in procs}
    rt_pid = rt.runtime_pid()
    tree = [rt_pid, *(c.pid for c in psutil.Process(rt_pid).children(recursive=True))]
    assert len(tree) >= 1 + INSTANCES
    kill_timeout = parse_duration_ms(webapp.config["kill_timeout"]) / 1000

    t0 = time.monotonic()
    os.kill(rt_pid, signal.SIGTERM)
    code = rt.proc.wait(kill_timeout + 10)
    took = time.monotonic() - t0
    assert code == 0, rt.err()[-3000:]
    assert took < kill_timeout, f"took {took:.1f}s, kill_timeout is {kill_timeout}s"
    assert "SIGKILL" not in rt.err(), rt.err()[-3000:]
    # the runtime saw (reaped) every instance's exit before it exited itself
    stopped = set(re.findall(rf"^\[corral\] {APP}:(\d+) stopped: exited with code 0$", rt.err(), re.M))
    assert stopped == {str(p["id"]) for p in procs}, rt.err()[-3000:]
    # each instance stopped gracefully on SIGTERM (serve.py logs it, then exits 0)
    exiting = app_lines(webapp.error_log, "exiting")
    assert {r["app"]["pid"] for r in exiting if r["app"].get("signal") == "SIGTERM"} >= app_pids, exiting
    # nothing of the runtime's tree is left, not even a zombie
    wait_until(lambda: not [p for p in tree if os.path.exists(f"/proc/{p}")], timeout=5, message=f"every process of the runtime's tree {tree} gone")


# ------------------------------------------------------------------ make run (SQLite)


def make_run_command() -> tuple[list[str], Path]:
    """The command examples/run.sh ends with (`exec ...`), and the folder it runs it in."""
    lines = [ln.strip() for ln in RUN_SH.read_text().splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert lines[-1].startswith("exec "), f"run.sh no longer ends with an exec: {lines[-1]!r}"
    cd = [ln for ln in lines if ln.startswith("cd ")]
    assert cd, "run.sh has no cd"
    cwd = Path(shlex.split(cd[-1])[1].replace("$ROOT", str(ROOT)))
    argv = [a.replace("$ROOT", str(ROOT)) for a in shlex.split(lines[-1])[1:]]
    if not Path(argv[0]).exists() and Path(argv[0]).name == "corral-runtime":
        argv[0] = str(Path(sys.executable).parent / "corral-runtime")  # tests run from another venv
    return argv, cwd


def test_make_run_sqlite_ctrl_c(tmp_path: Path) -> None:
    if not port_free(8000):
        pytest.skip("127.0.0.1:8000 is busy: `make run`'s ecosystem listens there")
    argv, cwd = make_run_command()
    assert Path(argv[0]).name == "corral-runtime" and argv[1:] == ["ecosystem.toml", "--only", "webapp", "--env", "production"], argv
    env = dict(os.environ, CORRAL_HOME=str(tmp_path / "run-home"))  # what run.sh exports
    env.pop("DATABASE_URL", None)  # the default: SQLite in examples/webapp/data (git-ignored)
    env.pop("VIRTUAL_ENV", None)  # a fresh shell: serve.py runs with corral-runtime's own venv
    err_path = tmp_path / "runtime.err"
    with (tmp_path / "runtime.out").open("wb") as out, err_path.open("wb") as err:
        # its own session: like the foreground process group a terminal sends Ctrl-C to
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
    app_pids: set[int] = set()
    try:
        try:
            seen = answers_from_all(8000, 200, timeout=40)
        except AssertionError as e:
            stderr_text = err_path.read_text(errors="replace")
            if proc.poll() is not None and "Address already in use" in stderr_text:
                pytest.skip("127.0.0.1:8000 was taken between the check and corral-runtime's bind")
            raise AssertionError(f"{e}\nexit: {proc.poll()}\nruntime stderr:\n{stderr_text[-4000:]}") from None
        app_pids = set(seen)
        # the answers came from this runtime's own instances (its children: no PID namespace here)
        assert app_pids == {c.pid for c in psutil.Process(proc.pid).children()}, app_pids
        for body in seen.values():
            assert body["database"] == "up", body
        info = get(8000, "/api/info")[1]
        assert "sqlite" in json.dumps(info).lower(), info
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        assert proc.wait(20) == 0, err_path.read_text(errors="replace")[-3000:]
        assert not [p for p in app_pids if pid_alive(p)]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for pid in app_pids:  # never leave an instance behind
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
