"""Every fixture in tests/fixtures/pm2-corpus/ read by PM2 itself and by Corral, compared.

The fixtures are written for Corral (not copied): each holds a form or value met in
real PM2 ecosystem files from public repositories (docs/pm2-files.md lists them).
PM2 is installed from npm into tests/.cache/pm2 once; `tests/pm2ref/pm2_read.js`
runs PM2's own config code (Common.parseConfig, verifyConfs, resolveAppAttributes,
mergeEnvironmentVariables) as `pm2 start <file> [--env production]` does.

Compared per app: the app count and names, script, args, interpreter (by program),
interpreter args, exec_mode, instances (as run on this machine) and env.  Every
difference left is deliberate, listed in DELIBERATE with the reason given in
docs/pm2-files.md; the rest must be identical, and the share of identical readings
must stay at or above 95 %.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from corral.config.keys import resolve_instances
from corral.config.loader import load_ecosystem
from corral.core.errors import ConfigError
from corral.node import program_kind
from tests.conftest import ROOT

CORPUS = ROOT / "tests" / "fixtures" / "pm2-corpus"
CACHE = ROOT / "tests" / ".cache" / "pm2"
PM2_PKG = CACHE / "node_modules" / "pm2"
READER = ROOT / "tests" / "pm2ref" / "pm2_read.js"
SUFFIXES = (".js", ".cjs", ".mjs", ".json", ".yml", ".yaml")
FIXTURES = sorted(p for p in CORPUS.iterdir() if p.is_file() and p.name.startswith("c") and p.suffix in SUFFIXES)
ENVS = (None, "production")
CPUS = os.cpu_count() or 1

# (fixture, env or "*", field) -> why Corral reads it differently (docs/pm2-files.md).
DELIBERATE: dict[tuple[str, str, str], str] = {
    ("c14-esm-default.config.mjs", "*", "error"): "PM2 7 require()s an .mjs file: it finds no `apps` beside `default`; Corral reads the default export",
    ("c45-env-null-undefined.config.js", "*", "env"): "a null env value is the string 'null' in PM2's child; Corral sets it empty",
    ("c46-args-number.config.js", "*", "error"): "PM2's schema refuses a number as args; Corral takes it as one argument",
    ("c28-python-module.config.js", "*", "error"): "PM2 cannot run `python -m module` (script not found); Corral can",
    ("c51-export-default-in-cjs.config.cjs", "*", "error"): "PM2 require()s a .cjs file: `export default` is a SyntaxError; Corral reads it",
}

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


def minimal_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root")}


@pytest.fixture(scope="session")
def pm2_package() -> Path:
    if not (PM2_PKG / "lib" / "Common.js").exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed: PM2 cannot be installed (apt-get install npm)")
        CACHE.mkdir(parents=True, exist_ok=True)
        res = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(CACHE), "pm2@7"],
            capture_output=True, text=True, timeout=600,
        )
        if res.returncode != 0:
            pytest.skip(f"npm install pm2 failed (offline?): {res.stderr.strip()[-300:]}")
    return PM2_PKG


def program(value: str | None) -> str | None:
    """An interpreter by what it is: 'none', a kind (node, python, bun) or the program's name."""
    if value is None or value == "none":
        return "none"
    kind = program_kind(value)
    if kind:
        return kind
    found = shutil.which(value) or value
    return os.path.basename(os.path.realpath(found))


def real(path: str) -> str:
    return os.path.realpath(shutil.which(path) or path) if os.sep not in path else os.path.realpath(path)


def pm2_read(pkg: Path, fixture: Path, env_name: str | None) -> dict[str, Any]:
    argv = ["node", str(READER), str(pkg), str(fixture), *([env_name] if env_name else [])]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=minimal_env(), cwd=fixture.parent)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    if "error" in doc:
        return {"error": doc["error"]}
    apps = []
    for app in doc["apps"]:
        if "error" in app:
            return {"error": app["error"]}
        interpreter = program(app["interpreter"])
        env = dict(app["env"])
        # PM2 sets PWD to the cwd as written (relative or not) in the CLI's environment;
        # PWD is the spawn's business, not the file's (docs/pm2-files.md): not compared.
        env.pop("PWD", None)
        if interpreter == "python":
            env.pop("PYTHONUNBUFFERED", None)  # PM2 adds it; Corral sets it when it spawns
        n = app["instances"]
        apps.append({
            "name": app["name"],
            "script": real(app["script"]),
            "args": [str(a) for a in app["args"]],
            "interpreter": interpreter,
            "interpreter_args": [str(a) for a in app["node_args"]],
            "exec_mode": app["exec_mode"].replace("_mode", ""),
            "instances": resolve_instances("max" if n == 0 else n, CPUS),
            "env": env,
        })
    return {"apps": apps}


def corral_read(fixture: Path, env_name: str | None) -> dict[str, Any]:
    try:
        result = load_ecosystem(fixture, env_name=env_name, client_env=minimal_env())
    except ConfigError as e:
        return {"error": e.render()}
    apps = []
    for app in result.apps:
        env = dict(app.env)
        if program(app.interpreter) == "python":
            env.pop("PYTHONUNBUFFERED", None)
        apps.append({
            "name": app.name,
            "script": real(app.script),
            "args": list(app.args),
            "interpreter": program(app.interpreter),
            "interpreter_args": list(app.interpreter_args),
            "exec_mode": app.exec_mode,
            "instances": resolve_instances(app.instances, CPUS),
            "env": env,
        })
    return {"apps": apps}


def differences(pm2: dict[str, Any], corral: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    if "error" in pm2 or "error" in corral:
        if "error" in pm2 and "error" in corral:
            return {}
        return {"error": (pm2.get("error"), corral.get("error"))}
    out: dict[str, tuple[Any, Any]] = {}
    if len(pm2["apps"]) != len(corral["apps"]):
        return {"count": (len(pm2["apps"]), len(corral["apps"]))}
    for a, b in zip(pm2["apps"], corral["apps"], strict=True):
        for key in a:
            if a[key] != b[key]:
                out[key] = (a[key], b[key])
    return out


def deliberate(fixture: str, env_name: str | None, field: str) -> str | None:
    return DELIBERATE.get((fixture, env_name or "-", field)) or DELIBERATE.get((fixture, "*", field))


def test_corpus_is_big_enough() -> None:
    assert len(FIXTURES) >= 40


@needs_node
@pytest.mark.parametrize("env_name", ENVS, ids=["no-env", "env-production"])
@pytest.mark.parametrize("fixture", FIXTURES, ids=[p.name for p in FIXTURES])
def test_read_as_pm2_reads_it(pm2_package: Path, fixture: Path, env_name: str | None) -> None:
    diff = differences(pm2_read(pm2_package, fixture, env_name), corral_read(fixture, env_name))
    unexplained = {k: v for k, v in diff.items() if not deliberate(fixture.name, env_name, k)}
    assert unexplained == {}, f"{fixture.name}: PM2 vs Corral: {unexplained}"


@needs_node
def test_share_read_identically(pm2_package: Path) -> None:
    """Of the readings PM2 itself completes, >= 95 % are identical in Corral.

    Readings PM2 fails (an .mjs file on Node 20, `python -m`, ...) have nothing to be
    identical to: Corral reads them, and they are listed in DELIBERATE.
    """
    same = total = pm2_failed = 0
    for fixture in FIXTURES:
        for env_name in ENVS:
            pm2 = pm2_read(pm2_package, fixture, env_name)
            corral = corral_read(fixture, env_name)
            if "error" in pm2 and "error" not in corral:
                pm2_failed += 1
                continue
            total += 1
            same += not differences(pm2, corral)
    assert total >= 100
    assert same / total >= 0.95, f"{same}/{total} identical ({pm2_failed} readings PM2 fails)"
