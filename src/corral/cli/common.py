"""What the command modules share: the client, the process table, targets, stdin JSON."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from corral.core.errors import ConfigError, UsageError


def client() -> Any:
    from corral.cli.client import Client

    return Client()


def print_table(processes: list[dict[str, Any]]) -> None:
    from corral.cli import render

    render.write(render.table(processes, colour=render.use_colour(sys.stdout)))


def print_processes(processes: list[dict[str, Any]], as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(processes, indent=2))
    else:
        print_table(processes)


def quiet_stdout() -> int:
    """The reader of stdout went away (``corral ls | head -1``): no noise at exit."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError):
        pass
    return 0


def warn(msg: str) -> None:
    sys.stderr.write(f"corral: {msg}\n")


def targets(values: list[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        out.extend(t for t in v.split(",") if t.strip())
    if not out:
        raise UsageError("name a process: a name, an id, a namespace or 'all'")
    return out


def call_and_list(session: Any, cmd: str, args: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    """Send one state-changing request; the process list comes with its reply.

    A daemon whose reply carries no ``all`` list is asked for it on the same
    connection: a command never opens a second one.
    """
    result = session.call(cmd, args)
    everyone = result.get("all") if isinstance(result, dict) else None
    if not isinstance(everyone, list):
        everyone = session.call("list")
    return result, everyone


def read_stdin_json(label: str = "<stdin>") -> Any:
    """PM2's ``-``: app objects as JSON on standard input."""
    text = sys.stdin.read()
    try:
        return json.loads(text)
    except ValueError as e:
        raise ConfigError(f"not valid JSON: {e}", file=label)


def stdin_app_names(data: Any) -> list[str]:
    """The app names of PM2-style JSON (one app, a list, or ``{"apps": [...]}``)."""
    apps = data.get("apps", data) if isinstance(data, dict) else data
    if isinstance(apps, dict):
        apps = [apps]
    if not isinstance(apps, list):
        raise ConfigError("expected an app object, a list of them, or {\"apps\": [...]}", file="<stdin>")
    names: list[str] = []
    for i, app in enumerate(apps, 1):
        name = app.get("name") if isinstance(app, dict) else None
        if not isinstance(name, str) or not name:
            from corral.config.loader import name_from_script

            script = app.get("script") if isinstance(app, dict) else None
            if not isinstance(script, str) or not script:
                raise ConfigError(f"app #{i} has no name and no script", file="<stdin>")
            name = name_from_script(script)
        names.append(name)
    if not names:
        raise ConfigError("no apps given", file="<stdin>")
    return names


def looks_like_path(target: str) -> bool:
    return not target.isdigit() and (os.sep in target or bool(os.path.splitext(target)[1]))


def resolve_script_targets(session: Any, wanted: list[str]) -> list[str]:
    """PM2 matches a target against names, then against each app's script path.

    Targets that look like files and name no process are turned into the ids
    of the processes running that script; the rest go to the daemon as given.
    """
    if not any(looks_like_path(t) for t in wanted):
        return wanted
    processes = session.call("describe", {"target": ["all"]}) if session is not None else []
    names = {p["name"] for p in processes}
    out: list[str] = []
    for t in wanted:
        if not looks_like_path(t) or t in names:
            out.append(t)
            continue
        full = os.path.realpath(t)
        ids = [
            str(p["id"])
            for p in processes
            if isinstance(p.get("script"), str)
            and os.path.realpath(os.path.join(p.get("cwd") or "/", p["script"])) == full
        ]
        out.extend(ids or [t])
    return out
