"""The ``corral`` argument parser: PM2's verbs, and start's key options from the KEYS table."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from corral.cli import actions, start, views

PROG = "corral"


def bounded(kind: Callable[[str], float], low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a number of ``kind`` from ``low`` to ``high`` (NaN and infinities refused)."""

    def parse(text: str) -> float:
        try:
            value = kind(text.strip()) if len(text) <= 32 else None
        except ValueError:
            value = None
        if value is None or value != value or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a number from {_num(low)} to {_num(high)}, got {text[:32]!r}")
        return value

    return parse


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def scale_count(text: str) -> str:
    """``N``, ``+N`` or ``-N`` with at most 4 digits (the daemon applies its instance ceiling)."""
    body = text[1:] if text[:1] in "+-" else text
    if not body.isdigit() or len(body) > 4:
        raise argparse.ArgumentTypeError(f"expected N, +N or -N (up to 4 digits), got {text[:32]!r}")
    return text


def build_parser(full_start: bool = True) -> argparse.ArgumentParser:
    """The whole CLI; ``full_start=False`` skips start's key options (built from KEYS) for other commands."""
    from corral import __version__

    p = argparse.ArgumentParser(prog=PROG, description="Corral: a production process manager for Python services, and any other program.")
    p.add_argument("-v", "--version", action="version", version=f"corral {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    s = sub.add_parser("start", help="start an ecosystem file, a script, or a stopped process", allow_abbrev=False)
    if full_start:
        start.add_arguments(s)
    else:
        s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(func=start.cmd_start)

    for name, aliases, helptext in (
        ("stop", [], "stop processes"),
        ("restart", [], "restart processes"),
        ("delete", ["del"], "stop and forget processes"),
        ("reset", [], "reset restart counters"),
    ):
        a = sub.add_parser(name, aliases=aliases, help=helptext)
        a.add_argument("targets", nargs="*", metavar="name|id|namespace|all")
        if name == "restart":
            a.add_argument("-a", "--update-env", action="store_true", help="give the processes this shell's environment")
            a.add_argument("--with-dependents", action="store_true", help="then restart the apps that depend on them (depends_on), in order")
        a.set_defaults(func=actions.action(name))

    rl = sub.add_parser("reload", help="zero-downtime reload (or apply a changed ecosystem file)")
    rl.add_argument("targets", nargs="*", metavar="name|id|namespace|all|FILE", default=["all"])
    rl.add_argument("--env", help="with a file: use env_<NAME>")
    rl.add_argument("--only", help="with a file: only these apps")
    rl.add_argument("--with-dependents", action="store_true", help="then reload the apps that depend on them (depends_on), in order")
    rl.set_defaults(func=actions.cmd_reload)

    sc = sub.add_parser("scale", help="change the number of instances of an app")
    sc.add_argument("name")
    sc.add_argument("count", type=scale_count, help="N, +N or -N")
    sc.set_defaults(func=actions.cmd_scale)

    sg = sub.add_parser("sendSignal", aliases=["signal"], help="send a signal to processes")
    sg.add_argument("signal")
    sg.add_argument("targets", nargs="+", metavar="name|id|namespace|all")
    sg.set_defaults(func=actions.cmd_signal)

    for name, aliases in (("list", ["ls", "status", "l", "ps"]),):
        ls = sub.add_parser(name, aliases=aliases, help="list processes")
        ls.add_argument("--json", action="store_true")
        ls.set_defaults(func=views.cmd_list)
    jl = sub.add_parser("jlist", help="list processes as JSON")
    jl.set_defaults(func=views.cmd_jlist)
    pl = sub.add_parser("prettylist", help="list processes as indented JSON")
    pl.set_defaults(func=views.cmd_prettylist)
    pi = sub.add_parser("pid", help="pids of an app's instances (of every app without a name)")
    pi.add_argument("name", nargs="?")
    pi.set_defaults(func=views.cmd_pid)

    d = sub.add_parser("describe", aliases=["show", "info", "desc"], help="everything about a process")
    d.add_argument("targets", nargs="+", metavar="name|id")
    d.add_argument("--env", action="store_true", help="show environment values, secrets included")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=views.cmd_describe)

    e = sub.add_parser("env", help="the environment of a process")
    e.add_argument("id", type=int)
    e.set_defaults(func=views.cmd_env)

    lg = sub.add_parser("logs", aliases=["log"], help="show and follow logs")
    lg.add_argument("targets", nargs="*", metavar="name|id|namespace|all")
    lg.add_argument("--lines", type=bounded(int, 0, 1_000_000), default=15, help="last lines to show first (0 to 1000000; default 15)")
    lg.add_argument("--nostream", action="store_true", help="print the last lines and exit")
    lg.add_argument("--json", action="store_true")
    lg.add_argument("--raw", action="store_true", help="messages only, no prefix")
    lg.add_argument("--out", action="store_true", help="standard output only")
    lg.add_argument("--err", action="store_true", help="standard error only")
    lg.add_argument("--since", help="only lines from then on: 10m, 2h, or a date-time")
    lg.add_argument("--until", help="only lines up to then (implies --nostream)")
    lg.add_argument("--grep", help="only lines matching this regular expression")
    lg.set_defaults(func=views.cmd_logs)

    ev = sub.add_parser("events", help="show and follow process events")
    ev.add_argument("names", nargs="*", metavar="name")
    ev.add_argument("--json", action="store_true", help="one JSON object per line")
    ev.add_argument("--lines", type=bounded(int, 0, 1000), default=20, help="kept events shown first (0 to 1000; default 20)")
    ev.add_argument("--nostream", action="store_true", help="print the kept events and exit")
    ev.set_defaults(func=views.cmd_events)

    fl = sub.add_parser("flush", help="empty log files")
    fl.add_argument("targets", nargs="*", metavar="name|id|all")
    fl.add_argument("--yes", action="store_true")
    fl.set_defaults(func=views.cmd_flush)

    rlg = sub.add_parser("reloadLogs", aliases=["reload-logs"], help="reopen every log file")
    rlg.set_defaults(func=views.cmd_reload_logs)

    sv = sub.add_parser("save", aliases=["dump"], help="save the process list for resurrect")
    sv.add_argument("--force", action="store_true")
    sv.set_defaults(func=views.cmd_save)
    rs = sub.add_parser("resurrect", help="start the saved process list")
    rs.set_defaults(func=actions.cmd_resurrect)

    pg = sub.add_parser("ping", help="is the daemon alive (starts it if not)")
    pg.set_defaults(func=views.cmd_ping)
    hc = sub.add_parser("healthcheck", help="exit 0 when the apps are online and healthy (for Docker HEALTHCHECK)")
    hc.add_argument("names", nargs="*")
    hc.set_defaults(func=views.cmd_healthcheck)

    for name, text in (("export", "write Kubernetes manifests or a compose file for an ecosystem (see: corral export --help)"), ("startup", "install a systemd unit that runs the daemon at boot"), ("unstartup", "remove the systemd unit")):
        sub.add_parser(name, help=text, add_help=False)

    mo = sub.add_parser("monit", aliases=["monitor"], help="live terminal dashboard")
    mo.add_argument("--interval", type=bounded(float, 0.1, 3600), default=1.0, help="refresh interval in seconds (0.1 to 3600)")
    mo.set_defaults(func=views.cmd_monit)

    eco = sub.add_parser("ecosystem", help="check, convert or create ecosystem files (see: corral ecosystem --help)", add_help=False)
    eco.add_argument("rest", nargs=argparse.REMAINDER)
    eco.set_defaults(func=views.cmd_ecosystem)

    k = sub.add_parser("kill", help="stop every process, then the daemon")
    k.set_defaults(func=views.cmd_kill)
    return p
