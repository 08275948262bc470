"""The value parsers of corral.config.keys and the units helpers, table-driven."""

from __future__ import annotations

import math
from typing import Any

import pytest

from corral.config import keys as k
from corral.config.keys import ALIASES, KEY_BY_NAME, KEYS, NODE_ONLY_KEYS
from corral.core.units import format_bytes, format_duration, parse_duration_ms, parse_size

# ---------------------------------------------------------------- units

SIZES_OK: list[tuple[Any, int]] = [
    (0, 0),
    (1024, 1024),
    (1.9, 1),
    ("100", 100),
    ("10b", 10),
    ("1K", 1024),
    ("1k", 1024),
    ("200K", 200 * 1024),
    ("500M", 500 * 1024**2),
    ("500MB", 500 * 1024**2),
    ("1G", 1024**3),
    ("1g", 1024**3),
    ("1GB", 1024**3),
    ("1GiB", 1024**3),
    ("1.5G", int(1.5 * 1024**3)),
    ("2T", 2 * 1024**4),
    (" 64 M ", 64 * 1024**2),
]

SIZES_BAD: list[tuple[Any, str]] = [
    (True, "expected a size such as '500M' or a number of bytes, got True"),
    (-1, "a size cannot be negative, got -1"),
    (-1.5, "a size cannot be negative, got -1.5"),
    ("lots", "expected a size such as '500M', '1G' or a number of bytes, got 'lots'"),
    ("-1G", "expected a size such as '500M', '1G' or a number of bytes, got '-1G'"),
    ("1P", "expected a size such as '500M', '1G' or a number of bytes, got '1P'"),
    ("", "expected a size such as '500M', '1G' or a number of bytes, got ''"),
    (None, "expected a size such as '500M', '1G' or a number of bytes, got None"),
    ([1], "expected a size such as '500M', '1G' or a number of bytes, got [1]"),
]

DURATIONS_OK: list[tuple[Any, int]] = [
    (0, 0),
    (1500, 1500),
    (2.7, 2),
    ("1500", 1500),
    ("250ms", 250),
    ("10s", 10_000),
    ("1.5s", 1500),
    ("2m", 120_000),
    ("1h", 3_600_000),
    ("1d", 86_400_000),
    ("10S", 10_000),
    (" 2 m ", 120_000),
]

_DUR_MSG = "expected a duration such as '10s', '2m', '500ms' or a number of milliseconds, got "
DURATIONS_BAD: list[tuple[Any, str]] = [
    (True, "expected a duration such as '10s' or milliseconds, got True"),
    (-5, "a duration cannot be negative, got -5"),
    ("-5s", _DUR_MSG + "'-5s'"),
    ("10 minutes", _DUR_MSG + "'10 minutes'"),
    ("1w", _DUR_MSG + "'1w'"),
    ("", _DUR_MSG + "''"),
    (None, _DUR_MSG + "None"),
]


@pytest.mark.parametrize(("value", "expected"), SIZES_OK)
def test_parse_size(value: Any, expected: int) -> None:
    assert parse_size(value) == expected


@pytest.mark.parametrize(("value", "message"), SIZES_BAD)
def test_parse_size_rejects(value: Any, message: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_size(value)
    assert str(e.value) == message


@pytest.mark.parametrize(("value", "expected"), DURATIONS_OK)
def test_parse_duration_ms(value: Any, expected: int) -> None:
    assert parse_duration_ms(value) == expected


@pytest.mark.parametrize(("value", "message"), DURATIONS_BAD)
def test_parse_duration_rejects(value: Any, message: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_duration_ms(value)
    assert str(e.value) == message


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (None, "-"),
        (0, "0b"),
        (1023, "1023b"),
        (1024, "1.0kb"),
        (1536, "1.5kb"),
        (12.3 * 1024**2, "12.3mb"),
        (5 * 1024**3, "5.0gb"),
        (3000 * 1024**3, "3000.0gb"),
    ],
)
def test_format_bytes(n: float | None, text: str) -> None:
    assert format_bytes(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (-1, "-"), (0, "0s"), (59.9, "59s"), (60, "1m"), (3599, "59m"), (3600, "1h"), (86399, "23h"), (86400, "1D"), (10 * 86400, "10D")],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


# ---------------------------------------------------------------- parsers

OK: list[tuple[str, Any, Any]] = [
    # (key, value as written, parsed value)
    ("name", "web", "web"),
    ("name", "  web  ", "web"),
    ("name", "api-v1.2_x", "api-v1.2_x"),
    ("name", "web1", "web1"),
    ("script", "app.py", "app.py"),
    ("script", 42, "42"),
    ("args", None, []),
    ("args", "--port 8000", ["--port", "8000"]),
    ("args", "--msg 'hello world' -v", ["--msg", "hello world", "-v"]),
    ("args", ["--port", 8000, 1.5, 2.0], ["--port", "8000", "1.5", "2"]),
    ("args", 8000, ["8000"]),
    ("args", "", []),
    ("interpreter", None, None),
    ("interpreter", "", None),
    ("interpreter", "python3", "python3"),
    ("interpreter", "none", "none"),
    ("interpreter", "None", "none"),
    ("interpreter", "/usr/bin/python3", "/usr/bin/python3"),
    ("interpreter_args", "-u -X dev", ["-u", "-X", "dev"]),
    ("interpreter_args", ["-m"], ["-m"]),
    ("cwd", None, None),
    ("cwd", "api", "api"),
    ("env", None, {}),
    ("env", {"A": "x", "N": 3, "F": 1.5, "I": 3000.0, "T": True, "Z": False, "E": None}, {"A": "x", "N": "3", "F": "1.5", "I": "3000", "T": "true", "Z": "false", "E": ""}),
    ("instances", 4, 4),
    ("instances", "4", 4),
    ("instances", " 4 ", 4),
    ("instances", 4.0, 4),
    ("instances", "max", "max"),
    ("instances", "MAX", "max"),
    ("instances", 0, "max"),
    ("instances", "0", "max"),
    ("instances", -1, -1),
    ("instances", "-2", -2),
    ("exec_mode", "fork", "fork"),
    ("exec_mode", "fork_mode", "fork"),
    ("exec_mode", "cluster", "cluster"),
    ("exec_mode", "cluster_mode", "cluster"),
    ("exec_mode", "CLUSTER", "cluster"),
    ("instance_var", "INSTANCE_ID", "INSTANCE_ID"),
    ("increment_var", "PORT", "PORT"),
    ("namespace", "backend", "backend"),
    ("autorestart", True, True),
    ("autorestart", False, False),
    ("autorestart", "false", False),
    ("autorestart", "yes", True),
    ("autorestart", "Off", False),
    ("autorestart", 1, True),
    ("autorestart", 0, False),
    ("max_restarts", 0, 0),
    ("max_restarts", "5", 5),
    ("min_uptime", "10s", 10_000),
    ("min_uptime", "2m", 120_000),
    ("min_uptime", 5000, 5000),
    ("restart_delay", "500ms", 500),
    ("exp_backoff_restart_delay", 100, 100),
    ("exp_backoff_restart_delay", 0, None),
    ("exp_backoff_restart_delay", None, None),
    ("exp_backoff_restart_delay", False, None),
    ("stop_exit_codes", None, []),
    ("stop_exit_codes", 0, [0]),
    ("stop_exit_codes", "3", [3]),
    ("stop_exit_codes", [0, "3", 255], [0, 3, 255]),
    ("kill_timeout", "5s", 5000),
    ("kill_signal", "SIGTERM", "SIGTERM"),
    ("kill_signal", "term", "SIGTERM"),
    ("kill_signal", " sigquit ", "SIGQUIT"),
    ("kill_signal", 15, "SIGTERM"),
    ("kill_signal", 2, "SIGINT"),
    ("out_file", "logs/out.log", "logs/out.log"),
    ("out_file", "/dev/null", None),
    ("out_file", "NULL", None),
    ("out_file", "null", None),
    ("out_file", "", None),
    ("out_file", None, None),
    ("out_file", False, None),
    ("out_file", True, "default"),
    ("log_file", True, "default"),
    ("error_file", "/DEV/NULL", None),
    ("log_date_format", "YYYY-MM-DD HH:mm Z", "YYYY-MM-DD HH:mm Z"),
    ("time", True, True),
    ("merge_logs", "true", True),
    ("log_type", "json", "json"),
    ("log_type", "JSON", "json"),
    ("log_type", "raw", "text"),
    ("log_type", "text", "text"),
    ("disable_logs", True, True),
    ("pid_file", "run/app.pid", "run/app.pid"),
    ("uid", "www-data", "www-data"),
    ("uid", 33, 33),
    ("uid", "33", 33),
    ("gid", None, None),
    ("max_memory_restart", "1G", 1024**3),
    ("max_memory_restart", "500M", 500 * 1024**2),
    ("max_memory_restart", 123456, 123456),
    ("max_memory_restart", 0, None),
    ("max_memory_restart", "0", None),
    ("max_memory_restart", None, None),
    ("max_memory_restart", False, None),
    ("cron_restart", "0 3 * * *", "0 3 * * *"),
    ("cron_restart", "*/5 * * * * *", "*/5 * * * * *"),
    ("cron_restart", "0 0 * * MON-FRI", "0 0 * * MON-FRI"),
    ("cron_restart", None, None),
    ("cron_restart", False, None),
    ("watch", True, True),
    ("watch", False, False),
    ("watch", "src", ["src"]),
    ("watch", ["src", "lib"], ["src", "lib"]),
    ("ignore_watch", "*.pyc", ["*.pyc"]),
    ("ignore_watch", ["node_modules", "*.log"], ["node_modules", "*.log"]),
    ("watch_delay", "2s", 2000),
    ("wait_ready", True, True),
    ("listen_timeout", "8s", 8000),
    ("listen", "0.0.0.0:8000", ["0.0.0.0:8000"]),
    ("listen", ["127.0.0.1:80", "unix:/run/app.sock"], ["127.0.0.1:80", "unix:/run/app.sock"]),
    ("listen", "[::]:8000", ["[::]:8000"]),
    ("listen", 8000, ["0.0.0.0:8000"]),
    ("listen", "8000", ["0.0.0.0:8000"]),
    ("listen", None, []),
    ("port", 3000, 3000),
    ("port", "3000", 3000),
    ("port", None, None),
    ("health", None, None),
]

BAD: list[tuple[str, Any, str]] = [
    ("name", "", "must not be empty"),
    ("name", "  ", "must not be empty"),
    ("name", "a/b", "'a/b' is not a valid name (no slashes or newlines)"),
    ("name", "..", "'..' is not a valid name (no slashes or newlines)"),
    ("name", "all", "'all' is reserved: it means every app in commands"),
    ("name", "42", "'42' is not a valid name: a number would be read as an id"),
    ("name", 42, "'42' is not a valid name: a number would be read as an id"),
    ("name", None, "expected a string, got None"),
    ("name", True, "expected a string, got True"),
    ("script", ["a.py"], "expected a string, got list ['a.py']"),
    ("args", "'unclosed", "cannot split \"'unclosed\" into arguments: No closing quotation"),
    ("args", [None], "every argument must be a string or number, got None"),
    ("args", [["x"]], "every argument must be a string or number, got ['x']"),
    ("args", {"a": 1}, "expected a string or a list of strings, got {'a': 1}"),
    ("interpreter", ["python"], "expected a string, got list ['python']"),
    ("env", "A=1", "expected a table of NAME = value, got str"),
    ("env", {"A=B": "1"}, "'A=B' is not a valid environment variable name"),
    ("env", {"": "1"}, "'' is not a valid environment variable name"),
    ("env", {"A": [1]}, "variable 'A' must be a string, number or boolean, got [1]"),
    ("instances", "lots", "expected a number, 'max' or -N (CPUs minus N), got 'lots'"),
    ("instances", 1.5, "expected a number, 'max' or -N (CPUs minus N), got 1.5"),
    ("instances", True, "expected a number, 'max' or -N (CPUs minus N), got True"),
    ("exec_mode", "spawn", "expected 'fork' or 'cluster', got 'spawn'"),
    ("namespace", "", "must not be empty"),
    ("autorestart", "maybe", "expected true or false, got 'maybe'"),
    ("autorestart", 2, "expected true or false, got 2"),
    ("autorestart", None, "expected true or false, got None"),
    ("max_restarts", -1, "must be 0 or more, got -1"),
    ("max_restarts", "many", "expected a whole number, got 'many'"),
    ("max_restarts", 1.5, "expected a whole number, got 1.5"),
    ("max_restarts", float("inf"), "expected a whole number, got inf"),
    ("min_uptime", "forever", _DUR_MSG + "'forever'"),
    ("min_uptime", float("inf"), "expected a finite number, got inf"),
    ("min_uptime", float("nan"), "expected a finite number, got nan"),
    ("exp_backoff_restart_delay", "soon", _DUR_MSG + "'soon'"),
    ("stop_exit_codes", [256], "exit codes are 0 to 255, got 256"),
    ("stop_exit_codes", [-1], "exit codes are 0 to 255, got -1"),
    ("stop_exit_codes", {"a": 1}, "expected a list of exit codes, got {'a': 1}"),
    ("kill_signal", "SIGNOPE", "unknown signal 'SIGNOPE' (try SIGINT, SIGTERM, SIGQUIT...)"),
    ("kill_signal", 999, "999 is not a signal number"),
    ("log_type", "xml", "expected 'json' or 'text', got 'xml'"),
    ("max_memory_restart", "lots", "expected a size such as '500M', '1G' or a number of bytes, got 'lots'"),
    ("max_memory_restart", float("inf"), "expected a finite number, got inf"),
    ("cron_restart", "every day", "expected a cron pattern of 5 or 6 fields, got 'every day'"),
    ("cron_restart", "0 3 * * * * *", "expected a cron pattern of 5 or 6 fields, got '0 3 * * * * *'"),
    ("cron_restart", "0 3 * * $", "invalid cron field '$' in '0 3 * * $'"),
    ("watch", 3, "expected true, false or a list of paths, got 3"),
    ("watch", ["src", 3], "expected true, false or a list of paths, got ['src', 3]"),
    ("ignore_watch", [1], "expected a list of strings, got [1]"),
    ("listen", "localhost", "expected 'HOST:PORT' or 'unix:/path', got 'localhost'"),
    ("listen", "host:99999", "expected 'HOST:PORT' or 'unix:/path', got 'host:99999'"),
    ("listen", "unix:", "'unix:' needs a path after 'unix:'"),
    ("listen", [True], "expected 'HOST:PORT', 'unix:/path' or a port, got True"),
    ("port", 70000, "must be from 0 to 65535, got 70000"),
    ("port", "http", "expected a whole number, got 'http'"),
]


@pytest.mark.parametrize(("key", "value", "expected"), OK, ids=[f"{c[0]}={c[1]!r}" for c in OK])
def test_parser_accepts(key: str, value: Any, expected: Any) -> None:
    assert KEY_BY_NAME[key].parse(value) == expected


@pytest.mark.parametrize(
    ("key", "value", "message"),
    BAD,
    ids=[f"{c[0]}={c[1]!r}" for c in BAD],
)
def test_parser_rejects(key: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError) as e:
        KEY_BY_NAME[key].parse(value)
    assert str(e.value) == message


def test_parsers_are_idempotent() -> None:
    """The daemon validates normalised apps again: parsing a parsed value changes nothing."""
    for key, value, _ in OK:
        once = KEY_BY_NAME[key].parse(value)
        if once is None and KEY_BY_NAME[key].default is not None and key.endswith("_file"):
            continue  # a switched-off log file is None, which parses to None again
        assert KEY_BY_NAME[key].parse(once) == once, (key, value)


def test_default_is_what_nothing_parses_to_or_a_valid_value() -> None:
    for key in KEYS:
        if key.default is not None:
            assert key.parse(key.default) == key.default, key.name


def test_scalar_str_prints_numbers_like_javascript() -> None:
    assert k.scalar_str(3000.0) == "3000"
    assert k.scalar_str(1.5) == "1.5"
    assert k.scalar_str(7) == "7"
    assert k.scalar_str(1e20) == "1e+20"
    assert k.scalar_str("x") == "x"


@pytest.mark.parametrize(
    ("value", "cpus", "n"),
    [(1, 8, 1), (4, 2, 4), ("max", 8, 8), ("max", 0, 1), (-1, 8, 7), (-1, 1, 1), (-3, 2, 1)],
)
def test_resolve_instances(value: int | str, cpus: int, n: int) -> None:
    assert k.resolve_instances(value, cpus) == n


# ---------------------------------------------------------------- aliases

# PM2's lib/API/schema.json: every alias it declares, and the key it belongs to.
PM2_SCHEMA_ALIASES = {
    "exec": "script",
    "interpreter": "interpreter",  # PM2's key is exec_interpreter, alias interpreter
    "exec_interpreter": "interpreter",
    "node_args": "interpreter_args",
    "interpreterArgs": "interpreter_args",
    "interpreter_args": "interpreter_args",
    "out": "out_file",
    "output": "out_file",
    "out_log": "out_file",
    "error": "error_file",
    "err": "error_file",
    "err_file": "error_file",
    "err_log": "error_file",
    "log": "log_file",
    "pid": "pid_file",
    "cron": "cron_restart",
    "combine_logs": "merge_logs",
    "user": "uid",
}


@pytest.mark.parametrize(("alias", "canonical"), sorted(PM2_SCHEMA_ALIASES.items()))
def test_pm2_schema_aliases(alias: str, canonical: str) -> None:
    assert alias == canonical or ALIASES[alias] == canonical


@pytest.mark.parametrize(
    ("camel", "canonical"),
    [
        ("maxMemoryRestart", "max_memory_restart"),
        ("errorFile", "error_file"),
        ("outFile", "out_file"),
        ("execMode", "exec_mode"),
        ("minUptime", "min_uptime"),
        ("expBackoffRestartDelay", "exp_backoff_restart_delay"),
        ("nodeArgs", "interpreter_args"),
        ("execInterpreter", "interpreter"),
        ("killTimeout", "kill_timeout"),
        ("logDateFormat", "log_date_format"),
        ("mergeLogs", "merge_logs"),
        ("combineLogs", "merge_logs"),
        ("ignoreWatch", "ignore_watch"),
        ("pidFile", "pid_file"),
        ("waitReady", "wait_ready"),
        ("listenTimeout", "listen_timeout"),
        ("cronRestart", "cron_restart"),
        ("stopExitCodes", "stop_exit_codes"),
    ],
)
def test_camel_case_aliases(camel: str, canonical: str) -> None:
    assert ALIASES[camel] == canonical


def test_camel_case_rule_matches_pm2() -> None:
    assert k.camel_case("max_memory_restart") == "maxMemoryRestart"
    assert k.camel_case("name") == "name"
    assert k.camel_case("a_b_cd") == "abCd"  # PM2 does not capitalise one-letter parts


def test_alias_table_is_consistent() -> None:
    for alias, canonical in ALIASES.items():
        assert canonical in KEY_BY_NAME
        assert alias not in KEY_BY_NAME
        assert alias not in NODE_ONLY_KEYS
    for name in NODE_ONLY_KEYS:
        assert name not in KEY_BY_NAME
    assert len({key.name for key in KEYS}) == len(KEYS)


def test_mode_is_not_an_alias() -> None:
    # PM2 has no `mode` key; a file using it for something else must not fail.
    assert "mode" not in ALIASES


def test_every_key_is_documented() -> None:
    for key in KEYS:
        assert key.doc and key.type_doc, key.name
        assert key.status == "active" or len(key.status) > 10, key.name


def test_nan_size_is_rejected_cleanly() -> None:
    with pytest.raises(ValueError, match="finite"):
        KEY_BY_NAME["max_memory_restart"].parse(math.nan)
