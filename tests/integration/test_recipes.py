"""The cluster-mode recipes of docs/cluster.md, each run for real under Corral.

Every recipe runs as a 2-instance cluster app on one shared loopback socket
(bound once by the daemon, passed the systemd way).  Each test checks that the
server took the inherited socket (both instances answer on the port, and
``LISTEN_PID`` was the instance's own pid), then runs ``corral reload`` while
closed-loop clients (a new TCP connection per request) count failures: a
recipe is right when no request fails.  One client sends its request at once,
a few send it 50 ms after connecting (a real network, TLS): that makes the one
way a server can lose a request on a shared socket, closing a connection it
accepted but has not read yet, show at every reload instead of now and then,
so the recipes of servers that do it are strict xfails, not flaky tests.
The apps are in tests/fixtures/recipes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Corral, pid_alive, proc_environ, write
from tests.support.httpload import Load, http_request

RECIPES = Path(__file__).resolve().parent.parent / "fixtures" / "recipes"
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def corral(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corral]:
    """One daemon for the whole module (each test deletes its app)."""
    base = tmp_path_factory.mktemp("recipes")
    work = base / "work"
    work.mkdir()
    c = Corral(base / "home", work)
    # Apps run from the test venv: `uvicorn`, `gunicorn`, `hypercorn` on PATH, *.py with its python.
    c.env["PATH"] = f"{BIN}{os.pathsep}{c.env.get('PATH', '')}"
    c.env["VIRTUAL_ENV"] = str(BIN.parent)
    try:
        yield c
    finally:
        c.shutdown()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def http_get(port: int, timeout: float = 5.0, send_delay: float = 0.0) -> tuple[int, bytes]:
    """One request on a new connection: (status, body); raises OSError when refused or reset."""
    reply = http_request((HOST, port), timeout=timeout, send_delay=send_delay)
    return reply.status, reply.body


def get_json(port: int) -> dict[str, Any]:
    status, body = http_get(port)
    assert status == 200, body[:500]
    out: dict[str, Any] = json.loads(body)
    return out


def instance_pids(corral: Corral, name: str) -> dict[int, int]:
    """{instance index: pid} of the app's online instances."""
    procs = [p for p in corral.jlist() if p["name"] == name]
    assert all(p["status"] == "online" for p in procs), procs
    return {p["instance"]: p["pid"] for p in procs}


def owner(answer: dict[str, Any], pids: set[int]) -> int | None:
    """The instance that served an answer: the app's own pid, or its parent (gunicorn's worker)."""
    for pid in (answer["pid"], answer["ppid"]):
        if pid in pids:
            return int(pid)
    return None


def answers_from_every_instance(
    port: int, pids: set[int], timeout: float = 20.0
) -> dict[int, dict[str, Any]]:
    """Request (a new connection each time) until every instance has answered; bounded.

    With one shared socket the instance that accepts is whichever is idle, so
    a few tries may be needed; a connection refused while the apps start is retried.
    """
    seen: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    tries = 0
    while not pids <= set(seen):
        assert time.monotonic() < deadline, (
            f"only {sorted(seen)} of {sorted(pids)} answered in {timeout}s ({tries} requests)"
        )
        tries += 1
        try:
            answer = get_json(port)
        except OSError:
            time.sleep(0.05)
            continue
        who = owner(answer, pids)
        assert who is not None, (
            f"answered by a process that is no instance: {answer} (instances: {sorted(pids)})"
        )
        seen[who] = answer
    return seen


CLOSES_JUST_ACCEPTED = (
    "on SIGTERM, {server} closes the connections it accepted whose request it has not read yet "
    "(the race of Kludex/uvicorn#2757): a client whose request follows its connection by a few ms "
    "gets an empty reply or a reset; no setting avoids it (the graceful timeout only covers requests "
    "already read). The fix: stop listening, wait a moment, then shut down. {detail}"
)
UVICORN_XFAIL = CLOSES_JUST_ACCEPTED.format(
    server="uvicorn", detail="Lossless recipe: python -m corral.contrib.uvicorn"
)
# `python -m corral.contrib.uvicorn`: the uvicorn command with that fix, and READY=1 once started
CONTRIB_UVICORN = ["-m", "corral.contrib.uvicorn"]
CONTRIB_UVICORN_CONFIG = {"wait_ready": True, "listen_timeout": 10000}


@dataclass
class Recipe:
    name: str
    script: str
    args: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    # the app runs in the process Corral started (not in a worker it forks),
    # so it sees LISTEN_PID itself; gunicorn unsets it once it took the sockets
    in_process: bool = True
    needs: tuple[str, ...] = ()
    xfail: str | None = None


# gunicorn >= 25.1 opens a control socket at one default path for every instance: off
GUNICORN = ["-w", "1", "--graceful-timeout", "5", "--no-control-socket"]
GUNICORN_CONFIG = {"wait_ready": True, "listen_timeout": 15000, "kill_timeout": 8000}

RECIPES_UNDER_TEST = [
    Recipe(
        "uvicorn",
        "uvicorn",
        ["asgi_app:app", "--fd", "{fd}", "--no-access-log"],
        needs=("uvicorn",),
        xfail=UVICORN_XFAIL,
    ),
    Recipe(
        "uvicorn-contrib",
        "python",
        [*CONTRIB_UVICORN, "asgi_app:app", "--fd", "{fd}", "--no-access-log"],
        CONTRIB_UVICORN_CONFIG,
        needs=("uvicorn",),
    ),
    Recipe(
        "gunicorn",
        "gunicorn",
        ["wsgi_app:app", "-k", "sync", *GUNICORN],
        GUNICORN_CONFIG,
        in_process=False,
        needs=("gunicorn",),
    ),
    Recipe(
        "gunicorn-uvicorn-worker",
        "gunicorn",
        ["asgi_app:app", "-k", "uvicorn.workers.UvicornWorker", *GUNICORN],
        GUNICORN_CONFIG,
        in_process=False,
        needs=("gunicorn", "uvicorn"),
        xfail=UVICORN_XFAIL + " (not for UvicornWorker, which runs uvicorn's own shutdown)",
    ),
    Recipe(
        "hypercorn",
        "hypercorn",
        # --workers 0: serve in the process Corral started (with 1, a worker process does,
        # and the SIGTERM Corral sends to the process group kills it at once)
        ["asgi_app:app", "--bind", "fd://{fd}", "--workers", "0", "--graceful-timeout", "5"],
        needs=("hypercorn",),
        xfail=CLOSES_JUST_ACCEPTED.format(
            server="hypercorn",
            detail="hypercorn even closes idle connections (context.terminated) before it stops listening",
        ),
    ),
    Recipe(
        "aiohttp",
        "aiohttp_app.py",
        config={"wait_ready": True, "listen_timeout": 10000},
        needs=("aiohttp",),
        xfail=CLOSES_JUST_ACCEPTED.format(
            server="web.run_app",
            detail="Lossless recipe: aiohttp_graceful.py (AppRunner + SockSite)",
        ),
    ),
    Recipe(
        "aiohttp-graceful",
        "aiohttp_graceful.py",
        config={"wait_ready": True, "listen_timeout": 10000},
        needs=("aiohttp",),
    ),
    Recipe("flask-waitress", "waitress_app.py", needs=("waitress", "flask")),
    Recipe(
        "flask-waitress-plain",
        "waitress_plain.py",
        needs=("waitress", "flask"),
        xfail="waitress has no graceful stop: SIGTERM (Python's default action) kills it with the connections "
        "it accepted and the requests in flight; recipe: waitress_app.py, a SIGTERM handler that drains",
    ),
    Recipe(
        "flask-gunicorn",
        "gunicorn",
        ["flask_app:app", *GUNICORN],
        GUNICORN_CONFIG,
        in_process=False,
        needs=("gunicorn", "flask"),
    ),
    Recipe(
        "django-gunicorn",
        "gunicorn",
        ["django_site:application", *GUNICORN],
        GUNICORN_CONFIG,
        in_process=False,
        needs=("gunicorn", "django"),
    ),
    Recipe(
        "django-uvicorn",
        "python",
        [*CONTRIB_UVICORN, "django_site:asgi_application", "--fd", "{fd}", "--no-access-log"],
        CONTRIB_UVICORN_CONFIG,
        needs=("uvicorn", "django"),
    ),
    Recipe("node", "server.js", needs=("node",)),
]


def recipe_params() -> list[Any]:
    out = []
    for recipe in RECIPES_UNDER_TEST:
        marks = [pytest.mark.xfail(strict=True, reason=recipe.xfail)] if recipe.xfail else []
        out.append(pytest.param(recipe, id=recipe.name, marks=marks))
    return out


def skip_unless_installed(recipe: Recipe) -> None:
    for need in recipe.needs:
        if need == "node":
            if shutil.which("node") is None:
                pytest.skip("node is not installed")
        else:
            pytest.importorskip(need)


def app_config(recipe: Recipe, port: int) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": recipe.name,
        "script": recipe.script,
        "args": recipe.args,
        "cwd": str(RECIPES),
        "exec_mode": "cluster",
        "instances": 2,
        "listen": f"{HOST}:{port}",
        "kill_signal": "SIGTERM",
        "kill_timeout": 5000,
        "env": {"RECIPE_SERVER": recipe.name},
    }
    config.update(recipe.config)
    return config


def toml(config: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return json.dumps(v)

    return "[[apps]]\n" + "".join(f"{k} = {value(v)}\n" for k, v in config.items())


SLOW_CLIENTS = 8
# below the drain delay of the lossless recipes (0.1 s for corral.contrib.uvicorn)
SEND_DELAY = 0.05
RELOADS = 3


@pytest.mark.parametrize("recipe", recipe_params())
def test_recipe_serves_the_shared_socket_and_reloads_without_loss(
    corral: Corral, recipe: Recipe
) -> None:
    skip_unless_installed(recipe)
    port = free_port()
    file = write(corral.cwd / f"{recipe.name}.toml", toml(app_config(recipe, port)))
    try:
        corral.run("start", str(file), "--wait")  # serving once ready
        before = instance_pids(corral, recipe.name)
        assert sorted(before) == [0, 1]
        pids = set(before.values())

        # Corral handed the socket over the systemd way, LISTEN_PID being the instance's own pid
        for pid in pids:
            env = proc_environ(pid)
            assert env.get("LISTEN_PID") == str(pid), env
            assert env.get("LISTEN_FDS") == "1" and env.get("LISTEN_FDNAMES") == "http", env

        # both instances serve the one socket Corral bound (none bound a port of its own)
        answers = answers_from_every_instance(port, pids)
        for pid, answer in answers.items():
            assert answer["server"] == recipe.name, answer
            if recipe.in_process:
                assert answer["pid"] == pid and answer["listen_pid"] == str(pid), answer
            else:
                assert answer["ppid"] == pid, answer

        # Reload under load: one client sends its request at once, a few send it
        # SEND_DELAY after connecting, so that at any moment some connections are
        # accepted but not yet read, as on a real network. A lossless recipe goes
        # through every reload; the first one that fails a request ends the loop.
        load = Load(
            port,
            send_delays=[0.0] + [SEND_DELAY] * SLOW_CLIENTS,
            served=3,
            max_seconds=60.0,
            max_requests=50_000,
        )
        with load:
            ok_before = load.ok
            for _ in range(RELOADS):
                corral.run("reload", recipe.name)
                load.more(3 * (1 + SLOW_CLIENTS))
                if load.failed:
                    break
        failures = load.failures
        ok = load.ok
        assert failures == [], (
            f"{load.failed} of {ok + load.failed} requests failed during the reload: {failures[:5]}"
        )
        assert ok > ok_before

        after = instance_pids(corral, recipe.name)
        assert sorted(after) == [0, 1]
        assert set(after.values()).isdisjoint(pids), (before, after)
        assert not any(pid_alive(pid) for pid in pids)
        answers_from_every_instance(port, set(after.values()))
    finally:
        corral.run("delete", recipe.name, check=False)
