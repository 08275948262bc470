"""PM2's ways of reading an app, as Corral's loader now reads them (see docs/pm2-files.md)."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from corral.config.dotenv import DotenvError, parse_dotenv
from corral.config.loader import NotOnThisMachine, load_apps, normalize_app_detail
from corral.core.errors import ConfigError
from corral.node import program_kind, read_shebang

NODE = shutil.which("node")
BASH = shutil.which("bash")
PY3 = shutil.which("python3")


def script(folder: Path, name: str, text: str, *, executable: bool = True) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if executable:
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def norm(folder: Path, raw: dict[str, Any], *, here: bool = True, env_name: str | None = None) -> tuple[dict[str, Any], list[str]]:
    r = normalize_app_detail(raw, label="eco.js", base_dir=folder, env_name=env_name, client_env=os.environ, here=here)
    return r.app, r.warnings


# ---------------------------------------------------------------- shebangs


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("#!/usr/bin/env node", ["node"]),
        ("#!/usr/bin/env -S node --max-old-space-size=100", ["node", "--max-old-space-size=100"]),
        ("#!/usr/bin/node", ["/usr/bin/node"]),
        ("#!/usr/bin/env NODE_ENV=x node", ["node"]),
        ("#! /usr/bin/python3 -u", ["/usr/bin/python3", "-u"]),
        ("echo hi", None),
    ],
)
def test_read_shebang(tmp_path: Path, line: str, words: list[str] | None) -> None:
    assert read_shebang(str(script(tmp_path, "s", line + "\n"))) == words


@pytest.mark.parametrize(
    ("program", "kind"),
    [("node", "node"), ("/usr/local/bin/node", "node"), ("nodejs", "node"), ("node20", "node"),
     ("bun", "bun"), ("python3.11", "python"), ("python", "python"), ("bash", None), ("nodemon", None), (None, None)],
)
def test_program_kind(program: str | None, kind: str | None) -> None:
    assert program_kind(program) == kind


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_node_shebang_runs_under_node_with_node_args(tmp_path: Path) -> None:
    # The design document's app: next's bin is an executable JS file without extension.
    script(tmp_path, "node_modules/.bin/next", "#!/usr/bin/env node\nrequire('x')\n")
    app, _ = norm(tmp_path, {"name": "web", "script": "node_modules/.bin/next", "args": "start",
                             "node_args": "--max-old-space-size=3072", "instances": 4})
    assert app.interpreter == NODE
    assert app.interpreter_args == ["--max-old-space-size=3072"]
    assert app.exec_mode == "cluster"  # PM2's default for node with instances
    from corral.config.loader import build_argv

    assert build_argv(app) == [NODE, "--max-old-space-size=3072", str(tmp_path / "node_modules/.bin/next"), "start"]


@pytest.mark.skipif(NODE is None, reason="node is not installed")
@pytest.mark.parametrize(
    ("raw", "mode"),
    [
        ({"script": "a.js", "instances": 2}, "cluster"),
        ({"script": "a.js", "instances": 1}, "cluster"),
        ({"script": "a.js", "instances": "max"}, "cluster"),
        ({"script": "a.js"}, "fork"),
        ({"script": "a.js", "instances": 2, "exec_mode": "fork"}, "fork"),
        ({"script": "a.py", "instances": 2}, "fork"),
        ({"script": "a.mjs", "instances": 2}, "cluster"),
    ],
)
def test_pm2_default_exec_mode(tmp_path: Path, raw: dict[str, Any], mode: str) -> None:
    script(tmp_path, raw["script"], "", executable=False)
    app, _ = norm(tmp_path, raw)
    assert app.exec_mode == mode


def test_interpreter_none_with_args_is_an_error(tmp_path: Path) -> None:
    script(tmp_path, "run", "#!/bin/sh\nexit 0\n")
    with pytest.raises(ConfigError) as e:
        norm(tmp_path, {"name": "w", "script": "run", "interpreter": "none", "node_args": "--inspect"})
    assert e.value.key == "node_args"
    assert "would be lost" in str(e.value) and "interpreter is 'none'" in str(e.value)
    with pytest.raises(ConfigError) as e:  # a shell script has no interpreter to take them
        norm(tmp_path, {"name": "w", "script": "run", "interpreter_args": ["-x"]})
    assert "would be lost" in str(e.value) and "runs directly" in str(e.value)


@pytest.mark.skipif(PY3 is None, reason="python3 is not on PATH")
def test_python_shebang_takes_interpreter_args(tmp_path: Path) -> None:
    script(tmp_path, "tool", "#!/usr/bin/env python3\nprint(1)\n")
    app, _ = norm(tmp_path, {"name": "t", "script": "tool", "interpreter_args": "-X dev"})
    assert app.interpreter == PY3 and app.interpreter_args == ["-X", "dev"]
    app, _ = norm(tmp_path, {"name": "t", "script": "tool"})  # no args: runs as its shebang says
    assert app.interpreter == "none"


def test_bun_shebang_and_missing_bun(tmp_path: Path) -> None:
    script(tmp_path, "srv", "#!/usr/bin/env bun\nBun.serve({})\n")
    if shutil.which("bun"):
        app, _ = norm(tmp_path, {"name": "b", "script": "srv", "instances": 2})
        assert program_kind(app.interpreter) == "bun" and app.exec_mode == "cluster"
    else:
        with pytest.raises(NotOnThisMachine) as e:
            norm(tmp_path, {"name": "b", "script": "srv"})
        assert "'bun' is not on PATH" in str(e.value)
        app, warnings = norm(tmp_path, {"name": "b", "script": "srv"}, here=False)
        assert any(w.endswith("not on this machine") for w in warnings)


# ---------------------------------------------------------------- other PM2 forms


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_script_with_spaces_runs_through_bash(tmp_path: Path) -> None:
    app, warnings = norm(tmp_path, {"script": "npm start", "args": "--x"})
    assert app.name == "npm start"  # PM2's name: the script's basename
    assert app.script == BASH and app.args == ["-c", "npm start"] and app.interpreter == "none"
    assert any("'args' is ignored" in w for w in warnings)
    # A file whose name has a space is run as the file.
    script(tmp_path, "my app.py", "", executable=False)
    app, _ = norm(tmp_path, {"name": "x", "script": "my app.py"})
    assert app.script == str(tmp_path / "my app.py")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("log_date_format", False, None),
        ("log_date_format", None, None),
        # deliberate: null and false switch a log off in Corral (PM2: the default path)
        ("out_file", None, None),
        ("error_file", False, None),
        ("name", None, "app"),
        ("max_memory_restart", False, None),
        ("cron_restart", False, None),
        ("instances", None, 1),
        ("pid_file", False, None),
    ],
)
def test_pm2_falsy_values_mean_unset(tmp_path: Path, key: str, value: Any, expected: Any) -> None:
    script(tmp_path, "app.py", "", executable=False)
    app, _ = norm(tmp_path, {"script": "app.py", key: value})
    assert getattr(app, key) == expected


def test_port_sets_port_and_the_cluster_socket(tmp_path: Path) -> None:
    script(tmp_path, "a.js", "", executable=False)
    app, _ = norm(tmp_path, {"script": "a.js", "port": 3000, "instances": 2})
    assert app.env["PORT"] == "3000" and app.listen == ["0.0.0.0:3000"]


# ---------------------------------------------------------------- env_file


def test_parse_dotenv() -> None:
    text = (
        "# comment\n\nexport A=1\nB = two words # note\nC='single # kept'\n"
        'D="line\\nnext \\"q\\""\nE="multi\nline"\nF=\nG=a#b\n'
    )
    assert parse_dotenv(text) == {
        "A": "1", "B": "two words", "C": "single # kept", "D": 'line\nnext "q"', "E": "multi\nline", "F": "", "G": "a#b",
    }
    for bad in ("NOEQUALS\n", "1X=2\n", "A='open\n", 'A="open\n', 'A="x" y\n'):
        with pytest.raises(DotenvError):
            parse_dotenv(bad)


def test_env_file_precedence_and_paths(tmp_path: Path) -> None:
    script(tmp_path, "app.py", "", executable=False)
    (tmp_path / ".env").write_text("A=file\nB=file\nC=file\n")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "more.env").write_text("C=more\nD=more\n")
    raw = {"script": "app.py", "env_file": [".env", "conf/more.env"], "env": {"B": "env"}, "env_production": {"A": "prod"}}
    app, _ = norm(tmp_path, raw, env_name="production")
    assert app.env == {"A": "prod", "B": "env", "C": "more", "D": "more"}
    assert "file" not in app.env_names  # not an env table named "file"
    app, _ = norm(tmp_path, {"script": "app.py", "env_file": ".env"})
    assert app.env == {"A": "file", "B": "file", "C": "file"}


def test_env_file_missing_or_bad(tmp_path: Path) -> None:
    script(tmp_path, "app.py", "", executable=False)
    with pytest.raises(NotOnThisMachine) as e:
        norm(tmp_path, {"name": "w", "script": "app.py", "env_file": "nope.env"})
    assert str(e.value) == f"eco.js: app 'w': key 'env_file': env file {tmp_path}/nope.env does not exist"
    _, warnings = norm(tmp_path, {"name": "w", "script": "app.py", "env_file": "nope.env"}, here=False)
    assert warnings == [f"eco.js: app 'w': key 'env_file': env file {tmp_path}/nope.env does not exist: not on this machine"]
    (tmp_path / "bad.env").write_text("OK=1\nnot a line\n")
    with pytest.raises(ConfigError) as e:
        norm(tmp_path, {"name": "w", "script": "app.py", "env_file": "bad.env"})
    assert "line 2: expected NAME=value" in str(e.value) and e.value.key == "env_file"
    with pytest.raises(ConfigError):
        norm(tmp_path, {"name": "w", "script": "app.py", "env_file": [1]})


# ---------------------------------------------------------------- another machine


def test_absolute_paths_of_another_machine(tmp_path: Path) -> None:
    data = {"apps": [
        {"name": "api", "cwd": "/home/ubuntu/app", "script": "dist/main.js"},
        {"name": "py", "script": "/var/www/site/venv/bin/gunicorn", "args": "app:app"},
        {"name": "int", "script": "app.py", "interpreter": "/opt/venv/bin/python"},
    ]}
    script(tmp_path, "app.py", "", executable=False)
    with pytest.raises(NotOnThisMachine) as e:
        load_apps(data, label="eco.js", base_dir=tmp_path)
    assert str(e.value) == "eco.js: app 'api': key 'cwd': folder /home/ubuntu/app does not exist"
    result = load_apps(data, label="eco.js", base_dir=tmp_path, here=False)
    assert [a.name for a in result.apps] == ["api", "py", "int"]
    assert result.apps[0].script == "/home/ubuntu/app/dist/main.js"
    missing = [w for w in result.warnings if w.endswith("not on this machine")]
    assert len(missing) == 3, result.warnings
    # A relative path missing is a mistake in the file, on any machine.
    with pytest.raises(ConfigError):
        load_apps({"apps": [{"name": "r", "script": "dist/nope.js"}]}, label="eco.js", base_dir=tmp_path, here=False)


# ---------------------------------------------------------------- PM2's readings of values


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('--title "two words" plain', ["--title", "two words", "plain"]),
        ("--mode='single q' x", ["--mode='single q'", "x"]),
        ('--name="a b" --n 3', ['--name="a b"', "--n", "3"]),
        ("a\\ b", ["a\\", "b"]),  # no escapes in PM2's splitting
        ("  ", []),
    ],
)
def test_pm2_split_args(text: str, words: list[str]) -> None:
    from corral.config.loader import pm2_split_args

    assert pm2_split_args(text) == words


def test_pm2_formats_split_args_as_pm2_and_toml_as_a_shell(tmp_path: Path) -> None:
    script(tmp_path, "app.js", "", executable=False)
    raw = {"name": "a", "script": "app.js", "args": '--name="a b"'}
    js = normalize_app_detail(raw, label="eco.config.js", base_dir=tmp_path, client_env=os.environ)
    toml = normalize_app_detail(raw, label="eco.toml", base_dir=tmp_path, client_env=os.environ)
    assert js.app.args == ['--name="a b"'] and toml.app.args == ["--name=a b"]


def test_log_type_other_than_json_is_text_with_a_warning(tmp_path: Path) -> None:
    script(tmp_path, "app.js", "", executable=False)
    r = normalize_app_detail({"name": "a", "script": "app.js", "log_type": "format"}, label="e.config.js", base_dir=tmp_path)
    assert r.app.log_type == "text" and any("log_type 'format'" in w for w in r.warnings)


def test_pm2_key_deploy_env_and_export_const(tmp_path: Path) -> None:
    from corral.config.jsobject import parse_js_literal

    script(tmp_path, "app.js", "", executable=False)
    result = load_apps({"pm2": [{"name": "legacy", "script": "app.js"}]}, label="p.json", base_dir=tmp_path)
    assert [a.name for a in result.apps] == ["legacy"]
    data = {"apps": [{"name": "d", "script": "app.js", "env": {"A": "app"}, "env_production": {"B": "prod"}}],
            "deploy": {"production": {"env": {"A": "deploy", "C": "deploy"}}}}
    prod = load_apps(data, label="e.config.js", base_dir=tmp_path, env_name="production").apps[0]
    assert prod.env == {"A": "app", "B": "prod", "C": "deploy"}  # deploy env lowest, as PM2
    assert load_apps(data, label="e.config.js", base_dir=tmp_path).apps[0].env == {"A": "app"}
    assert parse_js_literal("export const apps = [{ script: 'a.js' }];") == {"apps": [{"script": "a.js"}]}
    assert parse_js_literal("export const apps = []; export default { apps: [1] };") == {"apps": [1]}
