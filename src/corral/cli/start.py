"""``corral start``: an ecosystem file, a script with PM2's flags, JSON on stdin, or a known process."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

from corral.cli import common
from corral.core.errors import ConfigError, UsageError

# `corral start` answers once the daemon has spawned the processes, as `pm2 start` and
# `systemctl start` of a plain service do: the table shows their pids, `online` (or
# `launching` while an app with wait_ready has not reported ready), and a spawn that failed
# (exec error) makes the exit non-zero; apps held back by depends_on show `waiting`.
# --wait answers once every instance has settled, the start order done.
WAIT_BY_DEFAULT = False


def add_arguments(s: argparse.ArgumentParser) -> None:
    from corral.cli.keyflags import add_key_flags

    s.add_argument("target", nargs="?", help="ecosystem file, script or program (default: ecosystem file in this folder); - reads app JSON from stdin")
    s.add_argument("--env", help="use env_<NAME> from the ecosystem file")
    s.add_argument("--only", help="only these apps (comma separated)")
    s.add_argument("--json", action="store_true", help="print the process list as JSON")
    s.add_argument("--wait", dest="wait", action="store_const", const=True, default=WAIT_BY_DEFAULT, help="answer once every started instance has settled: online (ready, with wait_ready) or failed, apps with depends_on started in order")
    s.add_argument("--no-wait", dest="wait", action="store_const", const=False, help="answer once the processes are spawned (the default): an app with wait_ready may show 'launching'")
    add_key_flags(s)
    s.add_argument("script_args", nargs="*", help="arguments after -- go to the script")


def daemon_takes(cmd: str, param: str) -> bool:
    from corral.core.commands import BY_NAME

    command = BY_NAME.get(cmd)
    return command is not None and any(p.name == param for p in command.params)


def _watch_target_fixup(ns: argparse.Namespace) -> None:
    """``corral start --watch app.py``: the optional value was the script, as PM2 reads it."""
    from corral.cli.keyflags import dest
    from corral.config.keys import KEY_BY_NAME

    if ns.target is not None:
        return
    attr = dest(KEY_BY_NAME["watch"], 0)
    given = getattr(ns, attr, None)
    if given and isinstance(given[-1], str) and Path(given[-1]).is_file():
        ns.target = given[-1]
        given[-1] = True


def load(ns: argparse.Namespace, client_env: dict[str, str]) -> tuple[Any, str | None] | None:
    """The apps to send and their source file; None when the target is a known process."""
    from corral.cli.keyflags import file_overrides, raw_from_flags
    from corral.config.loader import find_ecosystem, load_apps, load_ecosystem, looks_like_config

    target = ns.target
    if target == "-":
        data = common.read_stdin_json()
        return load_apps(data, label="<stdin>", base_dir=Path.cwd(), env_name=ns.env, client_env=client_env), None
    if target is None:
        found = find_ecosystem(Path.cwd())
        if found is None:
            raise UsageError("no ecosystem file here (ecosystem.toml, ecosystem.config.js, ...): name a file or a script")
        target = str(found)
    path = Path(target)
    flags = raw_from_flags(ns)
    if looks_like_config(target) and path.is_file():
        only = ns.only.split(",") if ns.only else None
        result = load_ecosystem(path, env_name=ns.env, only=only, client_env=client_env)
        overrides = file_overrides(ns)
        ignored = sorted(set(flags) - set(overrides))
        if ignored:
            common.warn(f"warning: with an ecosystem file these options are ignored (set them in the file): {', '.join(ignored)}")
        from corral.core.appspec import replace

        changes = {"autostart": True} if only else {}  # naming an app is asking for it
        result.apps = [replace(app, **{**changes, **overrides}) for app in result.apps]
        return result, str(path.resolve())
    if looks_like_config(target) and not path.exists() and "name" not in flags:
        raise ConfigError("file not found", file=str(path.absolute()))
    if not path.exists() and (os.sep in target or os.path.splitext(target)[1]):
        raise ConfigError(f"script {target!r} not found (in {Path.cwd()})", key="script")
    if not path.exists() and os.sep not in target and shutil.which(target) is None:
        return None  # `corral start <name|id>`: start a known, stopped process
    raw: dict[str, Any] = {"script": target, **flags}
    if ns.script_args:
        raw["args"] = ns.script_args
    return load_apps(raw, label="command line", base_dir=Path.cwd(), env_name=ns.env, client_env=client_env), None


def cmd_start(ns: argparse.Namespace) -> int:
    _watch_target_fixup(ns)
    client_env = dict(os.environ)
    loaded = load(ns, client_env)
    client = common.client()
    if loaded is None:
        with client.session() as s:
            reply, everyone = common.call_and_list(s, "restart", {"target": common.targets([ns.target]), "client_env": client_env})
        common.print_processes(everyone, ns.json)
        return _report_failures(reply)
    result, source = loaded
    for w in result.warnings:
        common.warn(f"warning: {w}")
    for n in result.notices:
        common.warn(f"notice: {n}")
    args: dict[str, Any] = {"apps": result.wire(), "client_env": client_env, "source": source}
    if daemon_takes("start", "wait"):  # an older daemon always waits
        args["wait"] = ns.wait
    with client.session() as s:
        reply, everyone = common.call_and_list(s, "start", args)
    common.print_processes(everyone, ns.json)
    return _report_failures(reply)


def _report_failures(reply: Any) -> int:
    """1 when a started instance could not be spawned (exec error): one line each on stderr.

    Only what the spawn itself tells: whether a process that did start has crashed by the
    time of the answer is a race, left to the table (and to the restart policy)."""
    processes = reply.get("processes", []) if isinstance(reply, dict) else []
    failed = [p for p in processes if str(p.get("reason") or "").startswith("could not start")]
    for p in failed:
        common.warn(f"{p['name']} (id {p['id']}) {p['reason']} (now {p['status']})")
    return 1 if failed else 0
