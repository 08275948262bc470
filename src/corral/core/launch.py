"""What an instance is started with: argv, environment and inherited fds, built as plain values.

Pure functions of the app's :class:`~corral.core.appspec.AppSpec` and a few facts handed in (the instance's
index and id, the daemon's home, the listening sockets to pass, the notify
socket's address).  The supervisor performs the result through its spawner;
nothing here touches a process.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from corral.core.appkind import clean_env, looks_like_python

if TYPE_CHECKING:  # the config loader imports this module: sockets only when spawning
    from corral.core.appspec import AppSpec
    from corral.system.listeners import Listener


@dataclass(frozen=True)
class LaunchPlan:
    """Everything needed to exec one instance."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    uid: str | int | None = None
    gid: str | int | None = None
    pass_fds: tuple[int, ...] = field(default=())


def build_argv(app: AppSpec) -> list[str]:
    interpreter = app.interpreter or "none"
    argv: list[str] = []
    if interpreter != "none":
        argv.append(interpreter)
        argv.extend(app.interpreter_args)
    argv.append(app.script)
    argv.extend(app.args)
    return argv


def build_env(cfg: AppSpec, base_env: Mapping[str, str], *, index: int, instance_id: int, home: str) -> dict[str, str]:
    """The instance's environment before sockets: the client's, the app's, then Corral's own."""
    env = clean_env(base_env, cfg.uid, cfg.gid) if cfg.uid is not None and os.geteuid() == 0 else dict(base_env)
    env.update(cfg.env)
    env[cfg.instance_var] = str(index)
    env["CORRAL_INSTANCE"] = str(index)
    env["CORRAL_APP_NAME"] = cfg.name
    env["CORRAL_ID"] = str(instance_id)
    env["pm_id"] = str(instance_id)
    env["name"] = cfg.name
    env["CORRAL_HOME"] = home
    inc = cfg.increment_var
    if inc:
        try:
            env[inc] = str(int(env.get(inc, "0")) + index)
        except ValueError:
            pass
    return env


def resolve_program(argv: list[str], path: str | None) -> list[str]:
    """argv with a bare program name looked up on the instance's own PATH."""
    if argv and os.sep not in argv[0]:
        found = shutil.which(argv[0], path=path)
        if found:
            return [found, *argv[1:]]
    return argv


def plan_launch(
    cfg: AppSpec,
    env: dict[str, str],
    *,
    sockets: Sequence[Listener] = (),
    notify_address: str | None = None,
) -> LaunchPlan:
    """The argv, env and fds of one spawn. ``env`` comes from :func:`build_env`.

    Raises listeners.ListenError for a ``{fd:NAME}`` placeholder naming no socket."""
    argv = build_argv(cfg)
    env = dict(env)
    if "PYTHONUNBUFFERED" not in env and looks_like_python(argv):
        env["PYTHONUNBUFFERED"] = "1"
    argv = resolve_program(argv, env.get("PATH"))
    if notify_address is not None:
        env["NOTIFY_SOCKET"] = notify_address
    if cfg.watchdog_sec:
        env["WATCHDOG_USEC"] = str(cfg.watchdog_sec * 1000)
    pass_fds: tuple[int, ...] = ()
    if sockets:
        from corral.system import listeners as listen

        socks = list(sockets)
        argv = listen.expand_placeholders(argv, socks)
        env.update(listen.child_env(socks))
        pass_fds = tuple(ls.fd for ls in socks)
        argv = listen.shim_argv(argv, list(pass_fds))
    return LaunchPlan(argv=argv, env=env, cwd=cfg.cwd, uid=cfg.uid, gid=cfg.gid, pass_fds=pass_fds)


def suffixed(path: str, index: int) -> str:
    """``app-out.log`` -> ``app-out-3.log``: one file per instance."""
    root, ext = os.path.splitext(path)
    return f"{root}-{index}{ext}"


LOG_KEYS = ("out_file", "error_file", "log_file")


def log_paths(cfg: AppSpec, logs_dir: str, index: int, several: bool) -> dict[str, str | None]:
    """The out, error and combined log paths of one instance (None: not written)."""
    merge = cfg.merge_logs
    name = cfg.name
    defaults = {
        "out_file": os.path.join(logs_dir, f"{name}-out.log"),
        "error_file": os.path.join(logs_dir, f"{name}-error.log"),
        "log_file": os.path.join(logs_dir, f"{name}.log"),
    }
    out: dict[str, str | None] = {}
    for key, value in (("out_file", cfg.out_file), ("error_file", cfg.error_file), ("log_file", cfg.log_file)):
        if value is None:
            out[key] = None
            continue
        path = defaults[key] if value == "default" else value
        out[key] = suffixed(path, index) if several and not merge else path
    return out


def pid_file_path(cfg: AppSpec, index: int, several: bool) -> str | None:
    path = cfg.pid_file
    if not path:
        return None
    return suffixed(path, index) if several else str(path)
