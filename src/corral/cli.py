"""The ``corral`` command line: PM2's verbs and flags.

Only argparse, json, socket and the small protocol modules are imported up
front; config loading and anything heavier are imported inside the command
that needs them, so ``corral ls`` stays fast.

Exit codes: 0 done; 1 nothing matched or the operation failed; 2 usage or
config error.  Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from corral.errors import ConfigError, CorralError, NotFoundError, UsageError

PROG = "corral"


# ---------------------------------------------------------------- helpers


def _client() -> Any:
    from corral.client import Client

    return Client()


def _print_table(processes: list[dict[str, Any]]) -> None:
    from corral import render

    render.write(render.table(processes, colour=render.use_colour(sys.stdout)))


def _targets(values: list[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        out.extend(t for t in v.split(",") if t.strip())
    if not out:
        raise UsageError("name a process: a name, an id, a namespace or 'all'")
    return out


def _warn(msg: str) -> None:
    sys.stderr.write(f"corral: {msg}\n")


def _list_or_all(client: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = client.call("list")
    return result


# ---------------------------------------------------------------- start


def _app_from_flags(ns: argparse.Namespace, script: str) -> dict[str, Any]:
    raw: dict[str, Any] = {"script": script}
    mapping = {
        "name": "name",
        "instances": "instances",
        "interpreter": "interpreter",
        "interpreter_args": "interpreter_args",
        "cwd": "cwd",
        "max_memory_restart": "max_memory_restart",
        "restart_delay": "restart_delay",
        "max_restarts": "max_restarts",
        "min_uptime": "min_uptime",
        "kill_timeout": "kill_timeout",
        "kill_signal": "kill_signal",
        "log_date_format": "log_date_format",
        "log_type": "log_type",
        "output": "out_file",
        "error": "error_file",
        "log": "log_file",
        "namespace": "namespace",
        "cron_restart": "cron_restart",
        "exp_backoff_restart_delay": "exp_backoff_restart_delay",
        "instance_var": "instance_var",
        "increment_var": "increment_var",
        "pid_file": "pid_file",
        "uid": "uid",
        "gid": "gid",
    }
    for attr, key in mapping.items():
        value = getattr(ns, attr, None)
        if value is not None:
            raw[key] = value
    if ns.stop_exit_codes:
        raw["stop_exit_codes"] = [c for part in ns.stop_exit_codes for c in part.split(",") if c]
    if ns.no_autorestart:
        raw["autorestart"] = False
    if ns.time:
        raw["time"] = True
    if ns.merge_logs:
        raw["merge_logs"] = True
    if ns.exec_mode:
        raw["exec_mode"] = ns.exec_mode
    if ns.listen:
        raw["listen"] = ns.listen
    if ns.script_args:
        raw["args"] = ns.script_args
    return raw


def cmd_start(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from corral.config.loader import find_ecosystem, load_apps, load_ecosystem, looks_like_config

    client_env = dict(os.environ)
    target = ns.target
    if target is None:
        found = find_ecosystem(Path.cwd())
        if found is None:
            raise UsageError("no ecosystem file here (ecosystem.toml, ecosystem.config.js, ...): name a file or a script")
        target = str(found)
    path = Path(target)
    if looks_like_config(target) and path.is_file():
        only = ns.only.split(",") if ns.only else None
        result = load_ecosystem(path, env_name=ns.env, only=only, client_env=client_env)
        if only:
            for app in result.apps:
                app["autostart"] = True  # naming an app is asking for it
        if ns.namespace:
            for app in result.apps:
                app["namespace"] = ns.namespace
    elif looks_like_config(target) and not path.exists() and not ns.name:
        raise ConfigError("file not found", file=str(path.absolute()))
    else:
        if not path.exists() and (os.sep in target or os.path.splitext(target)[1]):
            raise ConfigError(f"script {target!r} not found (in {Path.cwd()})", key="script")
        if not path.exists() and os.sep not in target:
            import shutil

            if shutil.which(target) is None:
                # `corral start <name|id>`: start a known, stopped process.
                client = _client()
                res = client.call("restart", {"target": _targets([target]), "client_env": client_env})
                _print_table(_list_or_all(client) if res else [])
                return 0
        raw = _app_from_flags(ns, target)
        result = load_apps(raw, label="command line", base_dir=Path.cwd(), env_name=ns.env, client_env=client_env)
    for w in result.warnings:
        _warn(f"warning: {w}")
    for n in result.notices:
        _warn(f"notice: {n}")
    client = _client()
    source = str(Path(target).resolve()) if looks_like_config(target) and Path(target).is_file() else None
    client.call("start", {"apps": result.apps, "client_env": client_env, "source": source})
    if ns.json:
        print(json.dumps(_list_or_all(client), indent=2))
    else:
        _print_table(_list_or_all(client))
    return 0


# ---------------------------------------------------------------- simple actions


def _action(cmd: str, extra: dict[str, Any] | None = None) -> Any:
    def run(ns: argparse.Namespace) -> int:
        args: dict[str, Any] = {"target": _targets(ns.targets)}
        if extra:
            args.update(extra)
        if cmd == "restart" and getattr(ns, "update_env", False):
            args["update_env"] = True
            args["client_env"] = dict(os.environ)
        if cmd == "restart" and getattr(ns, "with_dependents", False):
            args["with_dependents"] = True
        client = _client()
        result = client.call(cmd, args)
        processes = result.get("processes", [])
        verb = {"stop": "Stopped", "restart": "Restarted", "delete": "Deleted", "reset": "Reset"}[cmd]
        for p in processes:
            sys.stderr.write(f"[corral] {verb} {p['name']} (id {p['id']})\n")
        if cmd == "restart":
            failed = [p for p in processes if p["status"] not in ("online", "launching")]
            _print_table(_list_or_all(client))
            for p in failed:
                _warn(f"{p['name']} (id {p['id']}) is {p['status']}: {p.get('reason') or ''}")
            return 1 if failed else 0
        _print_table(_list_or_all(client))
        return 0

    return run


def cmd_reload(ns: argparse.Namespace) -> int:
    from pathlib import Path

    client = _client()
    args: dict[str, Any] = {"client_env": dict(os.environ)}
    first = ns.targets[0] if ns.targets else None
    if first is not None and len(ns.targets) == 1 and Path(first).is_file():
        from corral.config.loader import load_ecosystem, looks_like_config

        if not looks_like_config(first):
            raise UsageError(f"{first} is not an ecosystem file")
        only = ns.only.split(",") if ns.only else None
        result = load_ecosystem(Path(first), env_name=ns.env, only=only, client_env=args["client_env"])
        for w in result.warnings:
            _warn(f"warning: {w}")
        args["apps"] = result.apps
        args["source"] = str(Path(first).resolve())
    else:
        args["target"] = _targets(ns.targets)
        if ns.with_dependents:
            args["with_dependents"] = True
    out = client.call("reload", args)
    for name in out["started"]:
        sys.stderr.write(f"[corral] started {name} (new in the file)\n")
    for name in out["deleted"]:
        sys.stderr.write(f"[corral] deleted {name} (gone from the file)\n")
    for app in out["apps"]:
        sys.stderr.write(f"[corral] {app['name']}: {app['message']}\n")
    _print_table(_list_or_all(client))
    return 0


def cmd_scale(ns: argparse.Namespace) -> int:
    client = _client()
    out = client.call("scale", {"name": ns.name, "count": ns.count})
    sys.stderr.write(f"[corral] {ns.name}: {len(out['processes'])} instances (+{out['added']} -{out['removed']})\n")
    _print_table(_list_or_all(client))
    return 0


def cmd_signal(ns: argparse.Namespace) -> int:
    result = _client().call("signal", {"target": _targets(ns.targets), "signal": ns.signal})
    for p in result["processes"]:
        sys.stderr.write(f"[corral] sent {result['signal']} to {p['name']} (id {p['id']})\n")
    return 0


def cmd_list(ns: argparse.Namespace) -> int:
    processes = _client().call("list")
    if ns.json:
        print(json.dumps(processes, indent=None if ns.cmd == "jlist" else 2))
    else:
        _print_table(processes)
    return 0


def cmd_jlist(ns: argparse.Namespace) -> int:
    print(json.dumps(_client().call("list")))
    return 0


def cmd_describe(ns: argparse.Namespace) -> int:
    from corral import render

    processes = _client().call("describe", {"target": _targets(ns.targets), "show_env": ns.env})
    if ns.json:
        print(json.dumps(processes, indent=2))
        return 0
    for p in processes:
        render.write(render.describe(p) + "\n")
    return 0


def cmd_env(ns: argparse.Namespace) -> int:
    env = _client().call("env", {"id": ns.id})
    for k, v in env.items():
        print(f"{k}: {v}")
    return 0


def cmd_ping(ns: argparse.Namespace) -> int:
    result = _client().call("ping")
    print(json.dumps({"msg": "pong", **result}))
    return 0


def cmd_healthcheck(ns: argparse.Namespace) -> int:
    """Exit 0 when every named app (default: every autostart app) is online and healthy."""
    from corral.errors import DaemonError

    try:
        result = _client().call("health", {"names": ns.names}, autostart=False)
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

    return run_monit(_client(), interval=ns.interval)


def cmd_kill(ns: argparse.Namespace) -> int:
    from corral.errors import DaemonError

    client = _client()
    if not client.is_running():
        sys.stderr.write("[corral] daemon is not running\n")
        return 0
    try:
        result = client.call("kill", autostart=False)
    except DaemonError:
        result = {"stopped": "?"}
    import time

    deadline = time.monotonic() + 10
    while client.is_running() and time.monotonic() < deadline:
        time.sleep(0.02)
    sys.stderr.write(f"[corral] stopped {result['stopped']} processes and the daemon\n")
    return 0


def cmd_save(ns: argparse.Namespace) -> int:
    result = _client().call("save", {"force": ns.force})
    sys.stderr.write(f"[corral] saved {result['count']} apps to {result['path']}\n")
    return 0


def cmd_resurrect(ns: argparse.Namespace) -> int:
    client = _client()
    result = client.call("resurrect", {"client_env": dict(os.environ)})
    sys.stderr.write(f"[corral] resurrected {len(result['processes'])} processes from {result['source']}\n")
    _print_table(_list_or_all(client))
    return 0


def cmd_flush(ns: argparse.Namespace) -> int:
    targets = _targets(ns.targets) if ns.targets else ["all"]
    if "all" in targets and not ns.yes and ns.targets:
        raise UsageError("flushing every app's logs needs --yes")
    result = _client().call("flush", {"target": targets})
    for path in result["files"]:
        sys.stderr.write(f"[corral] flushed {path}\n")
    return 0


def cmd_reload_logs(ns: argparse.Namespace) -> int:
    result = _client().call("reload_logs")
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

    targets = _targets(ns.targets) if ns.targets else ["all"]
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
        for msg in _client().stream("subscribe", args):
            kind = msg.get("stream")
            if kind == "end":
                break
            if kind == "notice":
                _warn(msg.get("message", ""))
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
        for msg in _client().stream("events", args):
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


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    from corral import __version__

    p = argparse.ArgumentParser(prog=PROG, description="Corral: a production process manager for Python services, and any other program.")
    p.add_argument("-v", "--version", action="version", version=f"corral {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    s = sub.add_parser("start", help="start an ecosystem file, a script, or a stopped process")
    s.add_argument("target", nargs="?", help="ecosystem file, script or program (default: ecosystem file in this folder)")
    s.add_argument("--name", "-n")
    s.add_argument("-i", "--instances")
    s.add_argument("--interpreter")
    s.add_argument("--interpreter-args", "--node-args", dest="interpreter_args")
    s.add_argument("--env", help="use env_<NAME> from the ecosystem file")
    s.add_argument("--cwd")
    s.add_argument("--only", help="only these apps (comma separated)")
    s.add_argument("--max-memory-restart")
    s.add_argument("--restart-delay")
    s.add_argument("--exp-backoff-restart-delay")
    s.add_argument("--max-restarts")
    s.add_argument("--min-uptime")
    s.add_argument("--no-autorestart", action="store_true")
    s.add_argument("--stop-exit-codes", action="append")
    s.add_argument("--kill-timeout")
    s.add_argument("--kill-signal")
    s.add_argument("--time", action="store_true", help="prefix log lines with the time")
    s.add_argument("--log-date-format")
    s.add_argument("--merge-logs", action="store_true")
    s.add_argument("--log-type", choices=["json", "text"])
    s.add_argument("-o", "--output")
    s.add_argument("-e", "--error")
    s.add_argument("-l", "--log")
    s.add_argument("--namespace")
    s.add_argument("--cron-restart", "--cron")
    s.add_argument("--instance-var")
    s.add_argument("--increment-var")
    s.add_argument("--pid", dest="pid_file")
    s.add_argument("--uid")
    s.add_argument("--gid")
    s.add_argument("-x", "--exec-mode", dest="exec_mode")
    s.add_argument("--listen", action="append")
    s.add_argument("--json", action="store_true", help="print the process list as JSON")
    s.add_argument("script_args", nargs="*", help="arguments after -- go to the script")
    s.set_defaults(func=cmd_start)

    for name, aliases, helptext in (
        ("stop", [], "stop processes"),
        ("restart", [], "restart processes"),
        ("delete", ["del"], "stop and forget processes"),
        ("reset", [], "reset restart counters"),
    ):
        a = sub.add_parser(name, aliases=aliases, help=helptext)
        a.add_argument("targets", nargs="*", metavar="name|id|namespace|all")
        if name == "restart":
            a.add_argument("--update-env", action="store_true", help="give the processes this shell's environment")
            a.add_argument("--with-dependents", action="store_true", help="then restart the apps that depend on them (depends_on), in order")
        a.set_defaults(func=_action(name))

    rl = sub.add_parser("reload", help="zero-downtime reload (or apply a changed ecosystem file)")
    rl.add_argument("targets", nargs="*", metavar="name|id|namespace|all|FILE", default=["all"])
    rl.add_argument("--env", help="with a file: use env_<NAME>")
    rl.add_argument("--only", help="with a file: only these apps")
    rl.add_argument("--with-dependents", action="store_true", help="then reload the apps that depend on them (depends_on), in order")
    rl.set_defaults(func=cmd_reload)

    sc = sub.add_parser("scale", help="change the number of instances of an app")
    sc.add_argument("name")
    sc.add_argument("count", help="N, +N or -N")
    sc.set_defaults(func=cmd_scale)

    sg = sub.add_parser("sendSignal", aliases=["signal"], help="send a signal to processes")
    sg.add_argument("signal")
    sg.add_argument("targets", nargs="+", metavar="name|id|namespace|all")
    sg.set_defaults(func=cmd_signal)

    for name, aliases in (("list", ["ls", "status", "l", "ps"]),):
        ls = sub.add_parser(name, aliases=aliases, help="list processes")
        ls.add_argument("--json", action="store_true")
        ls.set_defaults(func=cmd_list)
    jl = sub.add_parser("jlist", help="list processes as JSON")
    jl.set_defaults(func=cmd_jlist)

    d = sub.add_parser("describe", aliases=["show", "info", "desc"], help="everything about a process")
    d.add_argument("targets", nargs="+", metavar="name|id")
    d.add_argument("--env", action="store_true", help="show environment values, secrets included")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_describe)

    e = sub.add_parser("env", help="the environment of a process")
    e.add_argument("id", type=int)
    e.set_defaults(func=cmd_env)

    lg = sub.add_parser("logs", aliases=["log"], help="show and follow logs")
    lg.add_argument("targets", nargs="*", metavar="name|id|namespace|all")
    lg.add_argument("--lines", type=int, default=15)
    lg.add_argument("--nostream", action="store_true", help="print the last lines and exit")
    lg.add_argument("--json", action="store_true")
    lg.add_argument("--raw", action="store_true", help="messages only, no prefix")
    lg.add_argument("--out", action="store_true", help="standard output only")
    lg.add_argument("--err", action="store_true", help="standard error only")
    lg.add_argument("--since", help="only lines from then on: 10m, 2h, or a date-time")
    lg.add_argument("--until", help="only lines up to then (implies --nostream)")
    lg.add_argument("--grep", help="only lines matching this regular expression")
    lg.set_defaults(func=cmd_logs)

    ev = sub.add_parser("events", help="show and follow process events")
    ev.add_argument("names", nargs="*", metavar="name")
    ev.add_argument("--json", action="store_true", help="one JSON object per line")
    ev.add_argument("--lines", type=int, default=20, help="kept events shown first (default 20)")
    ev.add_argument("--nostream", action="store_true", help="print the kept events and exit")
    ev.set_defaults(func=cmd_events)

    fl = sub.add_parser("flush", help="empty log files")
    fl.add_argument("targets", nargs="*", metavar="name|id|all")
    fl.add_argument("--yes", action="store_true")
    fl.set_defaults(func=cmd_flush)

    rlg = sub.add_parser("reloadLogs", aliases=["reload-logs"], help="reopen every log file")
    rlg.set_defaults(func=cmd_reload_logs)

    sv = sub.add_parser("save", aliases=["dump"], help="save the process list for resurrect")
    sv.add_argument("--force", action="store_true")
    sv.set_defaults(func=cmd_save)
    rs = sub.add_parser("resurrect", help="start the saved process list")
    rs.set_defaults(func=cmd_resurrect)

    pg = sub.add_parser("ping", help="is the daemon alive (starts it if not)")
    pg.set_defaults(func=cmd_ping)
    hc = sub.add_parser("healthcheck", help="exit 0 when the apps are online and healthy (for Docker HEALTHCHECK)")
    hc.add_argument("names", nargs="*")
    hc.set_defaults(func=cmd_healthcheck)

    for name, text in (("export", "write Kubernetes manifests or a compose file for an ecosystem (see: corral export --help)"), ("startup", "install a systemd unit that runs the daemon at boot"), ("unstartup", "remove the systemd unit")):
        sub.add_parser(name, help=text, add_help=False)

    mo = sub.add_parser("monit", aliases=["monitor", "dashboard"], help="live terminal dashboard")
    mo.add_argument("--interval", type=float, default=1.0, help="refresh interval in seconds")
    mo.set_defaults(func=cmd_monit)

    eco = sub.add_parser("ecosystem", help="check, convert or create ecosystem files (see: corral ecosystem --help)", add_help=False)
    eco.add_argument("rest", nargs=argparse.REMAINDER)
    eco.set_defaults(func=cmd_ecosystem)

    k = sub.add_parser("kill", help="stop every process, then the daemon")
    k.set_defaults(func=cmd_kill)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["runtime"]:
        from corral.runtime import main as run

        return run(argv[1:])
    if argv[:1] == ["ecosystem"]:
        from corral.ecosystem_tools import main as ecosystem_main

        return ecosystem_main(argv)
    if argv[:1] in (["export"], ["startup"], ["unstartup"]):
        from corral.export import main as export_main

        return export_main(argv)
    script_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, script_args = argv[:cut], argv[cut + 1 :]
    parser = build_parser()
    ns = parser.parse_args(argv)
    if not getattr(ns, "func", None):
        parser.print_help()
        return 2
    if script_args:
        if ns.cmd != "start":
            parser.error("'--' arguments are only for start")
        ns.script_args = list(getattr(ns, "script_args", []) or []) + script_args
    try:
        return int(ns.func(ns))
    except CorralError as e:
        message = e.render() if isinstance(e, ConfigError) else str(e)
        prefix = "" if isinstance(e, ConfigError | NotFoundError) else ""
        sys.stderr.write(f"corral: error: {prefix}{message}\n")
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def runtime_main() -> int:
    from corral.runtime import main as run

    return run()
