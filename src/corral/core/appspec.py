"""One app as loaded: the typed :class:`AppSpec`, one field per key of
:data:`corral.config.keys.KEYS` (checked by tests/unit/test_appspec.py) plus the
loader's derived fields (:data:`DERIVED`).

The loader (:mod:`corral.config.loader`) builds it from a file; the CLI sends it as
plain data (:func:`to_wire`); the daemon decodes it once (:func:`from_wire`, in
``daemon/registry.py``) and keeps it on ``App.spec``. Values are in the units the
keys' parsers return (durations in ms, sizes in bytes); :func:`policy_of` and
:meth:`HealthConfig.spec` are the one place they become seconds.

Imports only msgspec and the pure core, so the CLI and every layer may use it.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from corral.core.healthspec import HealthSpec
from corral.core.statemachine_types import Policy


class HealthConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``health`` table as :func:`corral.core.healthspec.parse_health` returns it (durations in ms)."""

    kind: Literal["http", "tcp", "exec"]
    target: str | list[str]
    interval: int = 10_000
    timeout: int = 3_000
    start_period: int = 0
    failure_threshold: int = 3
    success_threshold: int = 1
    status_min: int = 200
    status_max: int = 399
    expect_body: str | None = None
    liveness: bool = False

    def spec(self) -> HealthSpec:
        """The probe in seconds, as :mod:`corral.core.healthspec` runs it."""
        return HealthSpec(
            kind=self.kind,
            target=self.target,
            interval=self.interval / 1000.0,
            timeout=self.timeout / 1000.0,
            start_period=self.start_period / 1000.0,
            failure_threshold=self.failure_threshold,
            success_threshold=self.success_threshold,
            status_min=self.status_min,
            status_max=self.status_max,
            expect_body=self.expect_body,
            liveness=self.liveness,
        )


class DependsOn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One entry of ``depends_on`` (``condition`` may be ``default``: resolved by ``deps.validate``)."""

    name: str
    condition: str = "default"


class HookConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One entry of ``hooks`` as :func:`corral.core.hooks.parse_hook` returns it (durations in ms)."""

    name: str
    events: list[str]
    apps: list[str] = []
    url: str | None = None
    command: str | list[str] | None = None
    format: str = "json"
    timeout: int = 5000
    backoff: int = 1000
    rate_period: int = 60_000
    retries: int = 3
    rate_limit: int = 10

    def table(self) -> dict[str, Any]:
        """As parse_hook returns it (no ``url`` or ``command`` key when unset)."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        return {k: v for k, v in out.items() if v is not None}


class AppSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One normalised app. Field order and defaults follow ``KEYS``."""

    name: str
    script: str
    args: list[str] = []
    interpreter: str | None = None
    interpreter_args: list[str] = []
    cwd: str
    env: dict[str, str] = {}
    env_file: list[str] = []
    instances: int | str = 1
    exec_mode: Literal["fork", "cluster"] = "fork"
    instance_var: str = "NODE_APP_INSTANCE"
    increment_var: str | None = None
    namespace: str = "default"
    autorestart: bool = True
    autostart: bool = True
    max_restarts: int = 16
    min_uptime: int = 1000
    restart_delay: int = 0
    exp_backoff_restart_delay: int | None = None
    stop_exit_codes: list[int] = []
    kill_timeout: int = 1600
    kill_signal: str = "SIGINT"
    out_file: str | None = "default"
    error_file: str | None = "default"
    log_file: str | None = None
    log_date_format: str | None = None
    time: bool = False
    merge_logs: bool = False
    log_type: Literal["text", "json"] = "text"
    disable_logs: bool = False
    pid_file: str | None = None
    uid: str | int | None = None
    gid: str | int | None = None
    max_memory_restart: int | None = None
    cron_restart: str | None = None
    watch: bool | list[str] = False
    ignore_watch: list[str] = []
    watch_delay: int = 1000
    wait_ready: bool = False
    listen_timeout: int = 3000
    listen: list[str] = []
    port: int | None = None
    health: HealthConfig | None = None
    memory_limit_mode: Literal["pss", "rss"] = "pss"
    listen_names: list[str] = []
    reuse_port: bool = False
    backlog: int = 2048
    memory_max: int | None = None
    cpu_max: float | None = None
    log_max_size: int | None = None
    log_rotate_interval: str | None = None
    log_retain: int | None = None
    log_compress: bool | None = None
    log_date_suffix: str | None = None
    watchdog_sec: int | None = None
    depends_on: list[DependsOn] = []
    hooks: list[HookConfig] = []
    # ---- derived by the loader (DERIVED)
    env_names: list[str] = []


# Fields that are not keys of KEYS, and why they exist.
DERIVED: dict[str, str] = {
    "env_names": "the names of the app's env_<name> tables (for `--env` warnings and describe)",
}

# Keys whose KEYS default is None but that the loader always fills: required fields.
REQUIRED: dict[str, str] = {
    "name": "defaults to the script's file name",
    "script": "required",
    "cwd": "defaults to the ecosystem file's folder (made absolute)",
}


def policy_of(spec: AppSpec) -> Policy:
    """The state machine's policy: the one place ms become seconds."""
    exp = spec.exp_backoff_restart_delay
    watchdog = spec.watchdog_sec
    return Policy(
        autorestart=spec.autorestart,
        max_restarts=spec.max_restarts,
        min_uptime=spec.min_uptime / 1000.0,
        restart_delay=spec.restart_delay / 1000.0,
        exp_backoff=exp / 1000.0 if exp else None,
        stop_exit_codes=frozenset(spec.stop_exit_codes),
        kill_timeout=spec.kill_timeout / 1000.0,
        kill_signal=spec.kill_signal,
        wait_ready=spec.wait_ready,
        listen_timeout=spec.listen_timeout / 1000.0,
        watchdog=watchdog / 1000.0 if watchdog else None,
    )


def to_wire(spec: AppSpec) -> dict[str, Any]:
    """The spec as plain JSON-able data: what the CLI sends and the dump file stores."""
    return msgspec.to_builtins(spec)  # type: ignore[no-any-return]


def from_wire(data: Any) -> AppSpec:
    """A spec from plain data; :class:`msgspec.ValidationError` names the field (``$.kill_timeout``)."""
    return msgspec.convert(data, AppSpec)


def replace(spec: AppSpec, **changes: Any) -> AppSpec:
    """A copy with some fields changed (scale, ``--update-env``, a file's overrides)."""
    return msgspec.structs.replace(spec, **changes)


def as_dict(spec: AppSpec) -> dict[str, Any]:
    """Field name -> value, one level deep (sub-structs stay structs)."""
    return msgspec.structs.asdict(spec)
