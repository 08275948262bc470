"""Loading ecosystem files: formats, shapes, PM2's keys and value forms, errors."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from corral.config import docs
from corral.config.loader import (
    DEFAULT_FILENAMES,
    find_ecosystem,
    load_apps,
    load_ecosystem,
    looks_like_config,
    normalize_app,
    python_interpreter,
)
from corral.core.appspec import to_wire
from corral.core.errors import ConfigError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ecosystems"
SAME = FIXTURES / "same"
SHAPES = FIXTURES / "shapes"
BROKEN = FIXTURES / "broken"

# A controlled environment: no $VIRTUAL_ENV, the real PATH.
ENV = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")}

FORMATS = [
    "ecosystem.toml",
    "ecosystem.yaml",
    "ecosystem.json",
    "process.json",
    "pm2.json",
    "ecosystem.config.js",
]

NODE = shutil.which("node")


def _needs_js(name: str) -> None:
    if name.endswith((".js", ".cjs", ".mjs")):
        pytest.importorskip("corral.config.jsobject", reason="the JS parser is not there yet")


def load(path: Path, **kw: Any) -> Any:
    kw.setdefault("client_env", ENV)
    return load_ecosystem(path, **kw)


# ---------------------------------------------------------------- formats


@pytest.mark.parametrize("env_name", [None, "production"])
@pytest.mark.parametrize("name", FORMATS[1:])
def test_every_format_loads_the_same_apps(name: str, env_name: str | None) -> None:
    _needs_js(name)
    expected = load(SAME / "ecosystem.toml", env_name=env_name)
    got = load(SAME / name, env_name=env_name)
    assert got.apps == expected.apps
    assert got.warnings == [] and got.notices == []


def test_normalised_values() -> None:
    result = load(SAME / "ecosystem.toml", env_name="production")
    api, worker, tick = result.apps
    here = str(SAME)
    python3 = python_interpreter(ENV)
    assert [a.name for a in result.apps] == ["api", "worker", "tick"]
    assert result.file == str(SAME / "ecosystem.toml")

    assert api.cwd == f"{here}/api"
    assert api.script == f"{here}/api/server.py"
    assert api.interpreter == python3
    assert api.args == ["--port", "8000"]
    assert api.instances == 4
    assert api.exec_mode == "cluster"
    assert api.listen == ["127.0.0.1:8000"]
    assert api.env == {"APP_ENV": "production", "WORKERS": "2", "DEBUG": "false"}
    assert api.env_names == ["production"]
    assert api.max_memory_restart == 512 * 1024 * 1024
    assert api.kill_timeout == 5000
    # log paths are relative to the ecosystem file's folder, not to the app's cwd
    assert api.out_file == f"{here}/logs/api.out.log"
    assert api.error_file == f"{here}/logs/api.err.log"
    assert api.merge_logs is True
    assert api.namespace == "backend"

    assert worker.instances == "max"
    assert worker.interpreter_args == ["-u"]
    assert worker.min_uptime == 10_000
    assert worker.restart_delay == 500
    assert worker.exp_backoff_restart_delay == 100
    assert worker.stop_exit_codes == [0, 3]
    assert worker.kill_signal == "SIGTERM"
    assert worker.log_type == "json"
    assert worker.pid_file == f"{here}/run/worker.pid"
    assert worker.out_file == "default" and worker.error_file == "default"
    assert worker.env == {"QUEUE": "jobs"}

    assert tick.interpreter == shutil.which("bash", path=ENV["PATH"])
    assert tick.args == ["--every", "5"]
    assert tick.instances == -1
    assert tick.autorestart is False
    assert tick.out_file is None
    assert tick.watch == ["src"] and tick.ignore_watch == ["*.pyc"]
    assert tick.time is True and tick.log_date_format == "YYYY-MM-DDTHH:mm:ss.SSSZ"
    assert tick.env == {} and tick.env_names == []


def test_env_without_env_name_is_the_base_env() -> None:
    api = load(SAME / "ecosystem.toml").apps[0]
    assert api.env == {"APP_ENV": "development", "WORKERS": "2", "DEBUG": "true"}


@pytest.mark.parametrize("name", FORMATS)
def test_normalised_apps_validate_again_unchanged(name: str) -> None:
    """The daemon decodes what the CLI sends (registry.decode_app: types, then every
    key's parser must read the value as itself) and gets the same spec back."""
    from corral.core.appspec import to_wire
    from corral.daemon.registry import decode_app

    _needs_js(name)
    for app in load(SAME / name, env_name="production").apps:
        sent = json.loads(json.dumps(to_wire(app)))  # as the wire carries it
        assert decode_app(sent) == app


def test_find_ecosystem_order(tmp_path: Path) -> None:
    assert find_ecosystem(tmp_path) is None
    for name in DEFAULT_FILENAMES:
        (tmp_path / name).write_text("")
    for name in DEFAULT_FILENAMES:
        assert find_ecosystem(tmp_path) == tmp_path / name
        (tmp_path / name).unlink()
    assert find_ecosystem(tmp_path) is None


def test_find_ecosystem_names() -> None:
    assert DEFAULT_FILENAMES[0] == "ecosystem.toml"
    for name in ("ecosystem.config.js", "ecosystem.config.cjs", "ecosystem.config.mjs", "ecosystem.yaml", "ecosystem.yml", "ecosystem.json", "process.json", "pm2.json"):
        assert name in DEFAULT_FILENAMES


def test_find_ecosystem_ignores_folders(tmp_path: Path) -> None:
    (tmp_path / "ecosystem.toml").mkdir()
    (tmp_path / "pm2.json").write_text("{}")
    assert find_ecosystem(tmp_path) == tmp_path / "pm2.json"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ecosystem.toml", True),
        ("deploy/prod.toml", True),
        ("apps.yaml", True),
        ("apps.yml", True),
        ("process.json", True),
        ("ecosystem.config.js", True),
        ("my.config.cjs", True),
        ("ecosystem.config.mjs", True),
        ("app.py", False),
        ("server.js", False),
        ("uvicorn", False),
    ],
)
def test_looks_like_config(name: str, expected: bool) -> None:
    assert looks_like_config(name) is expected


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    ("name", "names", "notices", "warnings"),
    [
        ("apps_list.json", ["a", "b"], [], []),
        ("apps_array.toml", ["a", "b"], [], []),
        ("apps_tables.toml", ["a", "b"], [], []),
        ("apps_object.yaml", ["a"], [], []),
        ("top_list.json", ["a", "b"], [], []),
        ("bare_app.yaml", ["a"], [], []),
        ("with_deploy.json", ["a", "b"], ["{file}: the 'deploy' block is ignored (Corral does not deploy)"], []),
        ("extra_top_level.yaml", ["a", "b"], [], ["{file}: top-level key 'version' is ignored (apps go in 'apps')"]),
        ("ecosystem.config.js", ["a", "b"], ["{file}: the 'deploy' block is ignored (Corral does not deploy)"], []),
    ],
)
def test_shapes(name: str, names: list[str], notices: list[str], warnings: list[str]) -> None:
    _needs_js(name)
    path = SHAPES / name
    result = load(path)
    assert [a.name for a in result.apps] == names
    assert [a.script for a in result.apps] == [str(SHAPES / f"{n}.py") for n in names]
    assert result.notices == [n.format(file=path) for n in notices]
    assert result.warnings == [w.format(file=path) for w in warnings]


def test_bare_app_with_deploy_is_one_app(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("")
    result = load_apps({"script": "a.py", "deploy": {"x": 1}}, label="f", base_dir=tmp_path, client_env=ENV)
    assert [a.name for a in result.apps] == ["a"]
    assert result.notices == ["f: the 'deploy' block is ignored (Corral does not deploy)"]
    assert result.warnings == []


def test_json_with_comments_and_trailing_commas(tmp_path: Path) -> None:
    pytest.importorskip("corral.config.jsobject", reason="the JS parser is not there yet")
    (tmp_path / "a.py").write_text("")
    path = tmp_path / "process.json"
    path.write_text('{\n  // a comment\n  "apps": [{"name": "a", "script": "a.py",},],\n}\n')
    assert [a.name for a in load(path).apps] == ["a"]


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("")
    for name, text in [
        ("e.json", '{"apps": [{"script": "a.py"}]}'),
        ("e.toml", '[[apps]]\nscript = "a.py"\n'),
        ("e.yaml", "apps:\n  - script: a.py\n"),
    ]:
        (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + text.encode())
        assert [a.name for a in load(tmp_path / name).apps] == ["a"]


# ---------------------------------------------------------------- broken files

BROKEN_CASES: list[tuple[str, str]] = [
    ("invalid_syntax.toml", "{file}: invalid TOML: Invalid value (at line 3, column 10)"),
    (
        "invalid_syntax.yaml",
        "{file}: invalid YAML: while parsing a block collection: expected <block end>, but found '<block mapping start>' (line 4, column 4)",
    ),
    ("invalid_syntax.json", "{file}: invalid JSON: Expecting ',' delimiter: line 1 column 26 (char 25)"),
    ("empty.yaml", "{file}: the file is empty: no apps defined"),
    ("empty.toml", "{file}: the file is empty: no apps defined"),
    ("not_a_table.yaml", "{file}: expected a table with 'apps' or a list of apps, got a string"),
    ("no_apps.toml", "{file}: no 'apps' found (and not a single app with a 'script')"),
    ("apps_not_list.json", "{file}: 'apps' must be a list of apps, got a string"),
    ("app_not_table.json", "{file}: app #2 must be a table, got a string"),
    ("unknown.type", "{file}: unknown file type '.type': expected .toml, .yaml, .yml, .json, .js, .cjs or .mjs"),
    ("wrong_type.toml", "{file}: app 'bad': key 'max_restarts': expected a whole number, got 'many'"),
    ("negative_restarts.toml", "{file}: app 'web': key 'max_restarts': must be 0 or more, got -1"),
    ("bad_instances.yaml", "{file}: app 'web': key 'instances': expected a number, 'max' or -N (CPUs minus N), got 'lots'"),
    ("bad_exec_mode.json", "{file}: app 'web': key 'exec_mode': expected 'fork' or 'cluster', got 'spawn'"),
    ("env_not_table.yaml", "{file}: app 'web': key 'env_production': expected a table of NAME = value, got a string"),
    ("duplicate_names.json", "{file}: app 'web': key 'name': apps #1 and #3 have the same name"),
    ("missing_script.toml", "{file}: app 'web': key 'script': is required: the file or program to run"),
    ("script_not_found.yaml", "{file}: app 'web': key 'script': script file {dir}/nope.py does not exist"),
    ("program_not_found.yaml", "{file}: app 'web': key 'script': 'surely-not-a-program-corral' is neither a file (in {dir}) nor a program on PATH"),
    ("script_is_folder.toml", "{file}: app 'web': key 'script': {dir}/folder_script is a folder, not a script or program"),
    ("not_executable.toml", "{file}: app 'tool': key 'script': {dir}/not_executable is not executable: make it so (chmod +x) or set 'interpreter'"),
    ("cwd_not_found.json", "{file}: app 'web': key 'cwd': folder {dir}/no/such/folder does not exist"),
    ("bad_signal.yaml", "{file}: app 'web': key 'kill_signal': unknown signal 'SIGNOPE' (try SIGINT, SIGTERM, SIGQUIT...)"),
    ("bad_cron.toml", "{file}: app 'web': key 'cron_restart': expected a cron pattern of 5 or 6 fields, got 'every day'"),
    ("bad_size.json", "{file}: app 'web': key 'max_memory_restart': expected a size such as '500M', '1G' or a number of bytes, got 'lots'"),
    ("bad_duration.yaml", "{file}: app 'web': key 'min_uptime': expected a duration such as '10s', '2m', '500ms' or a number of milliseconds, got '10 minutes'"),
    ("bad_listen.yaml", "{file}: app 'web': key 'listen': expected 'HOST:PORT' or 'unix:/path', got 'localhost'"),
    ("reserved_name.json", "{file}: app 'all': key 'name': 'all' is reserved: it means every app in commands"),
    ("slash_name.yaml", "{file}: app 'api/v1': key 'name': 'api/v1' is not a valid name (no slashes or newlines)"),
    ("interpreter_not_found.yaml", "{file}: app 'web': key 'exec_interpreter': interpreter 'python9.99' is not on PATH"),
    ("alias_bad_value.json", "{file}: app 'web': key 'node_args': expected a string or a list of strings, got {{'a': 1}}"),
    ("module_mode_none.toml", "{file}: app 'web': key 'interpreter_args': '-m' runs a module with an interpreter: it cannot be used with interpreter 'none'"),
    ("bad_value.config.js", "{file}: app 'web': key 'instances': expected a number, 'max' or -N (CPUs minus N), got 'lots'"),
]


@pytest.mark.parametrize(("name", "message"), BROKEN_CASES, ids=[c[0] for c in BROKEN_CASES])
def test_broken_files(name: str, message: str) -> None:
    _needs_js(name)
    path = BROKEN / name
    with pytest.raises(ConfigError) as e:
        load(path)
    assert str(e.value) == message.format(file=path, dir=BROKEN)
    assert e.value.exit_code == 2
    assert e.value.file == str(path)


def test_every_broken_fixture_has_a_case() -> None:
    helpers = {"ok.py", "not_executable", "folder_script"}
    files = {p.name for p in BROKEN.iterdir()} - helpers
    assert files == {c[0] for c in BROKEN_CASES}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load(tmp_path / "ecosystem.toml")
    assert str(e.value) == f"{tmp_path}/ecosystem.toml: file not found"


def test_folder_named_like_a_file(tmp_path: Path) -> None:
    (tmp_path / "ecosystem.toml").mkdir()
    with pytest.raises(ConfigError) as e:
        load(tmp_path / "ecosystem.toml")
    assert str(e.value) == f"{tmp_path}/ecosystem.toml: is a folder, not an ecosystem file"


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "e.yaml").write_bytes(b"apps: \xff\n")
    with pytest.raises(ConfigError) as e:
        load(tmp_path / "e.yaml")
    assert str(e.value) == f"{tmp_path}/e.yaml: not valid UTF-8 (byte 6)"


def test_first_bad_app_stops_everything(tmp_path: Path) -> None:
    """A file with one bad app loads nothing: the caller starts nothing."""
    with pytest.raises(ConfigError) as e:
        load(BROKEN / "wrong_type.toml")
    assert e.value.app == "bad" and e.value.key == "max_restarts"


# ---------------------------------------------------------------- warnings


def _load_one(tmp_path: Path, app: dict[str, Any], **kw: Any) -> Any:
    (tmp_path / "app.py").write_text("")
    kw.setdefault("client_env", ENV)
    return load_apps({"apps": [{"script": "app.py", **app}]}, label="eco.json", base_dir=tmp_path, **kw)


@pytest.mark.parametrize(
    ("key", "warning"),
    [
        ("instance", "eco.json: app 'web': unknown key 'instance': did you mean 'instances'? (ignored)"),
        ("max_memory_restrat", "eco.json: app 'web': unknown key 'max_memory_restrat': did you mean 'max_memory_restart'? (ignored)"),
        ("exec_interpeter", "eco.json: app 'web': unknown key 'exec_interpeter': did you mean 'interpreter'? (ignored)"),
        ("autorestrat", "eco.json: app 'web': unknown key 'autorestrat': did you mean 'autorestart'? (ignored)"),
        ("errorfile", "eco.json: app 'web': unknown key 'errorfile': did you mean 'error_file'? (ignored)"),
        ("flavour", "eco.json: app 'web': unknown key 'flavour' (ignored)"),
    ],
)
def test_unknown_key_warns_with_suggestion(tmp_path: Path, key: str, warning: str) -> None:
    result = _load_one(tmp_path, {"name": "web", key: 1})
    assert result.warnings == [warning]
    assert len(result.apps) == 1
    assert result.details[0].canonical.unknown_keys == {key: result.details[0].canonical.unknown_keys[key]}


def test_unknown_key_of_unnamed_app_names_it_after_its_script(tmp_path: Path) -> None:
    result = _load_one(tmp_path, {"instance": 2})
    assert result.warnings == ["eco.json: app 'app': unknown key 'instance': did you mean 'instances'? (ignored)"]


def test_node_only_keys_are_ignored_with_a_notice(tmp_path: Path) -> None:
    result = _load_one(tmp_path, {"name": "web", "vizion": False, "treekill": True, "source_map_support": True})
    assert result.warnings == []
    assert result.notices == [
        "eco.json: app 'web': key 'vizion' is ignored: version metadata is not collected",
        "eco.json: app 'web': key 'treekill' is ignored: Corral always stops the whole process tree",
        "eco.json: app 'web': key 'source_map_support' is ignored: Node source maps do not apply",
    ]
    assert result.details[0].canonical.ignored_keys == {
        "vizion": "version metadata is not collected",
        "treekill": "Corral always stops the whole process tree",
        "source_map_support": "Node source maps do not apply",
    }


@pytest.mark.parametrize(
    ("app", "value", "warning"),
    [
        ({"out_file": "a.log", "output": "b.log"}, "a.log", "'output' and 'out_file' both set 'out_file'; the value of 'out_file' is used"),
        ({"output": "b.log", "out_file": "a.log"}, "a.log", "'output' and 'out_file' both set 'out_file'; the value of 'out_file' is used"),
        ({"out": "c.log", "output": "b.log"}, "c.log", "'output' and 'out' both set 'out_file'; the value of 'out' is used"),
    ],
)
def test_same_key_under_two_names(tmp_path: Path, app: dict[str, Any], value: str, warning: str) -> None:
    result = _load_one(tmp_path, {"name": "web", **app})
    assert result.apps[0].out_file == str(tmp_path / value)
    assert result.warnings == [f"eco.json: app 'web': {warning}"]


def test_aliases_used_are_recorded(tmp_path: Path) -> None:
    result = _load_one(tmp_path, {"name": "web", "exec_interpreter": "python3", "node_args": "-u", "maxRestarts": 3})
    assert result.details[0].canonical.aliases_used == {
        "exec_interpreter": "interpreter",
        "node_args": "interpreter_args",
        "maxRestarts": "max_restarts",
    }


# ---------------------------------------------------------------- keys, one by one


def _norm(tmp_path: Path, raw: dict[str, Any], *, env: dict[str, str] | None = None, env_name: str | None = None) -> dict[str, Any]:
    (tmp_path / "app.py").write_text("")
    raw = {"script": "app.py", **raw}
    app, _warnings, _ignored = normalize_app(raw, label="eco.toml", base_dir=tmp_path, env_name=env_name, client_env=env or ENV)
    return app


@pytest.mark.parametrize(
    ("raw", "key", "expected"),
    [
        ({"cmd": "app.py"}, "script", "{dir}/app.py"),
        ({"exec": "app.py"}, "script", "{dir}/app.py"),
        ({}, "name", "app"),
        ({"script": "app.py", "name": "x"}, "name", "x"),
        ({"args": "-v --name 'a b'"}, "args", ["-v", "--name", "a b"]),
        ({"args": ["-v", 2]}, "args", ["-v", "2"]),
        ({"node_args": "-u -X dev"}, "interpreter_args", ["-u", "-X", "dev"]),
        ({"interpreterArgs": ["-u"]}, "interpreter_args", ["-u"]),
        ({"env": {"N": 1, "B": True, "F": 1.5, "E": None}}, "env", {"N": "1", "B": "true", "F": "1.5", "E": ""}),
        ({"instances": "4"}, "instances", 4),
        ({"instances": "max"}, "instances", "max"),
        ({"instances": 0}, "instances", "max"),
        ({"instances": -1}, "instances", -1),
        ({"exec_mode": "fork_mode"}, "exec_mode", "fork"),
        ({"exec_mode": "cluster_mode"}, "exec_mode", "cluster"),
        ({"instance_var": "INSTANCE_ID"}, "instance_var", "INSTANCE_ID"),
        ({}, "instance_var", "NODE_APP_INSTANCE"),
        ({"increment_var": "PORT"}, "increment_var", "PORT"),
        ({"namespace": "api"}, "namespace", "api"),
        ({"autorestart": False}, "autorestart", False),
        ({"autostart": False}, "autostart", False),
        ({"max_restarts": 3}, "max_restarts", 3),
        ({"min_uptime": "10s"}, "min_uptime", 10_000),
        ({"min_uptime": "2m"}, "min_uptime", 120_000),
        ({"min_uptime": 500}, "min_uptime", 500),
        ({"restart_delay": "1s"}, "restart_delay", 1000),
        ({"exp_backoff_restart_delay": 100}, "exp_backoff_restart_delay", 100),
        ({"stop_exit_codes": [0]}, "stop_exit_codes", [0]),
        ({"kill_timeout": "3s"}, "kill_timeout", 3000),
        ({"killTimeout": 3000}, "kill_timeout", 3000),
        ({"kill_signal": "SIGTERM"}, "kill_signal", "SIGTERM"),
        ({}, "kill_signal", "SIGINT"),
        ({"out_file": "o.log"}, "out_file", "{dir}/o.log"),
        ({"output": "o.log"}, "out_file", "{dir}/o.log"),
        ({"out_log": "o.log"}, "out_file", "{dir}/o.log"),
        ({"out": "o.log"}, "out_file", "{dir}/o.log"),
        ({"out_file": "/dev/null"}, "out_file", None),
        ({"out_file": "NULL"}, "out_file", None),
        ({"error_file": "e.log"}, "error_file", "{dir}/e.log"),
        ({"error": "e.log"}, "error_file", "{dir}/e.log"),
        ({"err_file": "e.log"}, "error_file", "{dir}/e.log"),
        ({"err_log": "e.log"}, "error_file", "{dir}/e.log"),
        ({"err": "e.log"}, "error_file", "{dir}/e.log"),
        ({"error_file": "/dev/null"}, "error_file", None),
        ({"log_file": "all.log"}, "log_file", "{dir}/all.log"),
        ({"log": "all.log"}, "log_file", "{dir}/all.log"),
        ({"log_file": True}, "log_file", "default"),
        ({}, "log_file", None),
        ({"log_file": "/var/log/app.log"}, "log_file", "/var/log/app.log"),
        ({"out_file": "logs/../o.log"}, "out_file", "{dir}/o.log"),
        ({"log_date_format": "YYYY-MM-DD"}, "log_date_format", "YYYY-MM-DD"),
        ({"time": True}, "log_date_format", "YYYY-MM-DDTHH:mm:ss.SSSZ"),
        ({"time": True, "log_date_format": "HH:mm"}, "log_date_format", "HH:mm"),
        ({"merge_logs": True}, "merge_logs", True),
        ({"combine_logs": True}, "merge_logs", True),
        ({"log_type": "json"}, "log_type", "json"),
        ({"pid_file": "app.pid"}, "pid_file", "{dir}/app.pid"),
        ({"pid": "app.pid"}, "pid_file", "{dir}/app.pid"),
        ({"uid": "www-data", "gid": 33}, "uid", "www-data"),
        ({"user": "www-data"}, "uid", "www-data"),
        ({"max_memory_restart": "1G"}, "max_memory_restart", 1024**3),
        ({"max_memory_restart": "500M"}, "max_memory_restart", 500 * 1024**2),
        ({"max_memory_restart": 1000}, "max_memory_restart", 1000),
        ({"cron_restart": "0 * * * *"}, "cron_restart", "0 * * * *"),
        ({"cron": "0 * * * *"}, "cron_restart", "0 * * * *"),
        ({"watch": True}, "watch", True),
        ({"watch": ["src"], "ignore_watch": ["*.pyc"], "watch_delay": "2s"}, "watch_delay", 2000),
        ({"wait_ready": True, "listen_timeout": "5s"}, "listen_timeout", 5000),
        ({"listen": "0.0.0.0:8000"}, "listen", ["0.0.0.0:8000"]),
        ({"disable_logs": True}, "out_file", None),
        ({"disable_logs": True}, "error_file", None),
        ({"disable_logs": True, "log_file": "x.log"}, "log_file", None),
    ],
)
def test_key_forms(tmp_path: Path, raw: dict[str, Any], key: str, expected: Any) -> None:
    app = _norm(tmp_path, raw)
    if isinstance(expected, str):
        expected = expected.format(dir=tmp_path)
    assert to_wire(app)[key] == expected


def test_port_sets_PORT_and_in_cluster_mode_the_listen_socket(tmp_path: Path) -> None:
    fork = _norm(tmp_path, {"port": 3000})
    assert fork.env["PORT"] == "3000" and fork.listen == []
    cluster = _norm(tmp_path, {"port": 3000, "exec_mode": "cluster"})
    assert cluster.env["PORT"] == "3000" and cluster.listen == ["0.0.0.0:3000"]
    own = _norm(tmp_path, {"port": 3000, "env": {"PORT": "80"}})
    assert own.env["PORT"] == "80"
    listen = _norm(tmp_path, {"port": 3000, "exec_mode": "cluster", "listen": "127.0.0.1:9000"})
    assert listen.listen == ["127.0.0.1:9000"]


def test_cwd_is_relative_to_the_file_folder(tmp_path: Path) -> None:
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "server.py").write_text("")
    app = _norm(tmp_path, {"script": "server.py", "cwd": "api", "out_file": "o.log"})
    assert app.cwd == str(tmp_path / "api")
    assert app.script == str(tmp_path / "api" / "server.py")
    assert app.out_file == str(tmp_path / "o.log")


def test_cwd_absolute_and_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    (home / "srv").mkdir(parents=True)
    (home / "srv" / "app.py").write_text("")
    monkeypatch.setenv("HOME", str(home))
    app = _norm(tmp_path, {"cwd": "~/srv", "out_file": "~/logs/o.log"})
    assert app.cwd == str(home / "srv")
    assert app.out_file == str(home / "logs" / "o.log")
    app = _norm(tmp_path, {"cwd": str(home / "srv")})
    assert app.cwd == str(home / "srv")


def test_env_name_selects_env_table(tmp_path: Path) -> None:
    raw = {"env": {"A": "base", "B": "base"}, "env_production": {"B": "prod"}, "env_staging": {"B": 2}}
    assert _norm(tmp_path, raw).env == {"A": "base", "B": "base"}
    prod = _norm(tmp_path, raw, env_name="production")
    assert prod.env == {"A": "base", "B": "prod"}
    assert prod.env_names == ["production", "staging"]
    assert _norm(tmp_path, raw, env_name="staging").env == {"A": "base", "B": "2"}
    assert _norm(tmp_path, raw, env_name="nope").env == {"A": "base", "B": "base"}


def test_env_table_bad_value_names_the_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        _norm(tmp_path, {"name": "web", "env_production": {"A=B": "1"}})
    assert str(e.value) == "eco.toml: app 'web': key 'env_production': 'A=B' is not a valid environment variable name"


def test_env_objects_and_lists_are_stringified_as_pm2_does(tmp_path: Path) -> None:
    # PM2 (Common.mergeEnvironmentVariables) runs JSON.stringify on object values.
    raw = {"name": "web", "env": {"DB": {"host": "x", "port": 5432}}, "env_production": {"X": [1, "a"]}}
    app = _norm(tmp_path, raw, env_name="production")
    assert app.env == {"DB": '{"host":"x","port":5432}', "X": '[1,"a"]'}


def test_empty_env_table_is_fine(tmp_path: Path) -> None:
    app = _norm(tmp_path, {"env_production": None}, env_name="production")
    assert app.env == {} and app.env_names == ["production"]


def test_unknown_env_name_warns(tmp_path: Path) -> None:
    result = _load_one(tmp_path, {"name": "web", "env_production": {"A": 1}}, env_name="prod")
    assert result.warnings == ["eco.json: no app defines env_prod; only 'env' applies"]


# ---------------------------------------------------------------- interpreters


def _exe(path: Path, text: str = "#!/bin/sh\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def test_py_uses_the_active_virtualenv(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    python = _exe(venv / "bin" / "python")
    app = _norm(tmp_path, {}, env={**ENV, "VIRTUAL_ENV": str(venv)})
    assert app.interpreter == str(python)


def test_py_uses_a_virtualenv_set_in_the_app_env(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    python = _exe(venv / "bin" / "python")
    app = _norm(tmp_path, {"env": {"VIRTUAL_ENV": str(venv)}})
    assert app.interpreter == str(python)


@pytest.fixture
def not_in_a_venv(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if Corral itself were not installed in a virtualenv."""
    monkeypatch.setattr(sys, "base_prefix", sys.prefix)


@pytest.fixture
def in_a_venv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """As if Corral itself ran from the virtualenv tmp_path/corral-venv."""
    venv = tmp_path / "corral-venv"
    python = _exe(venv / "bin" / "python")
    monkeypatch.setattr(sys, "prefix", str(venv))
    monkeypatch.setattr(sys, "base_prefix", "/usr")
    return python


def test_py_uses_corrals_own_virtualenv_when_none_is_active(tmp_path: Path, in_a_venv: Path) -> None:
    _exe(tmp_path / "bin" / "python3")
    app = _norm(tmp_path, {}, env={"PATH": str(tmp_path / "bin")})
    assert app.interpreter == str(in_a_venv)


def test_active_virtualenv_wins_over_corrals_own(tmp_path: Path, in_a_venv: Path) -> None:
    python = _exe(tmp_path / "venv" / "bin" / "python")
    app = _norm(tmp_path, {}, env={**ENV, "VIRTUAL_ENV": str(tmp_path / "venv")})
    assert app.interpreter == str(python)


def test_py_without_virtualenv_uses_python3(tmp_path: Path, not_in_a_venv: None) -> None:
    fake = _exe(tmp_path / "bin" / "python3")
    app = _norm(tmp_path, {}, env={"PATH": str(tmp_path / "bin")})
    assert app.interpreter == str(fake)


def test_broken_virtualenv_falls_back_to_python3(tmp_path: Path, not_in_a_venv: None) -> None:
    fake = _exe(tmp_path / "bin" / "python3")
    app = _norm(tmp_path, {}, env={"PATH": str(tmp_path / "bin"), "VIRTUAL_ENV": str(tmp_path / "gone")})
    assert app.interpreter == str(fake)


@pytest.mark.parametrize(("ext", "program"), [(".sh", "bash"), (".js", "node"), (".cjs", "node"), (".mjs", "node"), (".rb", "ruby"), (".php", "php"), (".pl", "perl")])
def test_interpreter_by_extension(tmp_path: Path, ext: str, program: str) -> None:
    fake = _exe(tmp_path / "bin" / program)
    (tmp_path / f"s{ext}").write_text("")
    app = _norm(tmp_path, {"script": f"s{ext}"}, env={"PATH": str(tmp_path / "bin")})
    assert app.interpreter == str(fake)


def test_interpreter_by_extension_not_installed(tmp_path: Path) -> None:
    (tmp_path / "s.rb").write_text("")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError) as e:
        _norm(tmp_path, {"name": "r", "script": "s.rb"}, env={"PATH": str(tmp_path / "empty")})
    assert str(e.value) == "eco.toml: app 'r': key 'interpreter': the interpreter for .rb files, 'ruby' is not on PATH"


def test_interpreter_none_runs_the_file(tmp_path: Path) -> None:
    tool = _exe(tmp_path / "tool.py")
    app = _norm(tmp_path, {"script": "tool.py", "interpreter": "none"})
    assert app.interpreter == "none" and app.script == str(tool)


def test_executable_without_extension_runs_directly(tmp_path: Path) -> None:
    tool = _exe(tmp_path / "tool")
    app = _norm(tmp_path, {"script": "tool"})
    assert app.interpreter == "none" and app.script == str(tool)


def test_program_on_path(tmp_path: Path) -> None:
    prog = _exe(tmp_path / "bin" / "myserver")
    app = _norm(tmp_path, {"script": "myserver", "args": "--port 1"}, env={"PATH": str(tmp_path / "bin")})
    assert app.script == str(prog)
    assert app.interpreter == "none"
    assert app.name == "myserver"


def test_program_on_path_from_the_app_env(tmp_path: Path) -> None:
    prog = _exe(tmp_path / "bin" / "myserver")
    app = _norm(tmp_path, {"script": "myserver", "env": {"PATH": str(tmp_path / "bin")}}, env={"PATH": "/nonexistent"})
    assert app.script == str(prog)


def test_module_mode(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    python = _exe(venv / "bin" / "python")
    app = _norm(tmp_path, {"script": "uvicorn", "interpreter_args": "-m", "args": "main:app"}, env={**ENV, "VIRTUAL_ENV": str(venv)})
    assert app.interpreter == str(python)
    assert app.script == "uvicorn"
    assert app.interpreter_args == ["-m"]
    assert app.name == "uvicorn"


def test_explicit_interpreter_relative_to_cwd(tmp_path: Path) -> None:
    python = _exe(tmp_path / ".venv" / "bin" / "python")
    app = _norm(tmp_path, {"interpreter": ".venv/bin/python"})
    assert app.interpreter == str(python)


def test_explicit_interpreter_path_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        _norm(tmp_path, {"name": "w", "interpreter": "venv/bin/python"})
    assert str(e.value) == f"eco.toml: app 'w': key 'interpreter': interpreter {tmp_path}/venv/bin/python does not exist or is not executable"


def test_explicit_interpreter_on_path(tmp_path: Path) -> None:
    fake = _exe(tmp_path / "bin" / "pypy3")
    app = _norm(tmp_path, {"interpreter": "pypy3"}, env={"PATH": str(tmp_path / "bin")})
    assert app.interpreter == str(fake)


# ---------------------------------------------------------------- several apps, --only


def _three(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "app.py").write_text("")
    return {"apps": [{"name": n, "script": "app.py"} for n in ("web", "worker", "cron")]}


@pytest.mark.parametrize(
    ("only", "names"),
    [
        (None, ["web", "worker", "cron"]),
        (["worker"], ["worker"]),
        (["cron", "web"], ["web", "cron"]),
        ([" worker ", ""], ["worker"]),
        ([], ["web", "worker", "cron"]),
    ],
)
def test_only(tmp_path: Path, only: list[str] | None, names: list[str]) -> None:
    result = load_apps(_three(tmp_path), label="eco.toml", base_dir=tmp_path, only=only, client_env=ENV)
    assert [a.name for a in result.apps] == names
    assert [d.app.name for d in result.details] == names


@pytest.mark.parametrize(
    ("only", "message"),
    [
        (["api"], "eco.toml: --only names an app not in the file: api (the file has: web, worker, cron)"),
        (["web", "api", "db"], "eco.toml: --only names apps not in the file: api, db (the file has: web, worker, cron)"),
    ],
)
def test_only_names_missing_apps(tmp_path: Path, only: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_apps(_three(tmp_path), label="eco.toml", base_dir=tmp_path, only=only, client_env=ENV)
    assert str(e.value) == message


def test_only_still_validates_every_app(tmp_path: Path) -> None:
    data = _three(tmp_path)
    data["apps"][2]["instances"] = "lots"
    with pytest.raises(ConfigError) as e:
        load_apps(data, label="eco.toml", base_dir=tmp_path, only=["web"], client_env=ENV)
    assert e.value.app == "cron"


def test_duplicate_derived_names(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("")
    with pytest.raises(ConfigError) as e:
        load_apps([{"script": "app.py"}, {"script": "./app.py"}], label="eco.json", base_dir=tmp_path, client_env=ENV)
    assert str(e.value) == "eco.json: app 'app': key 'name': apps #1 and #2 have the same name"


def test_empty_apps_list(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_apps({"apps": []}, label="eco.json", base_dir=tmp_path, client_env=ENV)
    assert str(e.value) == "eco.json: no apps defined"


def test_js_needing_node(tmp_path: Path) -> None:
    pytest.importorskip("corral.config.jsobject", reason="the JS parser is not there yet")
    if NODE is None:
        pytest.skip("node is not installed")
    (tmp_path / "app.py").write_text("")
    path = tmp_path / "ecosystem.config.js"
    path.write_text("module.exports = { apps: [{ name: 'a', script: 'app.py', env: { N: 1 + 2 } }] };\n")
    assert load(path).apps[0].env == {"N": "3"}


# ---------------------------------------------------------------- docs


def test_docs_are_up_to_date() -> None:
    """docs/config.md is generated from KEYS: regenerate with python -m corral.config.docs --write."""
    assert docs.DOCS_PATH.read_text(encoding="utf-8") == docs.render(), (
        "docs/config.md is stale: run python -m corral.config.docs --write"
    )


def test_docs_check_mode() -> None:
    assert docs.main(["--check"]) == 0


def test_docs_list_every_key_and_ignored_key() -> None:
    from corral.config.keys import KEYS, NODE_ONLY_KEYS

    text = docs.render()
    for key in KEYS:
        assert f"| `{key.name}` |" in text
    for name in NODE_ONLY_KEYS:
        assert f"| `{name}` |" in text


def test_docs_examples_load_to_the_same_apps(tmp_path: Path) -> None:
    for script in ("web.py", "worker.py"):
        (tmp_path / script).write_text("")
    files = {"ecosystem.toml": docs.EXAMPLE_TOML, "ecosystem.yaml": docs.EXAMPLE_YAML}
    try:
        import corral.config.jsobject  # noqa: F401

        files["ecosystem.config.js"] = docs.EXAMPLE_JS
    except ImportError:
        pass
    results = {}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        results[name] = load(tmp_path / name, env_name="production")
    expected = results.pop("ecosystem.toml")
    assert expected.warnings == [] and expected.notices == []
    for result in results.values():
        assert result.apps == expected.apps
