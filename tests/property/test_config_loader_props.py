"""Property: the config loader turns any document into apps or a clear ConfigError (exit 2).

Never another exception (a crash the CLI would show as a traceback), never a hang.
Documents are arbitrary data in the shapes ecosystem files have (apps lists, app
tables with real and made-up keys, any JSON-like values), and arbitrary text
in each file format.
"""

from __future__ import annotations

import os
import string
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.config.keys import KEYS
from corral.config.loader import load_apps, read_config_file
from corral.core.errors import ConfigError

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
KEY_NAMES = sorted({k.name for k in KEYS} | {a for k in KEYS for a in k.aliases})
OTHER_KEYS = [k for k in KEY_NAMES if k != "script"]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(["python3", "app.py", "1G", "10s", "-1", "0", "all", "max", "cluster", "fork", "127.0.0.1:0", "daily", "*/5 * * * *", "SIGTERM", "nobody", "/dev/null", "NULL", ""])
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
app_tables = st.dictionaries(st.sampled_from(KEY_NAMES) | st.text(string.ascii_letters + "_", min_size=1, max_size=12), values, max_size=8)
documents = (
    st.dictionaries(st.sampled_from(["apps", "app", "deploy", "env", "name", "script"]), values | st.lists(app_tables, max_size=3), max_size=3)
    | st.fixed_dictionaries({"apps": st.lists(app_tables | values, max_size=3)})
    | st.lists(app_tables, max_size=3)
    | app_tables
    | values
)


def load(data: Any, base: Path) -> None:
    try:
        load_apps(data, label=str(base / "ecosystem.toml"), base_dir=base, client_env=ENV)
    except ConfigError as e:
        assert e.exit_code == 2 and e.render().strip()


@SETTINGS
@given(data=documents)
def test_any_document_loads_or_is_a_config_error(data: Any, tmp_path: Path) -> None:
    load(data, tmp_path)


@SETTINGS
@given(data=st.fixed_dictionaries({"script": st.sampled_from([sys.executable, "app.py", "python3"])}, optional={k: values for k in OTHER_KEYS[:60]}))
def test_an_app_with_a_real_script_and_any_keys_loads_or_is_a_config_error(data: dict[str, Any], tmp_path: Path) -> None:
    load({"apps": [data]}, tmp_path)


@SETTINGS
@given(data=st.fixed_dictionaries({"script": st.just(sys.executable)}, optional={k: values for k in OTHER_KEYS[60:]}))
def test_an_app_with_the_other_keys_loads_or_is_a_config_error(data: dict[str, Any], tmp_path: Path) -> None:
    load({"apps": [data]}, tmp_path)


@pytest.mark.parametrize("name", ["ecosystem.toml", "ecosystem.yaml", "ecosystem.json"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300) | st.sampled_from(["[[apps]]\nname = 1\n", "apps:\n  - &a [*a]\n", '{"apps": [[[[[[[[[]]]]]]]]]}', "a: !!python/object:os.system x", "---\n- \n-"]))
def test_any_file_text_reads_or_is_a_config_error(name: str, text: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_text(text)
    try:
        data = read_config_file(path)
    except ConfigError as e:
        assert e.exit_code == 2 and str(path) in e.render()
        return
    load(data, tmp_path)
