"""Settings, read once from the environment.

Every knob is an environment variable, so the same code runs alone, under Corral,
under systemd or in a container; `Settings.from_env()` validates them up front so a
bad value fails at start with a clear message instead of on the first request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: examples/webapp/ (the folder holding this package).
APP_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = APP_ROOT / "data"
DEFAULT_DATABASE_URL = f"sqlite:///{DEFAULT_DATA_DIR / 'webapp.db'}"

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class SettingsError(ValueError):
    """An environment variable has a value the app cannot use."""


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    #: Connections kept open per process (PostgreSQL). Default: the CPU count.
    db_pool_size: int = field(default_factory=lambda: os.cpu_count() or 1)
    #: Seconds to wait for a new database connection (PostgreSQL's connect_timeout).
    db_connect_timeout: float = 5.0
    log_level: str = "info"
    #: Seconds /api/health waits for `SELECT 1` before it reports the database down.
    health_db_timeout: float = 2.0
    #: This process's instance number when run as one of several (Corral, PM2).
    instance: str | None = None
    #: A folder to create before the database is opened (only for the default SQLite
    #: file: a DATABASE_URL given explicitly is used as it is).
    data_dir: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        url = env.get("DATABASE_URL", "").strip()
        return cls(
            database_url=url or DEFAULT_DATABASE_URL,
            db_pool_size=_positive_int(env, "DB_POOL_SIZE", os.cpu_count() or 1),
            db_connect_timeout=_positive_float(env, "DB_CONNECT_TIMEOUT", 5.0),
            log_level=_log_level(env),
            health_db_timeout=_positive_float(env, "HEALTH_DB_TIMEOUT", 2.0),
            instance=_instance(env),
            data_dir=None if url else DEFAULT_DATA_DIR,
        )


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}")
    if value < 1:
        raise SettingsError(f"{name} must be at least 1, got {value}")
    return value


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}")
    if not value > 0:
        raise SettingsError(f"{name} must be greater than 0, got {raw!r}")
    return value


def _log_level(env: Mapping[str, str]) -> str:
    level = env.get("LOG_LEVEL", "").strip().lower() or "info"
    if level == "warn":
        level = "warning"
    if level not in LOG_LEVELS:
        raise SettingsError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    return level


def _instance(env: Mapping[str, str]) -> str | None:
    # Corral sets CORRAL_INSTANCE; PM2 sets NODE_APP_INSTANCE. Either identifies this
    # process among its siblings in logs and in /api/info.
    for name in ("CORRAL_INSTANCE", "NODE_APP_INSTANCE"):
        value = env.get(name, "").strip()
        if value:
            return value
    return None
