"""State-changing commands: one connection each, the table printed from the reply."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from corral.cli import common
from corral.core.errors import UsageError

VERBS = {"stop": "Stopped", "restart": "Restarted", "delete": "Deleted", "reset": "Reset"}


def _wanted(ns: argparse.Namespace) -> list[str]:
    if ns.targets == ["-"]:
        return common.stdin_app_names(common.read_stdin_json())
    return common.targets(ns.targets)


def action(cmd: str) -> Any:
    def run(ns: argparse.Namespace) -> int:
        wanted = _wanted(ns)
        args: dict[str, Any] = {}
        if cmd == "restart" and getattr(ns, "update_env", False):
            args["update_env"] = True
            args["client_env"] = dict(os.environ)
        if cmd == "restart" and getattr(ns, "with_dependents", False):
            args["with_dependents"] = True
        with common.client().session() as s:
            args["target"] = common.resolve_script_targets(s, wanted)
            result, everyone = common.call_and_list(s, cmd, args)
        processes = result.get("processes", [])
        for p in processes:
            sys.stderr.write(f"[corral] {VERBS[cmd]} {p['name']} (id {p['id']})\n")
        common.print_table(everyone)
        if cmd == "restart":
            failed = [p for p in processes if p["status"] not in ("online", "launching")]
            for p in failed:
                common.warn(f"{p['name']} (id {p['id']}) is {p['status']}: {p.get('reason') or ''}")
            return 1 if failed else 0
        return 0

    return run


def cmd_reload(ns: argparse.Namespace) -> int:
    args: dict[str, Any] = {"client_env": dict(os.environ)}
    first = ns.targets[0] if ns.targets else None
    if first is not None and len(ns.targets) == 1 and first != "-" and Path(first).is_file():
        from corral.config.loader import load_ecosystem, looks_like_config

        if not looks_like_config(first):
            raise UsageError(f"{first} is not an ecosystem file")
        only = ns.only.split(",") if ns.only else None
        result = load_ecosystem(Path(first), env_name=ns.env, only=only, client_env=args["client_env"])
        for w in result.warnings:
            common.warn(f"warning: {w}")
        args["apps"] = result.wire()
        args["source"] = str(Path(first).resolve())
        wanted = None
    else:
        wanted = _wanted(ns)
        if ns.with_dependents:
            args["with_dependents"] = True
    with common.client().session() as s:
        if wanted is not None:
            args["target"] = common.resolve_script_targets(s, wanted)
        out, everyone = common.call_and_list(s, "reload", args)
    for name in out["started"]:
        sys.stderr.write(f"[corral] started {name} (new in the file)\n")
    for name in out["deleted"]:
        sys.stderr.write(f"[corral] deleted {name} (gone from the file)\n")
    for app in out["apps"]:
        sys.stderr.write(f"[corral] {app['name']}: {app['message']}\n")
    common.print_table(everyone)
    return 0


def cmd_scale(ns: argparse.Namespace) -> int:
    with common.client().session() as s:
        out, everyone = common.call_and_list(s, "scale", {"name": ns.name, "count": ns.count})
    sys.stderr.write(f"[corral] {ns.name}: {len(out['processes'])} instances (+{out['added']} -{out['removed']})\n")
    common.print_table(everyone)
    return 0


def cmd_resurrect(ns: argparse.Namespace) -> int:
    with common.client().session() as s:
        result, everyone = common.call_and_list(s, "resurrect", {"client_env": dict(os.environ)})
    sys.stderr.write(f"[corral] resurrected {len(result['processes'])} processes from {result['source']}\n")
    common.print_table(everyone)
    return 0


def cmd_signal(ns: argparse.Namespace) -> int:
    with common.client().session() as s:
        wanted = common.resolve_script_targets(s, common.targets(ns.targets))
        result = s.call("signal", {"target": wanted, "signal": ns.signal})
    for p in result["processes"]:
        sys.stderr.write(f"[corral] sent {result['signal']} to {p['name']} (id {p['id']})\n")
    return 0
