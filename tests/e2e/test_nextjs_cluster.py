"""The design document's Next.js 15 setup, unchanged, in cluster mode with Corral as Node's primary.

`tests/fixtures/nextjs/` is a Next.js 15 App Router app with `/api/health` and the design
document's `ecosystem.config.js` (cluster mode, 4 instances, `node_args:
--max-old-space-size=3072`, `env_production` with `PORT: 3000`, JSON logs under `logs/`).
Next.js is installed from npm into tests/.cache/nextjs and built once per content of the
fixture (later runs reuse the build).

`corral start ecosystem.config.js --env production` (the port replaced by a free one):
the daemon acts as Node's cluster primary (`corral.daemon.nodelink` / `nodeipc`), so the
app never names a socket, yet the 4 instances answer on one port, and 3 `corral reload`s
under load fail no request.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from corral.config.loader import build_argv, load_ecosystem
from tests.conftest import ROOT, Corral, free_port, wait_until

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


def test_design_document_nextjs_cluster(nextjs_build: Path, corral: Corral) -> None:
    port = free_port()
    eco = nextjs_build / "ecosystem.config.js"
    eco.write_text((FIXTURE / "ecosystem.config.js").read_text().replace("PORT: 3000", f"PORT: {port}"))
    shutil.rmtree(nextjs_build / "logs", ignore_errors=True)
    app = load_ecosystem(eco, env_name="production").apps[0]
    assert app.exec_mode == "cluster" and app.instances == 4 and not app.listen
    argv = build_argv(app)
    assert argv[1] == "--max-old-space-size=3072" and argv[-1] == "start"
    corral.env["NEXT_TELEMETRY_DISABLED"] = "1"
    corral.run("start", str(eco), "--env", "production", cwd=nextjs_build, timeout=120)
    wait_until(lambda: [p["status"] for p in corral.jlist()] == ["online"] * 4, timeout=90)
    pids = {p["pid"] for p in corral.jlist()}

    # Next.js rewrites its process title, so the heap flag is read from node itself
    # (process.execArgv, in /api/health's answer) for each instance that answers.
    answers: dict[int, dict[str, object]] = {}

    def two_answered() -> bool:
        answer = health(port)
        answers[int(answer["pid"])] = answer  # type: ignore[call-overload]
        return len(answers) >= 2

    wait_until(two_answered, timeout=30)
    assert set(answers) <= pids
    for answer in answers.values():
        assert answer["execArgv"] == ["--max-old-space-size=3072"]

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

    loader = threading.Thread(target=load)
    loader.start()
    try:
        wait_until(lambda: served[0] > 20, timeout=20)
        for _round in range(3):
            corral.run("reload", "web", timeout=180)
        seen = served[0]
        wait_until(lambda: served[0] > seen + 20, timeout=20)
    finally:
        stop.set()
        loader.join(15)
    assert failures == [], failures[:5]
    procs = corral.jlist()
    assert [p["status"] for p in procs] == ["online"] * 4
    assert pids.isdisjoint({p["pid"] for p in procs})
    logs = nextjs_build / "logs"
    records = [json.loads(line) for f in logs.glob("web-out*.log") for line in f.read_text().splitlines() if line.strip()]
    assert records and all(r["app_name"] == "web" for r in records)
