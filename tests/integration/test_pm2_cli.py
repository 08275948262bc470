"""Every row of docs/pm2.md (corral.cli.pm2), run with the real CLI against one real daemon.

A supported row does what the table says; an unsupported row is refused with
exit 2.  One daemon serves the whole module; each test uses its own app names.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.cli import pm2
from corral.config.keys import KEY_BY_NAME, KEYS
from tests.conftest import Corral, ecosystem, wait_until, write

APP = "import time\nprint('hello-from-app', flush=True)\nwhile True:\n    time.sleep(1)\n"


class Cli(Corral):
    def run_in(self, *args: str, stdin: str = "", check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "corral", *args], cwd=cwd or self.cwd, env=self.env, input=stdin, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"corral {' '.join(args)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def statuses(self, name: str) -> list[str]:
        return [p["status"] for p in self.jlist() if p["name"] == name]

    def online(self, name: str, count: int = 1) -> None:
        wait_until(lambda: self.statuses(name) == ["online"] * count, message=f"{name} online x{count}")

    def saved_config(self, name: str) -> dict[str, Any]:
        self.run("save", "--force")
        data = json.loads((self.home / "dump.json").read_text())
        for entry in data["apps"]:
            if entry["config"]["name"] == name:
                config: dict[str, Any] = entry["config"]
                return config
        raise KeyError(name)


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    root = tmp_path_factory.mktemp("pm2cli")
    work = root / "work"
    work.mkdir()
    write(work / "app.py", APP)
    c = Cli(root / "home", work)
    c.run("ping")
    try:
        yield c
    finally:
        c.shutdown()


def _start(cli: Cli, name: str, *extra: str, script: str = "app.py") -> None:
    cli.run("start", script, "--name", name, *extra)
    cli.online(name)


# ---------------------------------------------------------------- the table itself


def test_docs_pm2_md_is_generated_from_the_table() -> None:
    assert pm2.DOCS_PATH.read_text() == pm2.render(), "run: python -m corral.cli.pm2 --write"


def test_every_pm2_flag_declared_on_a_key_has_a_row_and_back() -> None:
    declared = {n for k in KEYS for f in k.flags if f.pm2 for n in f.names}
    in_rows = {n for r in pm2.key_rows() for n in r.names}
    assert declared == in_rows
    for row in pm2.key_rows():
        flags = [f for f in KEY_BY_NAME[row.key or ""].flags if set(f.names) & set(row.names)]
        assert flags and all(f.pm2 for f in flags), row.pm2


# ---------------------------------------------------------------- start options


@pytest.mark.parametrize("row", pm2.key_rows(), ids=lambda r: r.pm2.split()[-1] if r.pm2.split()[-1].startswith("-") else r.names[-1])
def test_start_flag_sets_its_key(cli: Cli, row: pm2.StartFlag) -> None:
    i = pm2.START_FLAGS.index(row)
    name = "web1" if row.key == "name" else f"flag{i}"
    args = ["start", str(cli.cwd / "app.py"), *(() if row.key == "name" else ("--name", name)), "--no-autostart", *row.example]
    cli.run(*args)
    assert cli.saved_config(name)[row.key or ""] == row.expect


UNSUPPORTED_FLAGS = [r for r in pm2.START_FLAGS if r.key is None and r.corral is None]


@pytest.mark.parametrize("row", UNSUPPORTED_FLAGS, ids=lambda r: r.names[-1])
def test_unsupported_start_flag_is_refused(cli: Cli, row: pm2.StartFlag) -> None:
    out = cli.run("start", "app.py", "--name", "never", row.names[-1], check=False)
    assert out.returncode == 2 and "unrecognized arguments" in out.stderr, out.stderr
    assert "never" not in cli.statuses("never") and not cli.statuses("never")


def flag_env(cli: Cli) -> None:
    write(cli.cwd / "envs.toml", ecosystem({"name": "envapp", "script": "app.py", "env": {"MODE": "dev"}, "env_production": {"MODE": "prod"}}))
    cli.run("start", "envs.toml", "--env", "production")
    assert cli.saved_config("envapp")["env"]["MODE"] == "prod"


def flag_only(cli: Cli) -> None:
    write(cli.cwd / "two.toml", ecosystem({"name": "only-a", "script": "app.py"}, {"name": "only-b", "script": "app.py"}))
    cli.run("start", "two.toml", "--only", "only-b")
    cli.online("only-b")
    assert cli.statuses("only-a") == []


def flag_update_env(cli: Cli) -> None:
    _start(cli, "upd")
    env = dict(cli.env, NEW_VAR="seen")
    out = subprocess.run([sys.executable, "-m", "corral", "restart", "upd", "-a"], cwd=cli.cwd, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    pid = cli.proc("upd")["pid"]
    from tests.conftest import proc_environ

    assert proc_environ(pid).get("NEW_VAR") == "seen"


def flag_version(cli: Cli) -> None:
    assert cli.run("--version").stdout.startswith("corral ")
    assert cli.run("-v").stdout.startswith("corral ")


def flag_startup_user(cli: Cli) -> None:
    unit = cli.run("startup", "systemd", "--user", "root", "--home", str(cli.home), "--service-name", "corral-t").stdout
    assert "User=root" in unit and str(cli.home) in unit


FLAG_TESTS: dict[str, Callable[[Cli], None]] = {
    "--env <environment_name>": flag_env,
    "--only <application-name>": flag_only,
    "-a --update-env": flag_update_env,
    "-v --version": flag_version,
    "-u --user <username>": flag_startup_user,
    "--hp <home path>": flag_startup_user,
    "--service-name <name>": flag_startup_user,
}
OTHER_FLAGS = [r for r in pm2.START_FLAGS if r.key is None and r.corral is not None]


def test_every_other_flag_row_has_a_test() -> None:
    assert {r.pm2 for r in OTHER_FLAGS} == set(FLAG_TESTS)


@pytest.mark.parametrize("row", OTHER_FLAGS, ids=lambda r: r.names[-1])
def test_other_start_flag(cli: Cli, row: pm2.StartFlag) -> None:
    FLAG_TESTS[row.pm2](cli)


def test_watch_flag_before_the_script_and_watch_paths(cli: Cli) -> None:
    (cli.cwd / "src").mkdir(exist_ok=True)
    cli.run("start", "--watch", "app.py", "--name", "w1", "--no-autostart")
    assert cli.saved_config("w1")["watch"] is True
    cli.run("start", "app.py", "--name", "w2", "--no-autostart", "--watch", "src", "--watch", "lib")
    assert cli.saved_config("w2")["watch"] == ["src", "lib"]


# ---------------------------------------------------------------- commands


def v_start(cli: Cli) -> None:
    write(cli.cwd / "vs.toml", ecosystem({"name": "vs", "script": "app.py"}))
    cli.run("start", "vs.toml")
    cli.online("vs")
    cli.run("stop", "vs")
    cli.run("start", "vs")
    cli.online("vs")
    assert cli.run("start", "nosuch-app", check=False).returncode == 1


def v_start_stdin(cli: Cli) -> None:
    cli.run_in("start", "-", stdin=json.dumps([{"name": "stdin1", "script": "app.py"}, {"name": "stdin2", "script": "app.py"}]))
    cli.online("stdin1")
    cli.online("stdin2")
    bad = cli.run_in("start", "-", stdin="{not json", check=False)
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr


def v_stop(cli: Cli) -> None:
    _start(cli, "vstop")
    cli.run("stop", "vstop")
    assert cli.statuses("vstop") == ["stopped"]
    missing = cli.run("stop", "nosuch", check=False)
    assert missing.returncode == 1 and "nosuch" in missing.stderr and "Traceback" not in missing.stderr


def v_stop_stdin(cli: Cli) -> None:
    _start(cli, "vstop2")
    cli.run_in("stop", "-", stdin=json.dumps({"apps": [{"name": "vstop2", "script": "app.py"}]}))
    assert cli.statuses("vstop2") == ["stopped"]


def v_restart(cli: Cli) -> None:
    write(cli.cwd / "other.py", APP)
    _start(cli, "byscript", script="other.py")
    pid = cli.proc("byscript")["pid"]
    cli.run("restart", "other.py")
    wait_until(lambda: cli.proc("byscript")["pid"] not in (None, pid) and cli.proc("byscript")["status"] == "online")
    assert cli.proc("byscript")["restarts"] == 1
    assert cli.run("restart", "missing.py", check=False).returncode == 1


def v_restart_stdin(cli: Cli) -> None:
    _start(cli, "rstdin")
    cli.run_in("restart", "-", stdin=json.dumps({"name": "rstdin"}))
    wait_until(lambda: cli.proc("rstdin")["restarts"] == 1)


def v_reload(cli: Cli) -> None:
    _start(cli, "vreload")
    out = cli.run("reload", "vreload")
    assert "vreload" in out.stderr
    cli.online("vreload")


def v_delete(cli: Cli) -> None:
    _start(cli, "vdel")
    cli.run("delete", "vdel")
    assert cli.statuses("vdel") == []
    assert cli.run("delete", "vdel", check=False).returncode == 1


def v_delete_stdin(cli: Cli) -> None:
    _start(cli, "vdel2")
    cli.run_in("delete", "-", stdin=json.dumps([{"script": "app.py", "name": "vdel2"}]))
    assert cli.statuses("vdel2") == []


def v_scale(cli: Cli) -> None:
    _start(cli, "vscale")
    cli.run("scale", "vscale", "2")
    cli.online("vscale", 2)


def v_signal(cli: Cli) -> None:
    _start(cli, "vsig")
    out = cli.run("sendSignal", "SIGCONT", "vsig")
    assert "SIGCONT" in out.stderr


def v_reset(cli: Cli) -> None:
    _start(cli, "vreset")
    cli.run("restart", "vreset")
    wait_until(lambda: cli.proc("vreset")["restarts"] == 1)
    cli.run("reset", "vreset")
    assert cli.proc("vreset")["restarts"] == 0


def v_ls(cli: Cli) -> None:
    _start(cli, "vls")
    for verb in ("ls", "list", "l", "ps", "status"):
        assert "vls" in cli.run(verb).stdout


def v_jlist(cli: Cli) -> None:
    _start(cli, "vjl")
    assert any(p["name"] == "vjl" for p in json.loads(cli.run("jlist").stdout))


def v_prettylist(cli: Cli) -> None:
    _start(cli, "vpl")
    out = cli.run("prettylist").stdout
    assert "\n  " in out and any(p["name"] == "vpl" for p in json.loads(out))


def v_describe(cli: Cli) -> None:
    _start(cli, "vdesc", "--kill-timeout", "5s")
    for verb in ("describe", "desc", "info", "show"):
        out = cli.run(verb, "vdesc").stdout
        assert "name vdesc" in out and "kill_timeout" in out and ": 5s" in out


def v_env(cli: Cli) -> None:
    _start(cli, "venv")
    out = cli.run("env", str(cli.proc("venv")["id"])).stdout
    assert "CORRAL_INSTANCE: 0" in out


def v_logs(cli: Cli) -> None:
    _start(cli, "vlogs")
    wait_until(lambda: "hello-from-app" in cli.run("logs", "vlogs", "--nostream", "--lines", "5").stdout)


def v_flush(cli: Cli) -> None:
    _start(cli, "vflush")
    wait_until(lambda: "hello-from-app" in cli.run("logs", "vflush", "--nostream").stdout)
    cli.run("flush", "vflush")
    assert "hello-from-app" not in cli.run("logs", "vflush", "--nostream").stdout


def v_reload_logs(cli: Cli) -> None:
    assert "reopened" in cli.run("reloadLogs").stderr


def v_dump(cli: Cli) -> None:
    _start(cli, "vdump")
    cli.run("dump")
    assert "vdump" in (cli.home / "dump.json").read_text()


def v_resurrect(cli: Cli) -> None:
    _start(cli, "vres")
    cli.run("save")
    cli.run("delete", "vres")
    cli.run("resurrect")
    cli.online("vres")


def v_ping(cli: Cli) -> None:
    assert json.loads(cli.run("ping").stdout)["msg"] == "pong"


def v_monit(cli: Cli) -> None:
    # interactive: tests/integration/test_monit.py drives it in a terminal
    assert "--interval" in cli.run("monit", "--help").stdout


def v_startup(cli: Cli) -> None:
    unit = cli.cwd / "corral-t.service"
    cli.run("startup", "systemd", "-o", str(unit))
    assert "ExecStart=" in unit.read_text()


def v_unstartup(cli: Cli) -> None:
    units = cli.cwd / "units"
    units.mkdir(exist_ok=True)
    (units / "corral-t.service").write_text("[Unit]\n")
    cli.run("unstartup", "--unit-dir", str(units), "--service-name", "corral-t")
    assert not (units / "corral-t.service").exists()


def v_ecosystem(cli: Cli) -> None:
    folder = cli.cwd / "init"
    folder.mkdir(exist_ok=True)
    cli.run("ecosystem", "init", cwd=folder)
    assert (folder / "ecosystem.toml").exists()


def v_kill(cli: Cli) -> None:
    # its own daemon: the module's is shared
    own = Cli(cli.home.parent / "killhome", cli.cwd)
    own.run("start", "app.py", "--name", "k")
    own.online("k")
    pid = own.daemon_pid()
    assert "stopped" in own.run("kill").stderr
    from tests.conftest import pid_alive

    wait_until(lambda: pid is not None and not pid_alive(pid))


def v_pid(cli: Cli) -> None:
    _start(cli, "vpid")
    assert cli.run("pid", "vpid").stdout.split() == [str(cli.proc("vpid")["pid"])]
    assert cli.run("pid", "nosuch", check=False).returncode == 1


def v_start_or_reload(cli: Cli) -> None:
    write(cli.cwd / "sor.toml", ecosystem({"name": "sor1", "script": "app.py"}))
    cli.run("reload", "sor.toml")
    cli.online("sor1")


VERB_TESTS: dict[str, Callable[[Cli], None]] = {
    "start <file|script|name|id>": v_start,
    "start -": v_start_stdin,
    "stop <id|name|namespace|all|script>": v_stop,
    "stop -": v_stop_stdin,
    "restart <id|name|namespace|all|script>": v_restart,
    "restart -": v_restart_stdin,
    "reload <id|name|namespace|all>": v_reload,
    "delete <name|id|namespace|script|all>": v_delete,
    "delete -": v_delete_stdin,
    "scale <app_name> <number>": v_scale,
    "sendSignal <signal> <pm2_id|name>": v_signal,
    "reset <name|id|all>": v_reset,
    "ls": v_ls,
    "jlist": v_jlist,
    "prettylist": v_prettylist,
    "describe <name|id>": v_describe,
    "env <id>": v_env,
    "logs [id|name|namespace]": v_logs,
    "flush [api]": v_flush,
    "reloadLogs": v_reload_logs,
    "dump": v_dump,
    "resurrect": v_resurrect,
    "ping": v_ping,
    "monit": v_monit,
    "startup [platform]": v_startup,
    "unstartup [platform]": v_unstartup,
    "ecosystem [mode]": v_ecosystem,
    "kill": v_kill,
    "pid [app_name]": v_pid,
    "startOrReload <json>": v_start_or_reload,
    "startOrGracefulReload <json>": v_start_or_reload,
}
SUPPORTED_VERBS = [v for v in pm2.VERBS if v.corral is not None]
UNSUPPORTED_VERBS = [v for v in pm2.VERBS if v.corral is None]


def test_every_supported_verb_row_has_a_test() -> None:
    assert {v.pm2 for v in SUPPORTED_VERBS} == set(VERB_TESTS)


@pytest.mark.parametrize("verb", SUPPORTED_VERBS, ids=lambda v: v.pm2)
def test_verb(cli: Cli, verb: pm2.Verb) -> None:
    VERB_TESTS[verb.pm2](cli)


@pytest.mark.parametrize("verb", UNSUPPORTED_VERBS, ids=lambda v: v.name)
def test_unsupported_verb_is_refused(cli: Cli, verb: pm2.Verb) -> None:
    out = cli.run(verb.name, check=False)
    assert out.returncode == 2 and "invalid choice" in out.stderr, out.stderr


@pytest.mark.parametrize(
    "argv",
    [["stop", "nosuch"], ["restart", "nosuch"], ["restart", "nosuch.py"], ["delete", "nosuch"], ["reset", "nosuch"], ["reload", "nosuch"], ["scale", "nosuch", "2"], ["sendSignal", "SIGUSR1", "nosuch"], ["describe", "nosuch"], ["env", "99999"], ["logs", "nosuch", "--nostream"], ["flush", "nosuch"], ["pid", "nosuch"], ["start", "nosuch"]],
    ids=lambda a: " ".join(a),
)
def test_nothing_matched_exits_1_with_one_line(cli: Cli, argv: list[str]) -> None:
    out = cli.run(*argv, check=False)
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith("corral: error: ") and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "nosuch" in out.stderr or "99999" in out.stderr
