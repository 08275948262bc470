"""The app spec on the wire and in the dump file, on a real daemon: a malformed app in a
request is refused naming the app and the key (nothing started, the daemon lives on), and
a dump file written as plain dicts by an earlier version still resurrects."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest

from tests.conftest import Corral, wait_until, write
from tests.integration.test_daemon import SLEEPER, raw_exchange


def request(corral: Corral, apps: list[Any]) -> dict[str, Any]:
    payload = json.dumps({"v": 1, "id": 1, "cmd": "start", "args": {"apps": apps}}).encode() + b"\n"
    [reply] = raw_exchange(corral.home / "corral.sock", payload)
    return reply


def good(corral: Corral, **changes: Any) -> dict[str, Any]:
    script = corral.cwd / "app.py"
    write(script, SLEEPER)
    return {"name": "web", "script": str(script), "interpreter": sys.executable, "cwd": str(corral.cwd), **changes}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kill_timeout": "5s"}, "request: app 'web': key 'kill_timeout': expected `int`, got `str`"),
        ({"max_restarts": -1}, "request: app 'web': key 'max_restarts': must be 0 or more, got -1"),
        ({"name": "a/b"}, "request: app 'a/b': key 'name': 'a/b' is not a valid name"),
        ({"health": {"kind": "http", "target": "/h", "interval": "often"}}, "request: app 'web': key 'health.interval': expected `int`, got `str`"),
        ({"cwd": "here"}, "request: app 'web': key 'cwd' must be absolute"),
    ],
)
def test_a_malformed_app_is_refused_naming_app_and_key(corral: Corral, changes: dict[str, Any], message: str) -> None:
    corral.run("ping")
    reply = request(corral, [good(corral, name="first"), good(corral, **changes)])
    assert reply["ok"] is False and reply["error"]["code"] == "bad_config", reply
    assert reply["error"]["message"].startswith(message), reply
    assert "Traceback" not in reply["error"]["message"]
    assert corral.jlist() == []  # all or nothing: the good app was not started either
    reply = request(corral, [good(corral)])  # and the daemon serves the next request
    assert reply["ok"] is True, reply
    wait_until(lambda: [p["status"] for p in corral.jlist()] == ["online"], timeout=10)


def test_a_dump_written_as_dicts_by_an_earlier_version_resurrects(corral: Corral) -> None:
    write(corral.cwd / "app.py", SLEEPER)
    # The normalised dict an earlier Corral wrote: no 'hooks' key yet (added since, takes its
    # default), a hook table without 'url', and a key no longer known (ignored with a note).
    config = {
        "name": "old", "script": str(corral.cwd / "app.py"), "args": [], "interpreter": sys.executable,
        "interpreter_args": [], "cwd": str(corral.cwd), "env": {"FROM_DUMP": "1"}, "instances": 2,
        "exec_mode": "fork", "instance_var": "NODE_APP_INSTANCE", "increment_var": None, "namespace": "default",
        "autorestart": True, "autostart": True, "max_restarts": 16, "min_uptime": 1000, "restart_delay": 0,
        "exp_backoff_restart_delay": None, "stop_exit_codes": [], "kill_timeout": 1600, "kill_signal": "SIGINT",
        "out_file": "default", "error_file": "default", "log_file": None, "log_date_format": None, "time": False,
        "merge_logs": False, "log_type": "text", "disable_logs": False, "pid_file": None, "uid": None, "gid": None,
        "max_memory_restart": None, "cron_restart": None, "watch": False, "ignore_watch": [], "watch_delay": 1000,
        "wait_ready": False, "listen_timeout": 3000, "listen": [], "port": None,
        "health": {"kind": "exec", "target": ["true"], "interval": 1000, "timeout": 3000, "start_period": 0,
                   "failure_threshold": 3, "success_threshold": 1, "status_min": 200, "status_max": 399,
                   "expect_body": None, "liveness": False},
        "env_names": ["production"], "a_key_since_removed": 1,
        "depends_on": [],
    }
    dump = {"version": 1, "saved_at": 0, "apps": [{"config": config, "base_env": {"PATH": os.environ["PATH"]}, "running": True}]}
    corral.run("ping")
    (corral.home / "dump.json").write_text(json.dumps(dump))
    corral.run("resurrect")
    wait_until(lambda: [p["status"] for p in corral.jlist()] == ["online", "online"], timeout=10)
    wait_until(lambda: corral.run("healthcheck", "old", check=False).returncode == 0, timeout=15)  # the exec probe runs
    described = json.loads(corral.run("describe", "old", "--json").stdout)
    assert described[0]["env"]["FROM_DUMP"] == "1"
    log = (corral.home / "corral.log").read_text()
    assert "keys no longer known ignored: a_key_since_removed" in log
    # saved again, it is the spec as the wire carries it, and resurrects the same way
    corral.run("save")
    saved = json.loads((corral.home / "dump.json").read_text())["apps"][0]["config"]
    assert saved["hooks"] == [] and "a_key_since_removed" not in saved and saved["health"]["target"] == ["true"]
    corral.run("kill")
    corral.run("resurrect")
    wait_until(lambda: [p["status"] for p in corral.jlist()] == ["online", "online"], timeout=10)
