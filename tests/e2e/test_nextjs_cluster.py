"""The design document's Next.js 15 setup, unchanged, in cluster mode with Corral as Node's primary.

`tests/fixtures/nextjs/` is a Next.js 15 App Router app with `/api/health` and the design
document's `ecosystem.config.js` (cluster mode, 4 instances, `node_args:
--max-old-space-size=3072`, `env_production` with `PORT: 3000`, JSON logs under `logs/`).
Next.js is installed from npm into tests/.cache/nextjs and built once per content of the
fixture (later runs reuse the build).

The file is read by Corral's loader with `--env production` (the port replaced by a free
one); each instance is spawned from the loader's command line and served by the daemon's
Node cluster primary (`corral.daemon.nodelink` / `nodeipc`): the app never names a
socket, yet the 4 instances answer on one port, and rolling replacements under load fail
no request.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from corral.config.loader import build_argv, load_ecosystem
from corral.daemon import nodeipc, nodelink
from tests.conftest import ROOT, free_port

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")]

FIXTURE = ROOT / "tests" / "fixtures" / "nextjs"
CACHE = ROOT / "tests" / ".cache" / "nextjs"
APP_FILES = ("package.json", "next.config.js", "app")


def _fixture_hash() -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in FIXTURE.rglob("*") if p.is_file() and p.name != "ecosystem.config.js"):
        h.update(str(path.relative_to(FIXTURE)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


@pytest.fixture(scope="module")
def nextjs_build() -> Path:
    """A built copy of the fixture app with node_modules (npm install + next build, cached)."""
    modules = CACHE / "node_modules"
    if not (modules / "next" / "dist" / "bin" / "next").exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed")
        CACHE.mkdir(parents=True, exist_ok=True)
        res = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(CACHE),
             "next@15", "react@19", "react-dom@19"],
            capture_output=True, text=True, timeout=600,
        )
        if res.returncode != 0:
            pytest.skip(f"npm install next failed (offline?): {res.stderr.strip()[-300:]}")
    build = CACHE / f"build-{_fixture_hash()}"
    if not (build / ".next" / "BUILD_ID").exists():
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
        for name in APP_FILES:
            src = FIXTURE / name
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, build / name)
        (build / "node_modules").symlink_to(modules)
        env = {**os.environ, "NEXT_TELEMETRY_DISABLED": "1"}
        res = subprocess.run(
            ["node", "node_modules/next/dist/bin/next", "build"],
            cwd=build, env=env, capture_output=True, text=True, timeout=600,
        )
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return build


def health(port: int) -> dict[str, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/api/health")
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, body
        return json.loads(body)  # type: ignore[no-any-return]
    finally:
        conn.close()


class Running:
    def __init__(self, proc: subprocess.Popen[bytes], channel: nodeipc.NodeChannel) -> None:
        self.proc = proc
        self.channel = channel
        self.events: list[nodeipc.Event] = []

    @property
    def listening(self) -> bool:
        return any(isinstance(e, nodeipc.Listening) for e in self.events)


def test_design_document_nextjs_cluster(nextjs_build: Path) -> None:
    port = free_port()
    eco = nextjs_build / "ecosystem.config.js"
    eco.write_text((FIXTURE / "ecosystem.config.js").read_text().replace("PORT: 3000", f"PORT: {port}"))
    app = load_ecosystem(eco, env_name="production").apps[0]
    assert app["exec_mode"] == "cluster" and app["instances"] == 4
    argv = build_argv(app)
    assert argv[1] == "--max-old-space-size=3072" and argv[-1] == "start"
    assert app["log_type"] == "json" and app["out_file"] == str(nextjs_build / "logs" / "web-out.log")
    failures: list[str] = []
    served = [0]
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                health(port)
                served[0] += 1
            except Exception as e:  # noqa: BLE001 - every failure counts
                failures.append(repr(e))

    async def main() -> None:
        sockets = nodelink.AppNodeSockets(backlog=app["backlog"])
        live: list[Running] = []
        everyone: list[Running] = []
        next_id = [0]

        def spawn(index: int) -> Running:
            pending = nodelink.prepare(app, next_id[0])
            assert pending is not None
            next_id[0] += 1
            env = {**os.environ, **app["env"], **pending.env, app["instance_var"]: str(index), "NEXT_TELEMETRY_DISABLED": "1"}
            proc = subprocess.Popen(argv, cwd=app["cwd"], env=env, pass_fds=[pending.child_fd],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            holder: list[Running] = []
            channel = pending.attach(sockets, on_event=lambda e: holder[0].events.append(e), on_closed=lambda _r: None)
            run = Running(proc, channel)
            holder.append(run)
            everyone.append(run)
            return run

        async def until(predicate: object, timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while not predicate():  # type: ignore[operator]
                assert time.monotonic() < deadline, "timed out"
                await asyncio.sleep(0.05)

        try:
            live.extend(spawn(i) for i in range(4))
            await until(lambda: all(r.listening for r in live), 60)
            assert len(sockets.sockets) == 1
            # Next.js rewrites its process title, so the heap flag is read from node itself
            # (process.execArgv, in /api/health's answer) for each instance that answers.
            answers: dict[int, dict[str, object]] = {}
            deadline = time.monotonic() + 30
            while len(answers) < 2:
                assert time.monotonic() < deadline, answers
                answer = await asyncio.to_thread(health, port)
                answers[int(answer["pid"])] = answer  # type: ignore[call-overload]
            assert set(answers) <= {r.proc.pid for r in live}
            for answer in answers.values():
                assert answer["execArgv"] == ["--max-old-space-size=3072"]
            loader = threading.Thread(target=load)
            loader.start()
            try:
                await until(lambda: served[0] > 20, 20)
                for _round in range(3):  # rolling reloads: one instance at a time
                    for index, old in enumerate(list(live)):
                        new = spawn(index)
                        await until(lambda new=new: new.listening, 60)
                        live[index] = new
                        old.proc.send_signal(2)  # PM2's kill signal: SIGINT
                        rc = await asyncio.to_thread(old.proc.wait, 10)
                        assert rc == 0
                        old.channel.close()
                seen = served[0]
                await until(lambda: served[0] > seen + 20, 20)
            finally:
                stop.set()
                await asyncio.to_thread(loader.join, 15)
        finally:
            for run in everyone:
                if run.proc.poll() is None:
                    run.proc.kill()
                    run.proc.wait()
                run.channel.close()
            sockets.close()

    asyncio.run(main())
    assert failures == [], failures[:5]
    assert served[0] > 50
