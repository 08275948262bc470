"""Commands that read or act without changing the process list: list, describe, logs, save, kill..."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from corral.cli import common
from corral.errors import UsageError


def cmd_list(ns: argparse.Namespace) -> int:
    processes = common.client().call("list")
    if ns.json:
        print(json.dumps(processes, indent=None if ns.cmd == "jlist" else 2))
    else:
        common.print_table(processes)
    return 0


def cmd_jlist(ns: argparse.Namespace) -> int:
    print(json.dumps(common.client().call("list")))
    return 0


def cmd_prettylist(ns: argparse.Namespace) -> int:
    print(json.dumps(common.client().call("list"), indent=2))
    return 0


def cmd_pid(ns: argparse.Namespace) -> int:
    """PM2's ``pid [app]``: the pids of an app's running instances (every app's without one), one a line."""
    processes = common.client().call("list")
    if ns.name is not None:
        processes = [p for p in processes if p["name"] == ns.name or str(p["id"]) == ns.name]
        if not processes:
            from corral.errors import NotFoundError

            raise NotFoundError(f"no process named '{ns.name}'")
    for p in processes:
        if p.get("pid"):
            print(p["pid"])
    return 0


def cmd_describe(ns: argparse.Namespace) -> int:
    from corral import render

    processes = common.client().call("describe", {"target": common.targets(ns.targets), "show_env": ns.env})
    if ns.json:
        print(json.dumps(processes, indent=2))
        return 0
    for p in processes:
        render.write(render.describe(p) + "\n")
    return 0


def cmd_env(ns: argparse.Namespace) -> int:
    env = common.client().call("env", {"id": ns.id})
    for k, v in env.items():
        print(f"{k}: {v}")
    return 0


def cmd_ping(ns: argparse.Namespace) -> int:
    result = common.client().call("ping")
    print(json.dumps({"msg": "pong", **result}))
    return 0


def cmd_healthcheck(ns: argparse.Namespace) -> int:
    """Exit 0 when every named app (default: every autostart app) is online and healthy."""
    from corral.errors import DaemonError

    try:
        result = common.client().call("health", {"names": ns.names}, autostart=False)
    except (DaemonError, OSError) as e:
        sys.stdout.write(f"unhealthy: {e}\n")
        return 1
    if not result["apps"]:
        sys.stdout.write("unhealthy: no apps\n")
        return 1
    if result["healthy"]:
        sys.stdout.write("healthy: " + "; ".join(a["reason"] for a in result["apps"]) + "\n")
        return 0
    sys.stdout.write("unhealthy: " + "; ".join(a["reason"] for a in result["apps"] if not a["healthy"]) + "\n")
    return 1


def cmd_ecosystem(ns: argparse.Namespace) -> int:
    # the ecosystem tools load the config machinery: imported only for this command
    from corral.ecosystem_tools import main as ecosystem_main

    return ecosystem_main(list(ns.rest))


def cmd_monit(ns: argparse.Namespace) -> int:
    from corral.monit import run_monit

    return run_monit(common.client(), interval=ns.interval)


def cmd_kill(ns: argparse.Namespace) -> int:
    from corral.errors import DaemonError

    client = common.client()
    if not client.is_running():
        sys.stderr.write("[corral] daemon is not running\n")
        return 0
    try:
        result = client.call("kill", autostart=False)
    except DaemonError:
        result = None  # it went away before answering: another kill, or it died
    import time

    deadline = time.monotonic() + 10
    while client.is_running() and time.monotonic() < deadline:
        time.sleep(0.02)
    if client.is_running():
        sys.stderr.write("corral: error: the daemon is still running 10 s after kill\n")
        return 1
    if result is None:
        sys.stderr.write("[corral] the daemon stopped (it did not answer: another kill, or it died)\n")
    else:
        sys.stderr.write(f"[corral] stopped {result['stopped']} processes and the daemon\n")
    return 0


def cmd_save(ns: argparse.Namespace) -> int:
    result = common.client().call("save", {"force": ns.force})
    sys.stderr.write(f"[corral] saved {result['count']} apps to {result['path']}\n")
    return 0


def cmd_flush(ns: argparse.Namespace) -> int:
    targets = common.targets(ns.targets) if ns.targets else ["all"]
    if "all" in targets and not ns.yes and ns.targets:
        raise UsageError("flushing every app's logs needs --yes")
    result = common.client().call("flush", {"target": targets})
    for path in result["files"]:
        sys.stderr.write(f"[corral] flushed {path}\n")
    return 0


def cmd_reload_logs(ns: argparse.Namespace) -> int:
    result = common.client().call("reload_logs")
    sys.stderr.write(f"[corral] reopened {result['reopened']} log files\n")
    return 0


def _when(text: str, flag: str) -> float:
    """``10m`` / ``2h`` / ``30s`` ago, a Unix time, or an ISO date-time."""
    import time

    text = text.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[:-1].replace(".", "", 1).isdigit() and text[-1:] in units:
        return time.time() - float(text[:-1]) * units[text[-1]]
    try:
        return float(text)
    except ValueError:
        pass
    from datetime import datetime

    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise UsageError(f"{flag} takes a duration ago (10m, 2h), a Unix time or an ISO date-time, got {text!r}")


def cmd_logs(ns: argparse.Namespace) -> int:
    from corral import render

    targets = common.targets(ns.targets) if ns.targets else ["all"]
    streams = ["out", "err"]
    if ns.out and not ns.err:
        streams = ["out"]
    elif ns.err and not ns.out:
        streams = ["err"]
    colour = render.use_colour(sys.stdout)
    args: dict[str, Any] = {"target": targets, "lines": ns.lines, "streams": streams, "follow": not ns.nostream, "logs": True}
    if ns.since:
        args["since"] = _when(ns.since, "--since")
    if ns.until:
        args["until"] = _when(ns.until, "--until")
    if ns.grep:
        args["grep"] = ns.grep
    out = sys.stdout
    try:
        for msg in common.client().stream("subscribe", args):
            kind = msg.get("stream")
            if kind == "end":
                break
            if kind == "notice":
                common.warn(msg.get("message", ""))
                continue
            if kind != "log":
                continue
            if ns.json:
                out.write(json.dumps({"timestamp": msg.get("time"), "app_name": msg["name"], "process_id": msg["id"], "type": msg["type"], "message": msg["message"]}) + "\n")
            elif ns.raw:
                out.write(msg["message"] + "\n")
            else:
                out.write(render.log_prefix(msg["name"], msg["id"], colour) + msg["message"] + "\n")
            out.flush()
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        return 0
    return 0


def cmd_events(ns: argparse.Namespace) -> int:
    """``corral events [--json] [name...]``: the kept events, then live ones (see docs/events.md)."""
    from corral.events import ProcessEvent, render_lines

    args: dict[str, Any] = {"names": list(ns.names), "last": ns.lines, "follow": not ns.nostream}
    fields = set(ProcessEvent.__dataclass_fields__)
    try:
        for msg in common.client().stream("events", args):
            if msg.get("stream") == "end":
                break
            if msg.get("stream") != "event":
                continue
            event = ProcessEvent(**{k: v for k, v in msg.items() if k in fields})
            for text in render_lines([event], as_json=ns.json):
                sys.stdout.write(text + "\n")
            sys.stdout.flush()
    except (KeyboardInterrupt, BrokenPipeError):
        return 0
    return 0
