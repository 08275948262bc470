"""AppSpec against the KEYS table, its units in one place, and the daemon's one decoding
of a request's app (registry.decode_app): a malformed app gets an error naming the app
and the key, never a traceback, and a value the loader would not produce is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from corral.config.keys import KEYS
from corral.config.loader import load_apps
from corral.core.appspec import (
    DERIVED,
    REQUIRED,
    AppSpec,
    HealthConfig,
    from_wire,
    policy_of,
    replace,
    to_wire,
)
from corral.core.statemachine import Policy
from corral.daemon.dispatch import RequestError
from corral.daemon.registry import decode_app


def test_every_key_is_a_field_with_the_keys_default() -> None:
    fields = {f.name: f for f in msgspec.structs.fields(AppSpec)}
    for key in KEYS:
        assert key.name in fields, f"key {key.name!r} has no AppSpec field: add it to corral.core.appspec"
        field = fields[key.name]
        if key.name in REQUIRED:
            assert field.required and key.default is None, key.name
            continue
        assert not field.required, key.name
        default = field.default_factory() if field.default_factory is not msgspec.NODEFAULT else field.default
        assert default == key.default, f"{key.name}: AppSpec default {default!r}, KEYS default {key.default!r}"


def test_no_field_is_neither_a_key_nor_derived() -> None:
    names = {k.name for k in KEYS}
    extra = {f.name for f in msgspec.structs.fields(AppSpec)} - names
    assert extra == set(DERIVED), f"fields that are not keys must be documented in DERIVED: {extra - set(DERIVED)}"
    assert set(REQUIRED) <= names


def test_field_order_follows_keys() -> None:
    order = [f.name for f in msgspec.structs.fields(AppSpec) if f.name not in DERIVED]
    assert order == [k.name for k in KEYS]


def test_policy_is_built_from_the_spec_in_seconds() -> None:
    spec = from_wire({"name": "a", "script": "/a", "cwd": "/", "kill_timeout": 2500, "min_uptime": 500,
                      "restart_delay": 250, "exp_backoff_restart_delay": 100, "listen_timeout": 8000,
                      "watchdog_sec": 3000, "stop_exit_codes": [0, 3], "kill_signal": "SIGTERM", "autorestart": False})
    assert policy_of(spec) == Policy(autorestart=False, max_restarts=16, min_uptime=0.5, restart_delay=0.25,
                                     exp_backoff=0.1, stop_exit_codes=frozenset({0, 3}), kill_timeout=2.5,
                                     kill_signal="SIGTERM", wait_ready=False, listen_timeout=8.0, watchdog=3.0)
    plain = from_wire({"name": "a", "script": "/a", "cwd": "/"})
    assert policy_of(plain) == Policy()  # the keys' defaults are the policy's defaults
    health = HealthConfig(kind="http", target="/h", interval=1500, timeout=250, start_period=4000)
    s = health.spec()
    assert (s.interval, s.timeout, s.start_period) == (1.5, 0.25, 4.0)


def test_replace_makes_a_new_spec() -> None:
    spec = from_wire({"name": "a", "script": "/a", "cwd": "/"})
    scaled = replace(spec, instances=4)
    assert scaled.instances == 4 and spec.instances == 1
    with pytest.raises(AttributeError):
        spec.instances = 3  # type: ignore[misc]


# ---------------------------------------------------------------- the request boundary


def loaded(tmp_path: Path, **raw: Any) -> dict[str, Any]:
    (tmp_path / "app.py").write_text("")
    [spec] = load_apps({"name": "web", "script": "app.py", **raw}, label="eco.toml", base_dir=tmp_path).apps
    wire: dict[str, Any] = json.loads(json.dumps(to_wire(spec)))
    return wire


def test_what_the_loader_sends_decodes_to_the_same_spec(tmp_path: Path) -> None:
    wire = loaded(tmp_path, health={"http": "/h", "interval": "2s"},
                  hooks=[{"url": "https://example.org/x", "events": ["errored"]}, {"command": "true"}],
                  instances="max", watch=["src"], cron_restart="0 3 * * *", cpu_max=0.5, env={"A": 1})
    wire["depends_on"] = [{"name": "db", "condition": "default"}]  # db: in another request
    spec = decode_app(wire)
    assert to_wire(spec) == wire
    assert spec.health == HealthConfig(kind="http", target="/h", interval=2000)
    assert [(d.name, d.condition) for d in spec.depends_on] == [("db", "default")]
    assert spec.hooks[1].command == "true" and spec.hooks[1].url is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kill_timeout": "5s"}, "request: app 'web': key 'kill_timeout': expected `int`, got `str`"),
        ({"kill_timeout": True}, "request: app 'web': key 'kill_timeout': expected `int`, got `bool`"),
        ({"kill_timeout": 10**12}, "request: app 'web': key 'kill_timeout': must be from 0 to 30d"),
        ({"kill_signal": "SIGNOPE"}, "request: app 'web': key 'kill_signal': unknown signal 'SIGNOPE'"),
        ({"kill_signal": "int"}, "request: app 'web': key 'kill_signal': 'int' is not as loaded (it reads as 'SIGINT')"),
        ({"name": "../x"}, "request: app '../x': key 'name': '../x' is not a valid name"),
        ({"exec_mode": "both"}, "request: app 'web': key 'exec_mode': invalid enum value 'both'"),
        ({"cwd": "relative"}, "request: app 'web': key 'cwd' must be absolute"),
        ({"env": {"A=B": "1"}}, "request: app 'web': key 'env': 'A=B' is not a valid environment variable name"),
        ({"health": {"kind": "http", "target": "/h", "interval": 0}}, "request: app 'web': key 'health': 'health.interval' must be more than 0"),
        ({"health": {"kind": "ftp", "target": "/h"}}, "request: app 'web': key 'health.kind': invalid enum value 'ftp'"),
        ({"depends_on": [{"name": "db", "condition": "soon"}]}, "request: app 'web': key 'depends_on': unknown condition 'soon'"),
        ({"surprise": 1}, "request: app 'web': key 'surprise': unknown key"),
        ({"hooks": [{"name": "h", "events": ["errored"], "url": "ftp://x"}]}, "request: app 'web': key 'hooks': hook #1: 'url' must be an http:// or https:// URL"),
    ],
)
def test_a_malformed_app_is_refused_naming_app_and_key(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    wire = {**loaded(tmp_path), **change}
    with pytest.raises(RequestError) as e:
        decode_app(wire)
    assert e.value.code == "bad_config"
    assert str(e.value.message).startswith(message), e.value.message


def test_a_missing_script_and_a_non_object_are_refused() -> None:
    with pytest.raises(RequestError) as e:
        decode_app({"name": "web", "cwd": "/"})
    assert e.value.message == "request: app 'web': key 'script': is required"
    with pytest.raises(RequestError) as e:
        decode_app(["not", "an", "app"], 2)
    assert e.value.message.startswith("request: app '#3': expected `object`, got `array`")


def test_a_parser_disagreeing_with_its_field_is_an_error_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from corral.config import keys, loader
    from corral.core.errors import ConfigError

    wrong = dataclasses.replace(keys.KEY_BY_NAME["kill_timeout"], parser=lambda value: "1600")  # the field is an int
    monkeypatch.setattr(loader, "KEYS", tuple(wrong if k.name == "kill_timeout" else k for k in keys.KEYS))
    (tmp_path / "app.py").write_text("")
    with pytest.raises(ConfigError) as e:
        load_apps({"name": "web", "script": "app.py", "kill_timeout": 5}, label="eco.toml", base_dir=tmp_path)
    assert e.value.render().startswith("eco.toml: app 'web': key 'kill_timeout': internal error")
