"""Every numeric key has a range declared with it (#12): out-of-range, NaN, infinite,
huge and overlong values are a clear error naming the file, the app and the key."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from corral.config.keys import KEY_BY_NAME, KEYS, Bounds, format_amount
from corral.config.loader import load_apps
from corral.core.errors import ConfigError

NUMERIC_TYPES = {"int", "int or 'max'", "duration", "size", "float"}

BAD: list[tuple[str, Any, str]] = [
    ("instances", 18446744073709551616, "must be from -1024 to 1024"),
    ("instances", 100000, "got 100000"),
    ("instances", "100000", "got 100000"),
    ("instances", -5000, "must be from -1024 to 1024"),
    ("instances", math.nan, "expected a number, 'max' or -N"),
    ("instances", math.inf, "got inf"),
    ("instances", "9" * 5000, "a string of 5000 characters"),
    ("instances", 1e300, "a number of 301 digits"),
    ("max_restarts", -1, "must be 0 or more"),
    ("max_restarts", 10**12, "must be from 0 to 1000000"),
    ("kill_timeout", "999999d", "must be from 0 to 30d"),
    ("kill_timeout", -1, "cannot be negative"),
    ("kill_timeout", math.nan, "finite number"),
    ("kill_timeout", "9" * 400, "a string of 400 characters"),
    ("min_uptime", 1e308, "must be from 0 to 30d"),
    ("restart_delay", "31d", "got 31d"),
    ("exp_backoff_restart_delay", 18446744073709551616, "must be from 0 to 30d"),
    ("listen_timeout", math.inf, "finite number"),
    ("watch_delay", "1e400", "expected a duration"),
    ("watchdog_sec", 10**20, "must be from 0 to 30d"),
    ("max_memory_restart", "100T", "must be from 0 to 64T"),
    ("max_memory_restart", math.nan, "finite number"),
    ("max_memory_restart", 1e400, "finite number"),
    ("memory_max", 18446744073709551616, "must be from 0 to 64T"),
    ("log_max_size", "2000T", "must be from 0 to 64T"),
    ("log_retain", 10**9, "must be from 0 to 100000"),
    ("cpu_max", "nan", "finite number"),
    ("cpu_max", 100000, "must be from 0.01 to 1024"),
    ("cpu_max", "1e999", "finite number"),
    ("port", 70000, "must be from 0 to 65535"),
    ("port", -1, "must be from 0 to 65535"),
    ("backlog", 0, "must be from 1 to 65535"),
]

GOOD: list[tuple[str, Any, Any]] = [
    ("instances", 1024, 1024),
    ("instances", -1024, -1024),
    ("instances", "max", "max"),
    ("instances", 0, "max"),
    ("kill_timeout", "30d", 30 * 86_400_000),
    ("max_memory_restart", "64T", 64 * 1024**4),
    ("cpu_max", 0.5, 0.5),
    ("port", 0, 0),
    ("max_restarts", 0, 0),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD, ids=[f"{k}={str(v)[:20]}" for k, v, _ in BAD])
def test_out_of_range_is_refused(key: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError) as e:
        KEY_BY_NAME[key].parse(value)
    assert message in str(e.value)
    assert len(str(e.value)) < 200  # the value is never echoed whole


@pytest.mark.parametrize(("key", "value", "expected"), GOOD)
def test_the_edges_are_accepted(key: str, value: Any, expected: Any) -> None:
    assert KEY_BY_NAME[key].parse(value) == expected


def test_every_numeric_key_declares_a_range() -> None:
    numeric = [k.name for k in KEYS if k.type_doc in NUMERIC_TYPES]
    assert numeric, "the table has numeric keys"
    assert [n for n in numeric if KEY_BY_NAME[n].bounds is None] == []


def test_defaults_are_in_range() -> None:
    for key in KEYS:
        if key.bounds is not None:
            key.bounds.check(key.default)


@pytest.mark.parametrize(("key", "value", "message"), BAD[:8], ids=[f"{k}={str(v)[:20]}" for k, v, _ in BAD[:8]])
def test_the_loader_names_file_app_and_key(tmp_path: Path, key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_apps({"name": "web", "script": "app.py", key: value}, label="eco.json", base_dir=tmp_path)
    text = e.value.render()
    assert text.startswith(f"eco.json: app 'web': key '{key}': ") and message in text
    assert e.value.exit_code == 2


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [(0, "ms", "0"), (1600, "ms", "1600 ms"), (5000, "ms", "5s"), (90_000, "ms", "90s"), (86_400_000, "ms", "1d"), (1024**2 * 500, "bytes", "500M"), (1000, "bytes", "1000 bytes"), (1024, "", "1024"), (0.5, "", "0.5")],
)
def test_format_amount(value: float, unit: str, text: str) -> None:
    assert format_amount(value, unit) == text


def test_bounds_ignore_symbolic_and_off_values() -> None:
    b = Bounds(0, 10)
    for v in ("max", None, True, [1, 2]):
        b.check(v)


@pytest.mark.parametrize(
    "argv",
    [
        ["start", "app.py", "-i", "18446744073709551616"],
        ["start", "app.py", "-i", "100000"],
        ["start", "app.py", "--kill-timeout", "nan"],
        ["start", "app.py", "--max-memory-restart", "9" * 5000],
        ["start", "app.py", "--watch-delay", "1e400"],
    ],
    ids=["2**64", "100000", "nan", "huge-string", "1e400"],
)
def test_the_cli_refuses_before_any_daemon_starts(tmp_path: Path, argv: list[str]) -> None:
    (tmp_path / "app.py").write_text("print('never')\n")
    home = tmp_path / "home"
    out = subprocess.run([sys.executable, "-m", "corral", *argv], cwd=tmp_path, env={**_env(), "CORRAL_HOME": str(home)}, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("corral: error: command line: app 'app': key '") and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and len(out.stderr) < 300
    assert not (home / "corral.sock").exists()


def test_ecosystem_check_refuses_100000_instances(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("print('never')\n")
    (tmp_path / "ecosystem.toml").write_text('[[apps]]\nname = "web"\nscript = "app.py"\ninstances = 100000\n')
    out = subprocess.run([sys.executable, "-m", "corral", "ecosystem", "check", "ecosystem.toml"], cwd=tmp_path, env={**_env(), "CORRAL_HOME": str(tmp_path / "home")}, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "app 'web'" in out.stderr and "key 'instances'" in out.stderr and "1024" in out.stderr


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


@pytest.mark.parametrize(
    "argv",
    [["logs", "--lines", "nan"], ["logs", "--lines", "18446744073709551616"], ["logs", "--lines", "-1"], ["scale", "web", "100000"], ["scale", "web", "18446744073709551616"], ["scale", "web", "x" * 5000], ["monit", "--interval", "0"], ["monit", "--interval", "inf"]],
    ids=lambda a: " ".join(x[:12] for x in a),
)
def test_numeric_cli_arguments_have_ranges(tmp_path: Path, argv: list[str]) -> None:
    out = subprocess.run([sys.executable, "-m", "corral", *argv], cwd=tmp_path, env={**_env(), "CORRAL_HOME": str(tmp_path / "home")}, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "expected" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr) < 600
    assert not (tmp_path / "home" / "corral.sock").exists()
