"""Where the dashboard listens and how: flags win over ``[dashboard]`` in ``$CORRAL_HOME/corral.toml``.

::

    [dashboard]
    host = "127.0.0.1"     # a non-loopback address also needs allow_remote = true
    port = 9615
    read_only = false
    allow_remote = false

Pure and standard library only.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Any

from corral.core.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9615
KEYS = ("host", "port", "read_only", "allow_remote")


@dataclass(frozen=True)
class Settings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    read_only: bool = False
    allow_remote: bool = False

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def url_host(self) -> str:
        """The host to put in a URL a browser on this machine opens."""
        if self.host in ("0.0.0.0", "::", ""):
            return "127.0.0.1"
        return f"[{self.host}]" if ":" in self.host else self.host


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_table(home_root: str) -> tuple[dict[str, Any], str]:
    path = os.path.join(home_root, "corral.toml")
    if not os.path.exists(path):
        return {}, path
    import tomllib

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"invalid settings: {e}", file=path)
    table = data.get("dashboard") or {}
    if not isinstance(table, dict):
        raise ConfigError("[dashboard] must be a table", file=path, key="dashboard")
    return table, path


def resolve(table: dict[str, Any], path: str, flags: dict[str, Any]) -> Settings:
    """Settings from the [dashboard] table, overridden by the flags that were given (not None)."""
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in KEYS:
            raise ConfigError(f"unknown key in [dashboard]: {key!r} (known: {', '.join(KEYS)})", file=path, key=f"dashboard.{key}")
        values[key] = value
    host = values.get("host", DEFAULT_HOST)
    if not isinstance(host, str) or not host.strip():
        raise ConfigError("must be a host name or address, e.g. \"127.0.0.1\"", file=path, key="dashboard.host")
    port = values.get("port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"must be a port number 1-65535, got {port!r}", file=path, key="dashboard.port")
    for key in ("read_only", "allow_remote"):
        if not isinstance(values.get(key, False), bool):
            raise ConfigError(f"must be true or false, got {values[key]!r}", file=path, key=f"dashboard.{key}")
    out = Settings(host.strip(), port, bool(values.get("read_only", False)), bool(values.get("allow_remote", False)))
    given = {k: v for k, v in flags.items() if v is not None}
    if given:
        from dataclasses import replace

        out = replace(out, **given)
    if not 0 < out.port < 65536:
        raise ConfigError(f"--port must be 1-65535, got {out.port}")
    return out
