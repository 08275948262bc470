"""The reference web app's container files: Dockerfile, Dockerfile.dockerignore, compose.yaml, ecosystem.config.js.

Docker cannot run here, so the files are parsed and their essentials checked, and
then the commands the image runs are run as they are: corral-runtime with the
Dockerfile's ENTRYPOINT and CMD, from the web app's folder, until the HEALTHCHECK
command passes; /api/health answers; SIGTERM ends everything with exit 0.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from corral.config.loader import load_ecosystem
from corral.core.appspec import to_wire
from tests.conftest import ROOT, pid_alive, wait_until

WEBAPP = ROOT / "examples" / "webapp"
DOCKERFILE = WEBAPP / "Dockerfile"
COMPOSE = WEBAPP / "compose.yaml"
PORT = 8000


# ---------------------------------------------------------------- a small Dockerfile parser


@dataclass
class Instruction:
    keyword: str  # upper case
    args: str  # the rest of the (joined) line
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, else None."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), self
        return value


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined; comments and parser directives dropped."""
    out: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comments inside a continued instruction are dropped by Docker
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        joined = " ".join(p for p in pending if p)
        pending = []
        keyword, _, args = joined.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {len(found)}"
    return found[0]


def env_of(instructions: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for i in instructions:
        if i.keyword == "ENV":
            for word in shlex.split(i.args):
                key, sep, value = word.partition("=")
                assert sep, f"ENV in KEY=value form, line {i.line}"
                env[key] = value
    return env


def healthcheck_argv(instructions: list[Instruction]) -> list[str]:
    hc = only(instructions, "HEALTHCHECK")
    options, sep, command = hc.args.partition("CMD ")
    assert sep, "HEALTHCHECK needs a CMD"
    assert all(o.startswith("--") for o in options.split())
    argv = json.loads(command) if command.strip().startswith("[") else shlex.split(command)
    assert isinstance(argv, list)
    return argv


def test_parser_handles_continuations_and_comments() -> None:
    text = "# c\nFROM x\nRUN a \\\n  # inside\n  && b\nCMD [\"a\", \"b\"]\n"
    got = parse_dockerfile(text)
    assert [(i.keyword, i.args) for i in got] == [("FROM", "x"), ("RUN", "a && b"), ("CMD", '["a", "b"]')]
    assert got[2].exec_form() == ["a", "b"]


# ---------------------------------------------------------------- the Dockerfile's essentials


def test_dockerfile_essentials(dockerfile: list[Instruction]) -> None:
    assert only(dockerfile, "FROM").args == "python:3.11-slim"
    user = only(dockerfile, "USER").args.split(":")[0]
    assert user not in ("root", "0", "")
    assert only(dockerfile, "WORKDIR").args == "/app"
    assert env_of(dockerfile)["CORRAL_HOME"] == "/app/.corral"
    assert str(PORT) in only(dockerfile, "EXPOSE").args.split()
    assert healthcheck_argv(dockerfile) == ["corral", "healthcheck"]
    assert only(dockerfile, "ENTRYPOINT").exec_form() == ["corral-runtime"]
    assert only(dockerfile, "CMD").exec_form() == ["ecosystem.toml", "--only", "webapp", "--env", "production", "--json"]
    # USER comes after every RUN: the build runs as root, the app does not
    last_run = max(i.line for i in dockerfile if i.keyword == "RUN")
    assert only(dockerfile, "USER").line > last_run
    runs = " ".join(i.args for i in dockerfile if i.keyword == "RUN")
    assert "pip install /tmp/corral" in runs  # Corral from this repository's pyproject + src
    assert "pip install -r /tmp/webapp-requirements.txt" in runs


def copy_sources(dockerfile: list[Instruction]) -> list[tuple[list[str], str]]:
    out = []
    for i in dockerfile:
        if i.keyword in ("COPY", "ADD"):
            words = [w for w in shlex.split(i.args) if not w.startswith("--")]
            out.append((words[:-1], words[-1]))
    return out


def test_copy_sources_exist_in_the_build_context(dockerfile: list[Instruction]) -> None:
    """The context is the repository root: `docker build -f examples/webapp/Dockerfile .`"""
    sources = copy_sources(dockerfile)
    copied = {s for srcs, _ in sources for s in srcs}
    assert {"pyproject.toml", "README.md", "src", "examples/webapp/ecosystem.toml", "examples/webapp/serve.py", "examples/webapp/webapp"} <= copied
    for srcs, _ in sources:
        for src in srcs:
            assert (ROOT / src).exists(), f"COPY {src}: not in the repository root"
    # the image's ecosystem file is where the CMD's relative path finds it: WORKDIR /app
    assert any("examples/webapp/ecosystem.toml" in srcs and dest in ("/app/", "./", ".") for srcs, dest in sources)


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last pattern matching the path or a parent decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        if any(fnmatch.fnmatchcase(c, pat) for c in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_what_is_copied_and_drops_the_rest(dockerfile: list[Instruction]) -> None:
    # BuildKit reads <Dockerfile>.dockerignore next to the Dockerfile (the build context is the repo root)
    lines = (WEBAPP / "Dockerfile.dockerignore").read_text().splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    for srcs, _ in copy_sources(dockerfile):
        for src in srcs:
            assert not dockerignored(src, patterns), src
    for kept in ("src/corral/cli/__init__.py", "examples/webapp/webapp/app.py", "examples/webapp/webapp/templates/base.html"):
        assert not dockerignored(kept, patterns), kept
    for dropped in (".git/config", ".venv/bin/python", "examples/webapp/data/webapp.db", "examples/webapp/logs/webapp-out.log", "src/corral/__pycache__/cli.cpython-311.pyc", "src/corral.egg-info/PKG-INFO", "tests/conftest.py", "bench/.work/x"):
        assert dockerignored(dropped, patterns), dropped


def test_listen_rewrite_makes_the_image_listen_on_every_interface(dockerfile: list[Instruction], tmp_path: Path) -> None:
    """The RUN that edits ecosystem.toml, run on a copy: only webapp's listen changes."""
    rewrites = [i for i in dockerfile if i.keyword == "RUN" and "ecosystem.toml" in i.args]
    assert len(rewrites) == 1
    shutil.copy(WEBAPP / "ecosystem.toml", tmp_path / "ecosystem.toml")
    (tmp_path / "serve.py").write_text("")
    (tmp_path / "migrate.py").write_text("")
    proc = subprocess.run(["sh", "-c", rewrites[0].args], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    original = {a.name: to_wire(a) for a in load_ecosystem(WEBAPP / "ecosystem.toml", env_name="production").apps}
    image = {a.name: to_wire(a) for a in load_ecosystem(tmp_path / "ecosystem.toml", env_name="production").apps}
    assert original.keys() == image.keys()
    paths = ("cwd", "script", "out_file", "error_file", "log_file", "pid_file")
    for name in original:
        before = {k: v for k, v in original[name].items() if k not in paths}
        after = {k: v for k, v in image[name].items() if k not in paths}
        if name == "webapp":
            assert before.pop("listen") == ["127.0.0.1:8000"]
            assert after.pop("listen") == ["0.0.0.0:8000"]
        assert before == after
    # and the build fails, rather than shipping a loopback-only image, if the line moves
    (tmp_path / "ecosystem.toml").write_text((WEBAPP / "ecosystem.toml").read_text().replace('listen = "127.0.0.1:8000"', 'listen = "127.0.0.1:8001"'))
    assert subprocess.run(["sh", "-c", rewrites[0].args], cwd=tmp_path, capture_output=True, timeout=30).returncode != 0


# ---------------------------------------------------------------- compose.yaml


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_compose_essentials(compose: dict[str, Any], dockerfile: list[Instruction]) -> None:
    services = compose["services"]
    assert set(services) == {"webapp", "db"}
    web, db = services["webapp"], services["db"]
    # built from the repository root with this Dockerfile
    context = (COMPOSE.parent / web["build"]["context"]).resolve()
    assert context == ROOT
    assert (context / web["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert web["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert web["healthcheck"]["test"] == ["CMD", *healthcheck_argv(dockerfile)]
    assert web["ports"] == [f"{PORT}:{PORT}"]
    url = web["environment"]["DATABASE_URL"]
    assert url.startswith("postgresql://") and "@db:5432/" in url
    # the stop grace covers the apps' kill_timeout
    kill_ms = max(a.kill_timeout for a in load_ecosystem(WEBAPP / "ecosystem.toml", env_name="production", only=["webapp"]).apps)
    assert int(str(web["stop_grace_period"]).rstrip("s")) * 1000 > kill_ms

    assert db["image"] == "postgres:16"
    test = db["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL") and "pg_isready" in " ".join(test[1:])
    volume, _, target = db["volumes"][0].partition(":")
    assert target == "/var/lib/postgresql/data"
    assert volume in compose["volumes"]
    # the app and the database agree on user, password and database name
    env = db["environment"]
    assert env["POSTGRES_PASSWORD"] in url and f"//{env['POSTGRES_USER']}:" in url and url.endswith("/" + env["POSTGRES_DB"])


# ---------------------------------------------------------------- ecosystem.config.js


@pytest.mark.parametrize("env_name", [None, "production", "development"])
def test_pm2_file_loads_to_the_same_apps(env_name: str | None) -> None:
    toml = load_ecosystem(WEBAPP / "ecosystem.toml", env_name=env_name)
    js = load_ecosystem(WEBAPP / "ecosystem.config.js", env_name=env_name)
    assert js.warnings == [] and js.notices == []
    assert js.apps == toml.apps
    assert js.file != toml.file


# ---------------------------------------------------------------- the image's commands, run


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def program(argv: list[str]) -> list[str]:
    """The image runs programs from PATH: here, the ones next to this Python."""
    local = Path(sys.executable).parent / argv[0]
    return [str(local) if local.exists() else argv[0], *argv[1:]]


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.mark.slow
def test_image_commands_run_healthy_and_stop_cleanly(dockerfile: list[Instruction], tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    pytest.importorskip("sqlalchemy")
    if not port_free(PORT):
        pytest.skip(f"port {PORT} is taken, and ecosystem.toml listens on 127.0.0.1:{PORT} (fixed)")
    entrypoint = only(dockerfile, "ENTRYPOINT").exec_form()
    cmd = only(dockerfile, "CMD").exec_form()
    assert entrypoint and cmd
    env = dict(os.environ)
    env.update(env_of(dockerfile))
    env["CORRAL_HOME"] = str(tmp_path / "corral-home")  # ENV says /app/.corral
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'notes.db'}"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("NOTIFY_SOCKET", None)
    out, err = (tmp_path / "runtime.out").open("wb"), (tmp_path / "runtime.err").open("wb")
    runtime = subprocess.Popen(program(entrypoint + cmd), cwd=WEBAPP, env=env, stdout=out, stderr=err)
    pids: set[int] = set()
    try:

        def healthy_or_ended() -> bool:
            if runtime.poll() is not None:
                return True
            proc = subprocess.run(program(healthcheck_argv(dockerfile)), cwd=WEBAPP, env=env, capture_output=True, text=True, timeout=30)
            return proc.returncode == 0

        wait_until(healthy_or_ended, timeout=60, interval=0.25, message="corral healthcheck (the HEALTHCHECK command) exits 0")
        if runtime.poll() is not None:
            errors = (tmp_path / "runtime.err").read_text()
            if "Address already in use" in errors:
                pytest.skip(f"127.0.0.1:{PORT} was taken between the check and corral-runtime's bind")
            raise AssertionError(f"corral-runtime exited {runtime.returncode}: {errors[-2000:]}")
        status, body = get(f"http://127.0.0.1:{PORT}/api/health")
        assert status == 200 and body["status"] == "ok" and body["database"] == "up", body
        listed = json.loads(subprocess.run(program(["corral", "jlist"]), env=env, capture_output=True, text=True, timeout=30).stdout)
        # the one-shot migration ran first and exited 0; then the 4 web instances
        migrate = [p for p in listed if p["name"] == "migrate"]
        assert [p["status"] for p in migrate] == ["stopped"] and migrate[0]["exit_code"] == 0, migrate
        assert [(p["name"], p["status"]) for p in listed if p["name"] != "migrate"] == [("webapp", "online")] * 4
        pids = {runtime.pid} | {p.pid for p in psutil.Process(runtime.pid).children(recursive=True)}
        assert len(pids) >= 5  # corral-runtime and 4 instances

        runtime.send_signal(signal.SIGTERM)
        assert runtime.wait(timeout=30) == 0
        wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=10, message="every process gone")
        assert not (tmp_path / "corral-home" / "corral.sock").exists()
        assert port_free(PORT)
        events = [json.loads(line) for line in (tmp_path / "runtime.err").read_text().splitlines() if line.startswith("{")]
        stopped = [e for e in events if e.get("event") == "stopped"]
        assert len(stopped) == 4 and all("code 0" in e["message"] for e in stopped)
    finally:
        if runtime.poll() is None:
            with contextlib.suppress(psutil.Error):  # its instances too, even when the test failed early
                pids |= {p.pid for p in psutil.Process(runtime.pid).children(recursive=True)}
            runtime.terminate()
            try:
                runtime.wait(30)
            except subprocess.TimeoutExpired:
                runtime.kill()
                runtime.wait(10)
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        out.close()
        err.close()
