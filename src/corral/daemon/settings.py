"""Daemon-wide settings from ``$CORRAL_HOME/corral.toml``.

::

    [http]
    listen = "127.0.0.1:9615"   # /healthz, /readyz, /metrics (also env CORRAL_HTTP)
    metrics = true

    [logs]                      # defaults for every app's log rotation
    log_max_size = "10M"        # pm2-logrotate's names work too: max_size, retain,
    log_retain = 10             # compress, dateFormat, rotateInterval
    log_compress = true

    [daemon]
    max_instances = 2048        # ceiling on instances of all apps together (start, scale, reload)
"""

from __future__ import annotations

import os
from typing import Any

from corral.core.errors import ConfigError

DEFAULT_MAX_INSTANCES = 2048
MAX_INSTANCES_LIMIT = 1_000_000  # a ceiling the daemon can still hold


def read(home_root: str) -> dict[str, Any]:
    path = os.path.join(home_root, "corral.toml")
    if not os.path.exists(path):
        return {}
    import tomllib

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"invalid settings: {e}", file=path)


def log_defaults(home_root: str) -> dict[str, Any]:
    """The [logs] table, with pm2-logrotate's names mapped, parsed by the app keys' parsers."""
    from corral.config.keys import KEY_BY_NAME
    from corral.logs.rotate import PM2_LOGROTATE_NAMES

    table = read(home_root).get("logs") or {}
    out: dict[str, Any] = {}
    path = os.path.join(home_root, "corral.toml")
    for key, value in table.items():
        canon = PM2_LOGROTATE_NAMES.get(key, key)
        spec = KEY_BY_NAME.get(canon)
        if spec is None or not canon.startswith("log_"):
            raise ConfigError(f"unknown key in [logs]: {key!r}", file=path, key=f"logs.{key}")
        if canon == "log_rotate_interval" and value in (None, "", False):
            continue
        try:
            out[canon] = spec.parse(value)
        except ValueError as e:
            raise ConfigError(str(e), file=path, key=f"logs.{key}")
    return out


def max_instances(home_root: str) -> int:
    """``[daemon] max_instances``: instances of every app together (default 2048)."""
    table = read(home_root).get("daemon") or {}
    path = os.path.join(home_root, "corral.toml")
    if not isinstance(table, dict):
        raise ConfigError("[daemon] must be a table", file=path, key="daemon")
    unknown = sorted(set(table) - {"max_instances"})
    if unknown:
        raise ConfigError(f"unknown key in [daemon]: {unknown[0]!r}", file=path, key=f"daemon.{unknown[0]}")
    value = table.get("max_instances", DEFAULT_MAX_INSTANCES)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INSTANCES_LIMIT:
        raise ConfigError(f"expected a whole number from 1 to {MAX_INSTANCES_LIMIT:,}, got {value!r}", file=path, key="daemon.max_instances")
    return value
