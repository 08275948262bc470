"""``corral start``'s key options come from the KEYS table (#10): argv -> raw app table, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from corral.cli.keyflags import file_overrides, glue_dash_values, raw_from_flags
from corral.cli.parser import build_parser
from corral.cli.render import describe, key_text
from corral.config.keys import KEY_BY_NAME, KEYS
from corral.core.errors import ConfigError


def parse(*argv: str) -> Any:
    return build_parser().parse_args(["start", *glue_dash_values(list(argv))])


CASES: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("app.py",), {}),
    (("app.py", "-i", "4", "-n", "web"), {"instances": "4", "name": "web"}),
    (("app.py", "--node-args", "--max-old-space-size=3072"), {"interpreter_args": "--max-old-space-size=3072"}),
    (("app.py", "--interpreter-args", "-u"), {"interpreter_args": "-u"}),
    (("app.py", "-i", "-1"), {"instances": "-1"}),
    (("app.py", "--no-autorestart", "--no-autostart", "--time", "--merge-logs", "--wait-ready", "--disable-logs"), {"autorestart": False, "autostart": False, "time": True, "merge_logs": True, "wait_ready": True, "disable_logs": True}),
    (("app.py", "-x"), {"exec_mode": "fork"}),
    (("app.py", "--exec-mode", "cluster"), {"exec_mode": "cluster"}),
    (("app.py", "--stop-exit-codes", "0", "3"), {"stop_exit_codes": ["0", "3"]}),
    (("app.py", "--stop-exit-codes", "0,3", "--stop-exit-codes", "4"), {"stop_exit_codes": ["0", "3", "4"]}),
    (("app.py", "--listen", "8000", "--listen", "unix:/tmp/s,9000"), {"listen": ["8000", "unix:/tmp/s", "9000"]}),
    (("app.py", "--watch"), {"watch": True}),
    (("app.py", "--watch", "src"), {"watch": "src"}),
    (("app.py", "--watch", "src", "--watch", "lib"), {"watch": ["src", "lib"]}),
    (("app.py", "-l"), {"log_file": True}),
    (("app.py", "-l", "all.log"), {"log_file": "all.log"}),
    (("app.py", "--watch-delay", "4"), {"watch_delay": 4000.0}),
    (("app.py", "--watch-delay", "250ms"), {"watch_delay": "250ms"}),
    (("app.py", "-c", "0 3 * * *"), {"cron_restart": "0 3 * * *"}),
    (("app.py", "--cron-restart", "0 4 * * *"), {"cron_restart": "0 4 * * *"}),
    (("app.py", "-o", "o.log", "-e", "e.log", "-p", "a.pid", "-k", "5s"), {"out_file": "o.log", "error_file": "e.log", "pid_file": "a.pid", "kill_timeout": "5s"}),
]


@pytest.mark.parametrize(("argv", "raw"), CASES, ids=[" ".join(a[1:]) or "none" for a, _ in CASES])
def test_flags_become_the_raw_app_table(argv: tuple[str, ...], raw: dict[str, Any]) -> None:
    assert raw_from_flags(parse(*argv)) == raw


def test_every_flagged_value_parses_with_its_key() -> None:
    for _argv, raw in CASES:
        for key, value in raw.items():
            KEY_BY_NAME[key].parse(value)


def test_no_option_is_declared_twice() -> None:
    names = [n for k in KEYS for f in k.flags for n in f.names]
    assert len(names) == len(set(names))


def test_file_overrides_are_parsed_and_named() -> None:
    assert file_overrides(parse("eco.toml", "--namespace", "team", "--watch", "--uid", "0")) == {"namespace": "team", "watch": True, "uid": 0}
    assert file_overrides(parse("eco.toml", "-i", "4")) == {}  # not applied to files, as in PM2
    with pytest.raises(ConfigError) as e:
        file_overrides(parse("eco.toml", "--namespace", " "))
    assert "--namespace" in e.value.render()


@pytest.mark.parametrize(
    ("argv", "glued"),
    [
        (["start", "a.py", "--node-args", "-u"], ["start", "a.py", "--node-args=-u"]),
        (["start", "a.py", "-k", "-5"], ["start", "a.py", "-k-5"]),
        (["start", "a.py", "--time", "-i", "2"], ["start", "a.py", "--time", "-i", "2"]),
        (["start", "-", "--name", "x"], ["start", "-", "--name", "x"]),
        (["start", "a.py", "--name", "-"], ["start", "a.py", "--name", "-"]),
    ],
)
def test_values_starting_with_a_dash(argv: list[str], glued: list[str]) -> None:
    assert glue_dash_values(argv) == glued


@pytest.mark.parametrize(
    ("key", "value", "text"),
    [
        ("kill_timeout", 1600, "1600 ms"),
        ("kill_timeout", 10_000, "10s"),
        ("restart_delay", 0, "0"),
        ("exp_backoff_restart_delay", None, "-"),
        ("max_memory_restart", 500 * 1024**2, "500M"),
        ("max_memory_restart", None, "-"),
        ("stop_exit_codes", [0, 3], "0 3"),
        ("stop_exit_codes", [], "-"),
        ("listen", [{"name": "http", "address": "0.0.0.0:8000", "port": 8000}], "0.0.0.0:8000"),
        ("autorestart", True, "True"),
        ("instances", "max", "max"),
    ],
)
def test_describe_formats_by_the_keys_unit(key: str, value: Any, text: str) -> None:
    assert key_text(KEY_BY_NAME[key], value) == text


def test_describe_shows_every_key_the_daemon_sends() -> None:
    p = {"id": 3, "name": "web", "status": "online", "uptime": 65.0, "kill_timeout": 5000, "wait_ready": True, "exec_mode": "fork", "env": {"A": "1"}}
    out = describe(p)
    assert "kill_timeout" in out and ": 5s" in out and "wait_ready" in out and ": 1m" in out and "A=1" in out
