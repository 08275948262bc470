"""`corral ecosystem check | convert | init`, run through argparse as the CLI runs them."""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from corral.config.keys import KEYS
from corral.config.loader import load_apps, load_ecosystem, python_interpreter
from corral.core.appspec import AppSpec, to_wire
from corral.core.errors import ConfigError, CorralError
from corral.tools import ecosystem as et

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ecosystems"
SAME = FIXTURES / "same"
SHAPES = FIXTURES / "shapes"
BROKEN = FIXTURES / "broken"
ROOT = Path(__file__).resolve().parent.parent.parent

SOURCES = ["ecosystem.toml", "ecosystem.yaml", "ecosystem.json", "process.json", "pm2.json", "ecosystem.config.js"]
NODE = shutil.which("node")


def _needs_js(name: str) -> None:
    if name.endswith((".js", ".cjs", ".mjs")):
        pytest.importorskip("corral.config.jsobject", reason="the JS parser is not there yet")


def corral(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Parse like cli.main does (a subparsers object, add_parser, func) and render errors alike."""
    parser = argparse.ArgumentParser(prog="corral")
    et.add_parser(parser.add_subparsers(dest="cmd", metavar="COMMAND"))
    ns = parser.parse_args(list(argv))
    try:
        code = int(ns.func(ns))
    except CorralError as e:
        message = e.render() if isinstance(e, ConfigError) else str(e)
        sys.stderr.write(f"corral: error: {message}\n")
        code = e.exit_code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "corral-home"
    monkeypatch.setenv("CORRAL_HOME", str(home))
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    return home


# ---------------------------------------------------------------- check


def test_check_prints_normalised_apps(capsys: pytest.CaptureFixture[str], _home: Path) -> None:
    code, out, err = corral(capsys, "ecosystem", "check", str(SAME / "ecosystem.yaml"), "--env", "production")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"{SAME}/ecosystem.yaml: valid, 3 apps with --env production"
    assert "[api]" in lines and "[worker]" in lines and "[tick]" in lines
    text = "\n".join(lines)
    cpus = os.cpu_count() or 1
    python3 = python_interpreter(dict(os.environ))
    width = max(len(k.name) for k in KEYS) + 2

    def row(label: str, value: str) -> str:
        return f"  {label.ljust(width)}{value}"

    assert row("script", f"{SAME}/api/server.py") in lines
    assert row("cwd", f"{SAME}/api") in lines
    assert row("interpreter", f"{python3}") in lines
    assert row("instances", "4") in lines
    assert row("instances", f"{cpus} (max: one per CPU, {cpus} CPUs)") in lines
    assert row("instances", f"{max(1, cpus - 1)} (-1: CPUs minus 1, {cpus} CPUs)") in lines
    assert row("exec_mode", "cluster") in lines
    assert row("max_memory_restart", "536870912 bytes") in lines
    assert row("kill_timeout", "5000 ms") in lines
    assert row("min_uptime", "10000 ms") in lines
    assert row("env", "APP_ENV=production") in lines
    assert row("", "DEBUG=false") in lines
    assert row("", "WORKERS=2") in lines
    assert row("out_file", f"{SAME}/logs/api.out.log") in lines
    assert row("out_file", f"{_home}/logs/worker-out.log") in lines
    assert row("kill_signal", "SIGTERM") in lines
    assert row("command", f"{python3} -u {SAME}/worker.py") in lines
    assert row("alias", "output -> out_file") in lines
    assert row("alias", "node_args -> interpreter_args") in lines
    assert row("exec_mode", "fork   (default)") in lines
    assert "warnings:" not in text and "notices:" not in text


def test_check_all_shows_every_key(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = corral(capsys, "ecosystem", "check", str(SAME / "ecosystem.toml"), "--all")
    assert code == 0
    api = out.split("[worker]")[0]
    for key in KEYS:
        assert f"\n  {key.name} " in api, key.name
    code, out, _ = corral(capsys, "ecosystem", "check", str(SAME / "ecosystem.toml"))
    assert "other keys at their defaults: --all shows them" in out


def test_check_json_shape(capsys: pytest.CaptureFixture[str], _home: Path) -> None:
    code, out, err = corral(capsys, "ecosystem", "check", str(SAME / "process.json"), "--json", "--env", "production")
    assert code == 0, err
    doc = json.loads(out)
    cpus = os.cpu_count() or 1
    assert set(doc) == {"file", "format", "env", "valid", "cpus", "apps", "ignored", "warnings", "notices"}
    assert doc["file"] == f"{SAME}/process.json"
    assert doc["format"] == "json" and doc["env"] == "production" and doc["valid"] is True
    assert doc["cpus"] == cpus
    assert doc["ignored"] == {} and doc["warnings"] == [] and doc["notices"] == []
    api, worker, tick = doc["apps"]
    extra = {"instances_config", "command", "env_names", "set", "aliases", "ignored", "unknown"}
    assert set(api) == {k.name for k in KEYS} | extra
    assert list(api)[0] == "name"
    # instances: the number that would run here, and as configured
    assert (api["instances"], api["instances_config"]) == (4, 4)
    assert (worker["instances"], worker["instances_config"]) == (cpus, "max")
    assert (tick["instances"], tick["instances_config"]) == (max(1, cpus - 1), -1)
    # sizes in bytes, durations in ms
    assert api["max_memory_restart"] == 536870912
    assert api["kill_timeout"] == 5000 and worker["min_uptime"] == 10000 and worker["restart_delay"] == 500
    assert api["exec_mode"] == "cluster" and worker["exec_mode"] == "fork"
    # env merged, every value a string
    assert api["env"] == {"APP_ENV": "production", "WORKERS": "2", "DEBUG": "false"}
    assert all(isinstance(v, str) for a in doc["apps"] for v in a["env"].values())
    assert api["env_names"] == ["production"]
    # paths absolute, interpreter resolved
    assert api["cwd"] == f"{SAME}/api" and os.path.isabs(api["interpreter"])
    assert api["out_file"] == f"{SAME}/logs/api.out.log"
    assert worker["out_file"] == f"{_home}/logs/worker-out.log"
    assert worker["error_file"] == f"{_home}/logs/worker-error.log"
    assert tick["out_file"] is None and tick["log_file"] is None
    assert worker["kill_signal"] == "SIGTERM"
    assert api["command"] == [api["interpreter"], f"{SAME}/api/server.py", "--port", "8000"]
    assert tick["command"] == [shutil.which("bash"), f"{SAME}/tick.sh", "--every", "5"]
    # what the file set, aliases resolved
    assert api["aliases"] == {"exec": "script", "out": "out_file"}
    assert worker["aliases"] == {"node_args": "interpreter_args", "minUptime": "min_uptime", "restartDelay": "restart_delay"}
    assert tick["aliases"] == {"exec_interpreter": "interpreter"}
    assert "kill_timeout" in api["set"] and "kill_timeout" not in worker["set"]
    assert api["ignored"] == {} and api["unknown"] == {}


def test_check_json_reports_ignored_and_unknown_keys(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("")
    path = tmp_path / "process.json"
    path.write_text(json.dumps({
        "apps": [{"name": "a", "script": "a.py", "vizion": False, "instance": 2, "colour": "red"}],
        "deploy": {"production": {}},
    }))
    code, out, _ = corral(capsys, "ecosystem", "check", str(path), "--json")
    assert code == 0
    doc = json.loads(out)
    app = doc["apps"][0]
    assert app["ignored"] == {"vizion": "version metadata is not collected"}
    assert app["unknown"] == {"instance": "instances", "colour": None}
    assert doc["ignored"] == {"deploy": "Corral does not deploy"}
    assert doc["warnings"] == [
        f"{path}: app 'a': unknown key 'instance': did you mean 'instances'? (ignored)",
        f"{path}: app 'a': unknown key 'colour' (ignored)",
    ]
    assert doc["notices"] == [
        f"{path}: the 'deploy' block is ignored (Corral does not deploy)",
        f"{path}: app 'a': key 'vizion' is ignored: version metadata is not collected",
    ]
    code, out, _ = corral(capsys, "ecosystem", "check", str(path))
    width = max(len(k.name) for k in KEYS) + 2
    assert f"  {'ignored'.ljust(width)}vizion: version metadata is not collected" in out
    assert f"  {'unknown'.ljust(width)}instance (did you mean instances?)" in out
    assert "ignored: the top-level 'deploy' block (Corral does not deploy)" in out
    assert f"warnings:\n  - {path}: app 'a': unknown key 'instance': did you mean 'instances'? (ignored)" in out


@pytest.mark.parametrize(
    ("app", "warning"),
    [
        ({"exec_mode": "cluster", "instances": 2}, "app 'a': exec_mode is cluster but no listen socket is set (listen or port): there is nothing to share, so the instances run as in fork mode"),
        ({"env": {"PYTHONUNBUFFERED": ""}}, "app 'a': PYTHONUNBUFFERED is set empty, so Python buffers its output: log lines arrive late, in blocks, and the last ones are lost in a crash (remove it: Corral sets PYTHONUNBUFFERED=1 for Python apps)"),
        ({"env": {"PYTHONUNBUFFERED": 0}}, "app 'a': PYTHONUNBUFFERED='0' still means unbuffered to Python (any non-empty value does); to let Python buffer its output, set it to an empty string"),
        ({"env": {"PYTHONUNBUFFERED": False}}, "app 'a': PYTHONUNBUFFERED='false' still means unbuffered to Python (any non-empty value does); to let Python buffer its output, set it to an empty string"),
    ],
)
def test_check_warnings(capsys: pytest.CaptureFixture[str], tmp_path: Path, app: dict[str, Any], warning: str) -> None:
    (tmp_path / "a.py").write_text("")
    path = tmp_path / "ecosystem.json"
    path.write_text(json.dumps({"apps": [{"name": "a", "script": "a.py", **app}]}))
    code, out, _ = corral(capsys, "ecosystem", "check", str(path), "--json")
    assert code == 0
    assert json.loads(out)["warnings"] == [f"{path}: {warning}"]


@pytest.mark.parametrize(
    "app",
    [
        {"exec_mode": "cluster", "listen": "127.0.0.1:8000"},
        {"exec_mode": "cluster", "port": 8000},
        {"env": {"PYTHONUNBUFFERED": "1"}},
        {"env": {"PYTHONUNBUFFERED": ""}, "interpreter_args": "-u"},
        {"script": "run.sh", "env": {"PYTHONUNBUFFERED": ""}},
    ],
)
def test_check_no_warning(capsys: pytest.CaptureFixture[str], tmp_path: Path, app: dict[str, Any]) -> None:
    (tmp_path / "a.py").write_text("")
    (tmp_path / "run.sh").write_text("")
    path = tmp_path / "ecosystem.json"
    path.write_text(json.dumps({"apps": [{"name": "a", "script": "a.py", **app}]}))
    code, out, _ = corral(capsys, "ecosystem", "check", str(path), "--json")
    assert code == 0 and json.loads(out)["warnings"] == []


def test_check_only(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = corral(capsys, "ecosystem", "check", str(SAME / "ecosystem.toml"), "--only", "tick,api", "--json")
    assert code == 0
    assert [a["name"] for a in json.loads(out)["apps"]] == ["api", "tick"]
    code, out, err = corral(capsys, "ecosystem", "check", str(SAME / "ecosystem.toml"), "--only", "web")
    assert code == 2 and out == ""
    assert err == f"corral: error: {SAME}/ecosystem.toml: --only names an app not in the file: web (the file has: api, worker, tick)\n"


def test_check_finds_the_file_in_this_folder(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(SHAPES)
    code, out, _ = corral(capsys, "ecosystem", "check")
    assert code == 0 and out.startswith(f"{SHAPES}/ecosystem.config.js: valid, 2 apps")
    monkeypatch.chdir(tmp_path)
    code, _, err = corral(capsys, "ecosystem", "check")
    assert code == 2
    assert err == "corral: error: no ecosystem file here (ecosystem.toml, ecosystem.config.js, ...): name a file\n"


BROKEN_CHECKS = [
    ("wrong_type.toml", "{file}: app 'bad': key 'max_restarts': expected a whole number, got 'many'"),
    ("env_not_table.yaml", "{file}: app 'web': key 'env_production': expected a table of NAME = value, got a string"),
    ("duplicate_names.json", "{file}: app 'web': key 'name': apps #1 and #3 have the same name"),
    ("invalid_syntax.toml", "{file}: invalid TOML: Invalid value (at line 3, column 10)"),
    ("script_not_found.yaml", "{file}: app 'web': key 'script': script file {dir}/nope.py does not exist"),
    ("bad_value.config.js", "{file}: app 'web': key 'instances': expected a number, 'max' or -N (CPUs minus N), got 'lots'"),
]


@pytest.mark.parametrize(("name", "message"), BROKEN_CHECKS, ids=[b[0] for b in BROKEN_CHECKS])
def test_check_broken_files(capsys: pytest.CaptureFixture[str], name: str, message: str) -> None:
    _needs_js(name)
    path = BROKEN / name
    text = message.format(file=path, dir=BROKEN)
    code, out, err = corral(capsys, "ecosystem", "check", str(path))
    assert (code, out, err) == (2, "", f"corral: error: {text}\n")
    code, out, err = corral(capsys, "ecosystem", "check", str(path), "--json")
    assert code == 2 and err == f"corral: error: {text}\n"
    doc = json.loads(out)
    assert doc["valid"] is False and doc["file"] == str(path)
    assert doc["error"]["text"] == text and doc["error"]["file"] == str(path)
    assert text.endswith(doc["error"]["message"])


def test_check_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = corral(capsys, "ecosystem", "check", str(tmp_path / "nope.toml"))
    assert (code, err) == (2, f"corral: error: {tmp_path}/nope.toml: file not found\n")


def test_check_same_error_as_start(tmp_path: Path) -> None:
    """check and start share the loader: the error is the one `corral start` prints."""
    path = BROKEN / "wrong_type.toml"
    with pytest.raises(ConfigError) as e:
        load_ecosystem(path)
    with pytest.raises(ConfigError) as e2:
        et.load(path)
    assert e.value.render() == e2.value.render()


# ---------------------------------------------------------------- writers


TRICKY_STRINGS = ["plain", 'quo"te', "back\\slash", "new\nline", "tab\there", "ünïcödé ✓", "del\x7f", "ctl\x01", "", " lead", "#hash", "*.pyc", "yes", "null", "1.0", "a: b", "- x", "[x]", "{x}", "~", "@at", "`tick`", "'single'", "%pct"]


@pytest.mark.parametrize("value", [*TRICKY_STRINGS, 0, -3, 10**15, 1.5, -0.25, 1e20, True, False, [1, "a", [True]], {"k": "v", "odd key": 1, "n": {"x": [1]}}, [], {}])
def test_toml_values_parse_back(value: Any) -> None:
    text = f"v = {et.toml_value(value)}\n"
    assert tomllib.loads(text)["v"] == value


def test_toml_special_floats() -> None:
    assert tomllib.loads(f"v = {et.toml_value(math.inf)}")["v"] == math.inf
    assert tomllib.loads(f"v = {et.toml_value(-math.inf)}")["v"] == -math.inf
    assert math.isnan(tomllib.loads(f"v = {et.toml_value(math.nan)}")["v"])


@pytest.mark.parametrize("value", [*TRICKY_STRINGS[:6], *TRICKY_STRINGS[8:], 0, 1.5, True, None, [1, "yes", None], {"a": "no"}])
def test_yaml_values_parse_back(value: Any) -> None:
    assert yaml.safe_load(f"v: {et.yaml_value(value)}\n")["v"] == value


def test_write_toml_and_yaml_keep_comments_and_quote_keys() -> None:
    app = et.OutApp(
        values={"name": "a", "script": "a.py", "env": {"A B": "1", "X": "2"}},
        comments={("script",): ["about script"], ("env", "X"): ["about X"]},
        header=["about the app"],
    )
    toml_text = et.write_toml(["top"], [app])
    assert toml_text == (
        '# top\n\n# about the app\n[[apps]]\nname = "a"\n# about script\nscript = "a.py"\n\n'
        '[apps.env]\n"A B" = "1"\n# about X\nX = "2"\n'
    )
    assert tomllib.loads(toml_text) == {"apps": [{"name": "a", "script": "a.py", "env": {"A B": "1", "X": "2"}}]}
    yaml_text = et.write_yaml(["top"], [app])
    assert yaml_text == (
        "# top\napps:\n  # about the app\n  - name: a\n    # about script\n    script: a.py\n"
        "    env:\n      A B: '1'\n      # about X\n      X: '2'\n"
    )
    assert yaml.safe_load(yaml_text) == {"apps": [{"name": "a", "script": "a.py", "env": {"A B": "1", "X": "2"}}]}


# ---------------------------------------------------------------- convert


def _strip(apps: list[AppSpec]) -> list[dict[str, Any]]:
    return [{k: v for k, v in to_wire(a).items() if k != "env_names"} for a in apps]


@pytest.mark.parametrize("env_name", [None, "production"])
@pytest.mark.parametrize("to", ["toml", "yaml", "json"])
@pytest.mark.parametrize("source", SOURCES)
def test_convert_round_trip(capsys: pytest.CaptureFixture[str], tmp_path: Path, source: str, to: str, env_name: str | None) -> None:
    """Every format to every format, in another folder: the same normalised apps."""
    _needs_js(source)
    out = tmp_path / f"converted.{to}"
    args = ["ecosystem", "convert", str(SAME / source), "--to", to, "-o", str(out)]
    if env_name:
        args += ["--env", env_name]
    code, stdout, err = corral(capsys, *args)
    assert code == 0, err
    assert stdout == ""
    assert err.splitlines()[-1] == f"[corral] wrote {out} (3 apps, {to})"
    before = load_ecosystem(SAME / source, env_name=env_name)
    after = load_ecosystem(out)
    assert _strip(after.apps) == _strip(before.apps)
    if env_name:
        assert all(a.env_names == [] for a in after.apps)
    else:
        assert [a.env_names for a in after.apps] == [a.env_names for a in before.apps]
        # and --env still selects the same env from the converted file
        assert _strip(load_ecosystem(out, env_name="production").apps) == _strip(load_ecosystem(SAME / source, env_name="production").apps)
    assert after.warnings == []


@pytest.mark.parametrize("source", SOURCES)
def test_convert_in_place_keeps_relative_paths(capsys: pytest.CaptureFixture[str], tmp_path: Path, source: str) -> None:
    _needs_js(source)
    work = tmp_path / "same"
    shutil.copytree(SAME, work)
    code, text, err = corral(capsys, "ecosystem", "convert", str(work / source))
    assert code == 0, err
    data = tomllib.loads(text)
    assert data["apps"][0]["cwd"] == "api" or os.path.isabs(data["apps"][0]["cwd"])  # JS used path.join(__dirname)
    assert data["apps"][0]["out_file"] == "logs/api.out.log"
    assert data["apps"][1]["pid_file"] == "run/worker.pid"
    assert "cwd" not in data["apps"][1]
    (work / "converted.toml").write_text(text)
    before = load_ecosystem(work / source)
    assert _strip(load_ecosystem(work / "converted.toml").apps) == _strip(before.apps)


def test_convert_writes_corral_names_and_value_forms(capsys: pytest.CaptureFixture[str]) -> None:
    code, text, _ = corral(capsys, "ecosystem", "convert", str(SAME / "process.json"))
    assert code == 0
    api, worker, tick = tomllib.loads(text)["apps"]
    assert list(api)[:3] == ["name", "script", "args"]
    assert api["script"] == "server.py" and "exec" not in api
    assert api["out_file"] == "logs/api.out.log" and "out" not in api
    assert api["max_memory_restart"] == "512M"
    assert api["exec_mode"] == "cluster_mode"  # the value as written; it loads as cluster
    assert worker["interpreter_args"] == ["-u"] and "node_args" not in worker
    assert worker["min_uptime"] == "10s" and worker["restart_delay"] == 500
    assert tick["interpreter"] == "bash"
    assert tick["out_file"] == "NULL"
    assert api["env"] == {"APP_ENV": "development", "WORKERS": 2, "DEBUG": True}
    assert api["env_production"] == {"APP_ENV": "production", "DEBUG": False}
    assert text.startswith("# Converted by `corral ecosystem convert` from process.json.\n")


def test_convert_null_log_file_stays_off(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("")
    (tmp_path / "e.json").write_text(json.dumps({"apps": [{"name": "a", "script": "a.py", "out_file": None, "error_file": None, "log_file": None, "cron_restart": None}]}))
    code, text, _ = corral(capsys, "ecosystem", "convert", str(tmp_path / "e.json"))
    assert code == 0
    app = tomllib.loads(text)["apps"][0]
    assert app == {"name": "a", "script": "a.py", "out_file": "/dev/null", "error_file": "/dev/null"}


def test_convert_lists_dropped_keys(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("")
    path = tmp_path / "process.json"
    path.write_text(json.dumps({
        "apps": [{"name": "a", "script": "a.py", "vizion": False, "instance": 2, "env_production": {"X": 1}, "env_staging": {"X": 2}}],
        "deploy": {"production": {}},
        "version": 3,
    }))
    code, text, err = corral(capsys, "ecosystem", "convert", str(path))
    assert code == 0
    assert "# Dropped: the top-level 'deploy' block (Corral does not deploy).\n" in text
    assert "# Dropped: the top-level keys 'version'.\n" in text
    assert "# Dropped from 'a': 'vizion' (version metadata is not collected), 'instance' (unknown; did you\n# mean 'instances'?).\n[[apps]]\n" in text
    assert "vizion" not in tomllib.loads(text)["apps"][0]
    assert err == (
        f"corral: warning: {path}: top-level key 'version' is ignored (apps go in 'apps')\n"
        f"corral: warning: {path}: app 'a': unknown key 'instance': did you mean 'instances'? (ignored)\n"
    )
    code, text, _ = corral(capsys, "ecosystem", "convert", str(path), "--env", "staging")
    assert "'env_production' (not --env staging)" in text
    app = tomllib.loads(text)["apps"][0]
    assert app["env"] == {"X": 2} and "env_staging" not in app and "env_production" not in app


def test_convert_json_notes_go_to_stderr(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("")
    path = tmp_path / "e.yaml"
    path.write_text("apps:\n  - name: a\n    script: a.py\n    treekill: false\n")
    code, text, err = corral(capsys, "ecosystem", "convert", str(path), "--to", "json")
    assert code == 0
    assert json.loads(text) == {"apps": [{"name": "a", "script": "a.py"}]}
    assert "corral: note: app 'a': dropped 'treekill' (Corral always stops the whole process tree)\n" in err


def test_convert_shapes_become_apps_lists(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("apps_tables.toml", "apps_object.yaml", "top_list.json", "bare_app.yaml"):
        code, text, _ = corral(capsys, "ecosystem", "convert", str(SHAPES / name))
        assert code == 0
        apps = tomllib.loads(text)["apps"]
        assert [a["name"] for a in apps] == [a.name for a in load_ecosystem(SHAPES / name).apps]


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_convert_marks_values_node_evaluated(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("corral.config.jsobject", reason="the JS parser is not there yet")
    monkeypatch.setenv("CORRAL_TEST_PORT", "4567")
    (tmp_path / "app.py").write_text("")
    path = tmp_path / "ecosystem.config.js"
    path.write_text(
        "const port = process.env.CORRAL_TEST_PORT || 3000;\n"
        "module.exports = {\n"
        "  apps: [{\n"
        "    name: 'web',\n"
        "    script: 'app.py',\n"
        "    instances: Math.max(1, 2 - 1),\n"
        "    args: ['--port', String(port)],\n"
        "    env: { PORT: port, HOST: 'localhost' },\n"
        "    vizion: false,\n"
        "  }],\n"
        "};\n"
    )
    code, text, err = corral(capsys, "ecosystem", "convert", str(path))
    assert code == 0, err
    assert text == (
        "# Converted by `corral ecosystem convert` from ecosystem.config.js.\n"
        "# ecosystem.config.js needed Node.js to evaluate `process.env.CORRAL_TEST_PORT || 3000` (line 1),\n"
        "# `Math.max(1, 2 - 1)` (line 6), `String(port)` (line 7): the values below are what Node.js\n"
        "# computed when the file was converted (each one is marked).\n"
        "\n"
        "# Dropped from 'web': 'vizion' (version metadata is not collected).\n"
        "[[apps]]\n"
        'name = "web"\n'
        'script = "app.py"\n'
        "# evaluated by Node.js from `String(port)` (line 7) when converted\n"
        'args = ["--port", "4567"]\n'
        "# evaluated by Node.js from `Math.max(1, 2 - 1)` (line 6) when converted\n"
        "instances = 1\n"
        "\n"
        "[apps.env]\n"
        "# evaluated by Node.js when converted\n"
        'PORT = "4567"\n'
        'HOST = "localhost"\n'
    )
    (tmp_path / "ecosystem.toml").write_text(text)
    assert load_ecosystem(tmp_path / "ecosystem.toml").apps == load_ecosystem(path).apps


def test_convert_literal_js_has_no_node_comments(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("corral.config.jsobject", reason="the JS parser is not there yet")
    code, text, _ = corral(capsys, "ecosystem", "convert", str(SAME / "ecosystem.config.js"))
    assert code == 0 and "Node.js" not in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "{tmp}/x.toml", "--to", "yaml"], "-o {tmp}/x.toml: a YAML file should end in .yaml"),
        (["-o", "{tmp}/x.txt"], "-o {tmp}/x.txt: a TOML file should end in .toml"),
        (["-o", "{tmp}/exists.toml"], "{tmp}/exists.toml exists: use --force to replace it"),
        (["-o", "{tmp}/no/such/dir/x.toml"], "cannot write {tmp}/no/such/dir/x.toml: No such file or directory"),
    ],
)
def test_convert_refuses(capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "exists.toml").write_text("keep")
    args = [a.format(tmp=tmp_path) for a in args]
    code, out, err = corral(capsys, "ecosystem", "convert", str(SAME / "ecosystem.json"), *args)
    assert code != 0 and out == ""
    assert err == f"corral: error: {message.format(tmp=tmp_path)}\n"
    assert (tmp_path / "exists.toml").read_text() == "keep"


def test_convert_refuses_to_overwrite_its_source(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    shutil.copy(SAME / "ecosystem.toml", tmp_path / "ecosystem.toml")
    (tmp_path / "api").mkdir()
    code, _, err = corral(capsys, "ecosystem", "convert", str(tmp_path / "ecosystem.toml"), "-o", str(tmp_path / "ecosystem.toml"), "--force")
    assert code == 2 and err == f"corral: error: -o {tmp_path}/ecosystem.toml is the file being converted: choose another name\n"


def test_convert_force_and_output_format_from_suffix(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "eco.yml"
    out.write_text("old")
    code, _, _ = corral(capsys, "ecosystem", "convert", str(SAME / "ecosystem.json"), "-o", str(out), "--force")
    assert code == 0
    assert yaml.safe_load(out.read_text())["apps"][0]["name"] == "api"


def test_convert_broken_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = corral(capsys, "ecosystem", "convert", str(BROKEN / "wrong_type.toml"), "-o", str(tmp_path / "x.toml"))
    assert (code, out) == (2, "")
    assert err == f"corral: error: {BROKEN}/wrong_type.toml: app 'bad': key 'max_restarts': expected a whole number, got 'many'\n"
    assert not (tmp_path / "x.toml").exists()


# ---------------------------------------------------------------- init


def test_init_python(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "worker.py").write_text("")
    code, out, err = corral(capsys, "ecosystem", "init")
    assert code == 0 and out == ""
    assert err == f"[corral] wrote {tmp_path}/ecosystem.toml\n"
    text = (tmp_path / "ecosystem.toml").read_text()
    assert text == et.PYTHON_TEMPLATE and text.startswith("# ecosystem.toml")
    prod = load_ecosystem(tmp_path / "ecosystem.toml", env_name="production")
    assert prod.warnings == [] and prod.notices == []
    web, worker = prod.apps
    assert web.exec_mode == "cluster" and web.instances == "max" and web.listen == ["127.0.0.1:8000"]
    assert web.script == "uvicorn" and web.interpreter_args == ["-m"]
    assert web.env == {"APP_ENV": "production", "LOG_LEVEL": "info"}
    assert worker.script == str(tmp_path / "worker.py")
    dev = load_ecosystem(tmp_path / "ecosystem.toml", env_name="development")
    assert dev.apps[0].env == {"APP_ENV": "development", "LOG_LEVEL": "debug"}
    code, out, err = corral(capsys, "ecosystem", "check", "--env", "production")
    assert code == 0 and "warnings:" not in out


def test_init_notes_what_is_missing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = corral(capsys, "ecosystem", "init", "-o", str(tmp_path / "e.toml"))
    assert code == 0
    assert err == (
        f"[corral] wrote {tmp_path}/e.toml\n"
        f"corral: note: {tmp_path}/e.toml: app 'worker': key 'script': script file {tmp_path}/worker.py does not exist\n"
        f"corral: note: fix that, then check with: corral ecosystem check {tmp_path}/e.toml\n"
    )


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_init_node(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "server.js").write_text("")
    (tmp_path / "worker.js").write_text("")
    code, _, err = corral(capsys, "ecosystem", "init", "--node", "-o", str(tmp_path / "ecosystem.toml"))
    assert code == 0 and err == f"[corral] wrote {tmp_path}/ecosystem.toml\n"
    web, worker = load_ecosystem(tmp_path / "ecosystem.toml", env_name="production").apps
    assert web.interpreter == NODE and web.exec_mode == "cluster"
    assert worker.env == {"NODE_ENV": "production"}


def test_init_refuses_to_overwrite(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "ecosystem.toml"
    target.write_text("mine")
    code, _, err = corral(capsys, "ecosystem", "init", "-o", str(target))
    assert code == 2 and err == f"corral: error: {target} exists: use --force to replace it\n"
    assert target.read_text() == "mine"
    code, _, _ = corral(capsys, "ecosystem", "init", "-o", str(target), "--force")
    assert code == 0 and target.read_text() == et.PYTHON_TEMPLATE


def test_init_stdout_and_wrong_suffix(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = corral(capsys, "ecosystem", "init", "-o", "-")
    assert code == 0 and out == et.PYTHON_TEMPLATE and err == ""
    code, _, err = corral(capsys, "ecosystem", "init", "-o", str(tmp_path / "e.yaml"))
    assert code == 2 and err == f"corral: error: -o {tmp_path}/e.yaml: init writes TOML; name the file *.toml\n"


def test_init_python_and_node_exclusive() -> None:
    parser = argparse.ArgumentParser(prog="corral")
    et.add_parser(parser.add_subparsers(dest="cmd"))
    with pytest.raises(SystemExit):
        parser.parse_args(["ecosystem", "init", "--python", "--node"])
    with pytest.raises(SystemExit):
        parser.parse_args(["ecosystem"])


PROCFILE = """\
# Heroku's Procfile
web: gunicorn app:app --bind 0.0.0.0:$PORT --workers 2
worker:   python3 worker.py --queue 'high low'

clock: sh -c 'sleep 1' && echo done
release: python3 manage.py migrate
"""


def test_init_from_procfile(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text(PROCFILE)
    out = tmp_path / "ecosystem.toml"
    code, _, err = corral(capsys, "ecosystem", "init", "--procfile", str(procfile), "-o", str(out))
    assert code == 0, err
    data = tomllib.loads(out.read_text())
    assert data["apps"] == [
        {"name": "web", "script": "sh", "args": ["-c", "exec gunicorn app:app --bind 0.0.0.0:$PORT --workers 2"], "env": {"PORT": "5000"}},
        {"name": "worker", "script": "python3", "args": ["worker.py", "--queue", "high low"]},
        {"name": "clock", "script": "sh", "args": ["-c", "sh -c 'sleep 1' && echo done"]},
        {"name": "release", "script": "python3", "args": ["manage.py", "migrate"], "autorestart": False},
    ]
    text = out.read_text()
    assert text.startswith("# ecosystem.toml: the processes of Procfile, one app per line.\n")
    assert "# Procfile line 3: python3 worker.py --queue 'high low'\n[[apps]]\n" in text
    apps = load_ecosystem(out).apps
    assert [a.name for a in apps] == ["web", "worker", "clock", "release"]
    assert apps[0].script == shutil.which("sh") and apps[0].interpreter == "none"
    assert apps[1].script == shutil.which("python3")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("web gunicorn\n", "{file}: line 1: expected 'name: command', got 'web gunicorn'"),
        ("web:\n", "{file}: line 1: expected 'name: command', got 'web:'"),
        ("web: a\nweb: b\n", "{file}: app 'web': line 2: a second process named 'web'"),
        ("all: run\n", "{file}: app 'all': key 'name': line 1: 'all' is reserved: it means every app in commands"),
        ("web: run 'unclosed\n", "{file}: app 'web': line 1: cannot split the command: No closing quotation"),
        ("# only comments\n\n", "{file}: no 'name: command' lines"),
    ],
)
def test_init_from_bad_procfile(capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, message: str) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text(text)
    code, _, err = corral(capsys, "ecosystem", "init", "--procfile", str(procfile), "-o", str(tmp_path / "e.toml"))
    assert code == 2
    assert err == f"corral: error: {message.format(file=procfile)}\n"
    assert not (tmp_path / "e.toml").exists()


def test_init_missing_procfile(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = corral(capsys, "ecosystem", "init", "--procfile", str(tmp_path / "Procfile"))
    assert (code, err) == (2, f"corral: error: {tmp_path}/Procfile: file not found\n")


# ---------------------------------------------------------------- python -m corral.tools.ecosystem


def _module(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    return subprocess.run([sys.executable, "-m", "corral.tools.ecosystem", *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env)


def test_module_entry_point(tmp_path: Path) -> None:
    ok = _module("check", str(SAME / "ecosystem.toml"), "--json")
    assert ok.returncode == 0, ok.stderr
    assert [a["name"] for a in json.loads(ok.stdout)["apps"]] == ["api", "worker", "tick"]
    also = _module("ecosystem", "check", str(SAME / "ecosystem.toml"))
    assert also.returncode == 0 and also.stdout.startswith(f"{SAME}/ecosystem.toml: valid, 3 apps")
    bad = _module("check", str(BROKEN / "wrong_type.toml"))
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == f"corral: error: {BROKEN}/wrong_type.toml: app 'bad': key 'max_restarts': expected a whole number, got 'many'\n"
    conv = _module("convert", str(SAME / "ecosystem.yaml"), "-o", str(tmp_path / "e.json"))
    assert conv.returncode == 0, conv.stderr
    assert _strip(load_ecosystem(tmp_path / "e.json").apps) == _strip(load_ecosystem(SAME / "ecosystem.yaml").apps)
    usage = _module("frobnicate")
    assert usage.returncode == 2 and "invalid choice" in usage.stderr


def test_load_apps_from_converted_data_matches(tmp_path: Path) -> None:
    """convert() output, parsed in memory, loads like the source (the check convert runs itself)."""
    loaded = et.load(SAME / "ecosystem.toml")
    conv = et.convert(loaded, to="yaml", env_name=None, out_dir=SAME)
    again = load_apps(yaml.safe_load(conv.text), label="x", base_dir=SAME)
    assert again.apps == loaded.result.apps
