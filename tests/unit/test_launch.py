"""The pure launch building: argv, environment, fds, log and pid file paths."""

from __future__ import annotations

from typing import Any

import pytest

from corral.core.appspec import AppSpec, from_wire
from corral.core.cron import next_cron, validate_cron
from corral.core.launch import (
    build_argv,
    build_env,
    log_paths,
    pid_file_path,
    plan_launch,
    suffixed,
)
from corral.core.statemachine import Ready, WatchdogPing, WatchdogTrigger
from corral.daemon.sdnotify import read_message
from corral.system import listeners as listen


def cfg(**keys: Any) -> AppSpec:
    base: dict[str, Any] = {
        "name": "web", "script": "/srv/app.py", "interpreter": "/usr/bin/python3", "interpreter_args": [], "args": [],
        "env": {}, "instance_var": "NODE_APP_INSTANCE", "cwd": "/srv", "merge_logs": False,
        "out_file": "default", "error_file": "default", "log_file": None,
    }
    base.update(keys)
    return from_wire(base)


@pytest.mark.parametrize(
    ("keys", "argv"),
    [
        ({}, ["/usr/bin/python3", "/srv/app.py"]),
        ({"interpreter_args": ["-X", "dev"], "args": ["--port", "80"]}, ["/usr/bin/python3", "-X", "dev", "/srv/app.py", "--port", "80"]),
        ({"interpreter": "none", "script": "/bin/server"}, ["/bin/server"]),
        ({"interpreter": None, "script": "/bin/server", "args": ["x"]}, ["/bin/server", "x"]),
    ],
)
def test_build_argv(keys: dict[str, Any], argv: list[str]) -> None:
    assert build_argv(cfg(**keys)) == argv


def test_build_env_layers_and_corral_variables() -> None:
    env = build_env(cfg(env={"A": "app", "B": "app"}, increment_var="PORT"), {"A": "client", "C": "client", "PORT": "8000"}, index=2, instance_id=7, home="/h")
    assert env["A"] == "app" and env["B"] == "app" and env["C"] == "client"
    assert env["NODE_APP_INSTANCE"] == "2" and env["CORRAL_INSTANCE"] == "2" and env["CORRAL_ID"] == "7" and env["pm_id"] == "7"
    assert env["CORRAL_APP_NAME"] == "web" and env["name"] == "web" and env["CORRAL_HOME"] == "/h"
    assert env["PORT"] == "8002"  # increment_var: base value + index


def test_build_env_increment_var_not_a_number_is_left_alone() -> None:
    env = build_env(cfg(increment_var="PORT"), {"PORT": "eighty"}, index=1, instance_id=0, home="/h")
    assert env["PORT"] == "eighty"


def test_plan_launch_plain() -> None:
    plan = plan_launch(cfg(watchdog_sec=1500, uid="nobody"), {"PATH": "/usr/bin"}, notify_address="@corral/1/a")
    assert plan.argv == ["/usr/bin/python3", "/srv/app.py"] and plan.cwd == "/srv" and plan.uid == "nobody"
    assert plan.env["PYTHONUNBUFFERED"] == "1" and plan.env["NOTIFY_SOCKET"] == "@corral/1/a"
    assert plan.env["WATCHDOG_USEC"] == "1500000" and plan.pass_fds == ()


def test_plan_launch_keeps_an_explicit_pythonunbuffered_and_resolves_bare_names(tmp_path: Any) -> None:
    tool = tmp_path / "mytool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    plan = plan_launch(cfg(interpreter="none", script="mytool"), {"PATH": str(tmp_path), "PYTHONUNBUFFERED": "0"})
    assert plan.argv == [str(tool)] and plan.env["PYTHONUNBUFFERED"] == "0"


def test_plan_launch_with_sockets() -> None:
    ls = listen.bind("127.0.0.1:0", "http")
    try:
        plan = plan_launch(cfg(args=["--fd", "{fd}", "--port", "{port:http}"]), {}, sockets=[ls])
        assert plan.pass_fds == (ls.fd,)
        assert plan.env["LISTEN_FDS"] == "1" and plan.env["LISTEN_FDNAMES"] == "http" and plan.env["PORT"] == str(ls.port)
        assert plan.argv[:2] == [listen.SHIM, "-c"] and plan.argv[-4:] == ["--fd", "3", "--port", str(ls.port)]
        with pytest.raises(listen.ListenError):
            plan_launch(cfg(args=["{fd:nope}"]), {}, sockets=[ls])
    finally:
        ls.close()


@pytest.mark.parametrize(
    ("keys", "index", "several", "want"),
    [
        ({}, 0, False, {"out_file": "/L/web-out.log", "error_file": "/L/web-error.log", "log_file": None}),
        ({}, 3, True, {"out_file": "/L/web-out-3.log", "error_file": "/L/web-error-3.log", "log_file": None}),
        ({"merge_logs": True}, 3, True, {"out_file": "/L/web-out.log", "error_file": "/L/web-error.log", "log_file": None}),
        ({"log_file": "default", "out_file": "/var/o.txt", "error_file": None}, 1, True, {"out_file": "/var/o-1.txt", "error_file": None, "log_file": "/L/web-1.log"}),
    ],
    ids=["one", "suffixed", "merged", "custom"],
)
def test_log_paths(keys: dict[str, Any], index: int, several: bool, want: dict[str, str | None]) -> None:
    assert log_paths(cfg(**keys), "/L", index, several) == want


def test_pid_file_path_and_suffix() -> None:
    assert pid_file_path(cfg(), 0, False) is None
    assert pid_file_path(cfg(pid_file="/run/web.pid"), 2, False) == "/run/web.pid"
    assert pid_file_path(cfg(pid_file="/run/web.pid"), 2, True) == "/run/web-2.pid"
    assert suffixed("/a/b", 1) == "/a/b-1"


@pytest.mark.parametrize(
    ("msg", "events", "status", "stopping"),
    [
        ({"READY": "1"}, [Ready()], None, False),
        ({"READY": "0"}, [], None, False),
        ({"WATCHDOG": "1", "STATUS": "busy"}, [WatchdogPing()], "busy", False),
        ({"WATCHDOG": "trigger"}, [WatchdogTrigger()], None, False),
        ({"READY": "1", "WATCHDOG": "1"}, [Ready(), WatchdogPing()], None, False),
        ({"STOPPING": "1", "MAINPID": "5"}, [], None, True),
    ],
)
def test_notify_messages_as_events(msg: dict[str, str], events: list[Any], status: str | None, stopping: bool) -> None:
    m = read_message(msg)
    assert (m.events, m.status_text, m.stopping) == (events, status, stopping)


def test_cron() -> None:
    pytest.importorskip("croniter")
    assert next_cron("*/10 * * * * *", 1000.0) == 1010.0  # six fields: seconds first
    assert next_cron("0 * * * *", 3600.0 * 5 + 1) == 3600.0 * 6
    validate_cron("*/5 * * * *")
    with pytest.raises(ValueError, match="invalid cron pattern"):
        validate_cron("61 * * * *")
