"""PM2's command line, verb by verb and flag by flag, mapped to Corral's: the one source of docs/pm2.md.

Read from PM2's own CLI (``lib/binaries/CLI.js``).  Each row says what Corral
does with it; tests/integration/test_pm2_cli.py runs every row against a real
daemon (a supported row does what it says, an unsupported one is refused with
exit 2), and a test checks that docs/pm2.md is what :func:`render` prints::

    python -m corral.cli.pm2 --write     # regenerate docs/pm2.md
    python -m corral.cli.pm2 --check     # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.config.keys import KEY_BY_NAME, KEYS

DOCS_PATH = Path(__file__).resolve().parents[3] / "docs" / "pm2.md"


@dataclass(frozen=True)
class StartFlag:
    """One of PM2's global/start options."""

    pm2: str  # as PM2's CLI declares it
    key: str | None = None  # the Corral key it sets
    corral: str | None = None  # or the Corral option it is (not a key)
    example: tuple[str, ...] = ()  # arguments after `corral start app.py`
    expect: Any = None  # the key's value in the daemon's config after that start
    note: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(w for w in self.pm2.replace(",", " ").split() if w.startswith("-"))


@dataclass(frozen=True)
class Verb:
    """One of PM2's commands."""

    pm2: str  # as PM2's CLI declares it
    corral: str | None  # the Corral command line, or None: not supported
    note: str = ""

    @property
    def name(self) -> str:
        return self.pm2.split()[0]


START_FLAGS: tuple[StartFlag, ...] = (
    StartFlag("-n --name <name>", "name", example=("-n", "web1"), expect="web1"),
    StartFlag("--interpreter <interpreter>", "interpreter", example=("--interpreter", "/bin/sh"), expect="/bin/sh"),
    StartFlag("--interpreter-args <arguments>", "interpreter_args", example=("--interpreter-args", "-X dev"), expect=["-X", "dev"]),
    StartFlag("--node-args <node_args>", "interpreter_args", example=("--node-args", "-u"), expect=["-u"]),
    StartFlag("-o --output <path>", "out_file", example=("-o", "/dev/null"), expect=None, note="`/dev/null` switches the file off"),
    StartFlag("-e --error <path>", "error_file", example=("-e", "/dev/null"), expect=None),
    StartFlag("-l --log [path]", "log_file", example=("-l",), expect="default", note="without a path: `<home>/logs/<name>.log`"),
    StartFlag("--log-type <type>", "log_type", example=("--log-type", "json"), expect="json"),
    StartFlag("--log-date-format <date format>", "log_date_format", example=("--log-date-format", "YYYY-MM-DD"), expect="YYYY-MM-DD"),
    StartFlag("--time", "time", example=("--time",), expect=True),
    StartFlag("--disable-logs", "disable_logs", example=("--disable-logs",), expect=True),
    StartFlag("-i --instances <number>", "instances", example=("-i", "2"), expect=2),
    StartFlag("-p --pid <pid>", "pid_file", example=("-p", "/tmp/corral-pm2-row.pid"), expect="/tmp/corral-pm2-row.pid"),
    StartFlag("-k --kill-timeout <delay>", "kill_timeout", example=("-k", "3000"), expect=3000),
    StartFlag("--listen-timeout <delay>", "listen_timeout", example=("--listen-timeout", "8s"), expect=8000),
    StartFlag("--max-memory-restart <memory>", "max_memory_restart", example=("--max-memory-restart", "200M"), expect=200 * 1024**2),
    StartFlag("--restart-delay <delay>", "restart_delay", example=("--restart-delay", "250"), expect=250),
    StartFlag("--exp-backoff-restart-delay <delay>", "exp_backoff_restart_delay", example=("--exp-backoff-restart-delay", "100"), expect=100),
    StartFlag("-x --execute-command", "exec_mode", example=("-x",), expect="fork"),
    StartFlag("--max-restarts [count]", "max_restarts", example=("--max-restarts", "5"), expect=5),
    StartFlag("--uid <uid>", "uid", example=("--uid", "0"), expect=0, note="the daemon must run as root"),
    StartFlag("--gid <gid>", "gid", example=("--gid", "0"), expect=0, note="the daemon must run as root"),
    StartFlag("--namespace <ns>", "namespace", example=("--namespace", "team"), expect="team", note="also applied to an ecosystem file's apps"),
    StartFlag("--cwd <path>", "cwd", example=("--cwd", "/tmp"), expect="/tmp"),
    StartFlag("-c --cron <cron_pattern>", "cron_restart", example=("-c", "0 3 * * *"), expect="0 3 * * *"),
    StartFlag("-c --cron-restart <cron_pattern>", "cron_restart", example=("--cron-restart", "0 4 * * *"), expect="0 4 * * *"),
    StartFlag("--wait-ready", "wait_ready", example=("--wait-ready",), expect=True, note="ready = sd_notify `READY=1` (Corral's readiness)"),
    StartFlag("--merge-logs", "merge_logs", example=("--merge-logs",), expect=True),
    StartFlag("--watch [paths]", "watch", example=("--watch",), expect=True, note="`--watch src` watches `src`; also applied to an ecosystem file's apps"),
    StartFlag("--ignore-watch <folders|files>", "ignore_watch", example=("--ignore-watch", "node_modules"), expect=["node_modules"]),
    StartFlag("--watch-delay <delay>", "watch_delay", example=("--watch-delay", "4"), expect=4000, note="a bare number is seconds, as in PM2; `4000ms` too"),
    StartFlag("--no-autostart", "autostart", example=("--no-autostart",), expect=False),
    StartFlag("--no-autorestart", "autorestart", example=("--no-autorestart",), expect=False),
    StartFlag("--stop-exit-codes <exit_codes...>", "stop_exit_codes", example=("--stop-exit-codes", "0", "3"), expect=[0, 3]),
    StartFlag("--env <environment_name>", corral="--env", note="merges `env_<name>` of the ecosystem file"),
    StartFlag("--only <application-name>", corral="--only", note="comma-separated names"),
    StartFlag("-a --update-env", corral="restart --update-env", note="with `restart`"),
    StartFlag("-v --version", corral="--version"),
    StartFlag("-u --user <username>", corral="startup --user", note="with `startup`"),
    StartFlag("--hp <home path>", corral="startup --home", note="with `startup`"),
    StartFlag("--service-name <name>", corral="startup --service-name", note="with `startup`"),
    StartFlag("-f --force", note="an app name already running is refused, not duplicated"),
    StartFlag("--parallel <number>", note="rolling reloads replace one instance at a time"),
    StartFlag("--shutdown-with-message", note="Node IPC messages do not apply: apps stop on `kill_signal`"),
    StartFlag("--no-treekill", note="Corral always stops the whole process tree"),
    StartFlag("--ext <extensions>", note="watch paths, and ignore with `--ignore-watch`"),
    StartFlag("--filter-env [envs]", note="the environment is passed as configured"),
    StartFlag("-s --silent", note="errors go to stderr, the table to stdout: redirect it"),
    StartFlag("-m --mini-list", note="use `corral jlist`"),
    StartFlag("--no-color", note="set `NO_COLOR=1`"),
    StartFlag("--no-daemon", note="run `corral-runtime` for a supervisor in the foreground"),
    StartFlag("-w --write", note="use `corral ecosystem convert`"),
    StartFlag("--wait-ip", note="systemd units order after network.target"),
    StartFlag("--attach", note="run `corral logs` after start"),
    StartFlag("--sort <field_name:sort>", note="the table is sorted by id"),
    StartFlag("--source-map-support", note="Node source maps do not apply"),
    StartFlag("--disable-source-map-support", note="Node source maps do not apply"),
    StartFlag("--no-vizion", note="version metadata is not collected"),
    StartFlag("--no-pmx", note="PM2 cloud options do not apply"),
    StartFlag("--no-automation", note="PM2 cloud options do not apply"),
    StartFlag("--trace", note="PM2 cloud options do not apply"),
    StartFlag("--disable-trace", note="PM2 cloud options do not apply"),
    StartFlag("--v8", note="PM2 cloud options do not apply"),
    StartFlag("--event-loop-inspector", note="PM2 cloud options do not apply"),
    StartFlag("--deep-monitoring", note="PM2 cloud options do not apply"),
)

VERBS: tuple[Verb, ...] = (
    Verb("start <file|script|name|id>", "corral start <file|script|name|id>", "a known stopped app by name or id is started"),
    Verb("start -", "corral start -", "app objects as JSON on stdin (one, a list, or `{\"apps\": [...]}`)"),
    Verb("stop <id|name|namespace|all|script>", "corral stop <id|name|namespace|all|script>", "exit 1 when nothing matched"),
    Verb("stop -", "corral stop -", "the apps named by JSON on stdin"),
    Verb("restart <id|name|namespace|all|script>", "corral restart <id|name|namespace|all|script>", "a script file matches the apps running it"),
    Verb("restart -", "corral restart -", "the apps named by JSON on stdin"),
    Verb("reload <id|name|namespace|all>", "corral reload <id|name|namespace|all|FILE>", "zero downtime; with a file, applies it"),
    Verb("delete <name|id|namespace|script|all>", "corral delete <name|id|namespace|script|all>", "alias `del`"),
    Verb("delete -", "corral delete -", "the apps named by JSON on stdin"),
    Verb("scale <app_name> <number>", "corral scale <app_name> <N|+N|-N>"),
    Verb("sendSignal <signal> <pm2_id|name>", "corral sendSignal <signal> <id|name>", "alias `signal`"),
    Verb("reset <name|id|all>", "corral reset <name|id|all>"),
    Verb("ls", "corral ls", "also `list`, `l`, `ps`, `status`"),
    Verb("jlist", "corral jlist"),
    Verb("prettylist", "corral prettylist", "the process list as indented JSON"),
    Verb("describe <name|id>", "corral describe <name|id>", "also `desc`, `info`, `show`"),
    Verb("env <id>", "corral env <id>"),
    Verb("logs [id|name|namespace]", "corral logs [id|name|namespace]", "`--lines`, `--nostream`, `--json`, `--raw`, `--out`, `--err`"),
    Verb("flush [api]", "corral flush [name|id]", "every app with `--yes`"),
    Verb("reloadLogs", "corral reloadLogs"),
    Verb("dump", "corral dump", "also `save`"),
    Verb("resurrect", "corral resurrect"),
    Verb("ping", "corral ping"),
    Verb("monit", "corral monit", "also `monitor`; `corral dashboard` is the web UI (docs/dashboard.md)"),
    Verb("startup [platform]", "corral startup [systemd]"),
    Verb("unstartup [platform]", "corral unstartup [systemd]"),
    Verb("ecosystem [mode]", "corral ecosystem init", "also `check` and `convert`"),
    Verb("kill", "corral kill"),
    Verb("pid [app_name]", "corral pid [app_name]", "one pid per line"),
    Verb("startOrReload <json>", "corral reload <file>", "starts new apps, reloads changed ones"),
    Verb("startOrGracefulReload <json>", "corral reload <file>"),
    Verb("startOrRestart <json>", None, "use `corral reload <file>` (zero downtime) or `corral restart`"),
    Verb("id <name>", None, "use `corral jlist`"),
    Verb("inspect <name>", None, "Node inspector"),
    Verb("trigger <id|proc_name|namespace|all> <action_name> [params]", None, "PM2 actions (Node IPC)"),
    Verb("send <pm_id> <line>", None, "apps' stdin is not connected"),
    Verb("attach <pm_id> [command separator]", None, "apps' stdin is not connected"),
    Verb("cleardump", None, "delete `<home>/dump.json`"),
    Verb("logrotate", None, "rotation is built in (`log_max_size`, `log_rotate_interval`)"),
    Verb("deploy <file|environment>", None, "deploy with your own tooling"),
    Verb("install <module|git:// url>", None, "PM2 modules"),
    Verb("update", None, "restart the daemon: `corral kill`, then `corral resurrect`"),
    Verb("profile:cpu [time]", None, "use py-spy or perf"),
    Verb("profile:mem [time]", None, "use a memory profiler"),
    Verb("link [secret] [public] [name]", None, "PM2 cloud"),
    Verb("plus [command] [option]", None, "PM2 cloud"),
    Verb("serve [path] [port]", None, "run a static server as an app"),
    Verb("report", None, "`corral describe` and `<home>/corral.log`"),
)


def key_rows() -> list[StartFlag]:
    return [r for r in START_FLAGS if r.key is not None]


def corral_only_flags() -> list[tuple[str, str]]:
    """Corral's own start options (no PM2 counterpart), from the KEYS table."""
    out = []
    for key in KEYS:
        for flag in key.flags:
            if not flag.pm2:
                out.append((" ".join(flag.names), key.name))
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _corral_flag(row: StartFlag) -> str:
    if row.key is None:
        return f"`{row.corral}`" if row.corral else "not supported"
    for flag in KEY_BY_NAME[row.key].flags:
        if set(row.names) & set(flag.names):
            return " ".join(f"`{n}`" for n in flag.names) + f" (key `{row.key}`)"
    return f"key `{row.key}`"


def render() -> str:
    lines = [
        "# Corral for PM2 users: the command line",
        "",
        "<!-- Generated by `python -m corral.cli.pm2 --write` from corral/cli/pm2.py."
        " Do not edit by hand: a test fails when this file and the generator disagree. -->",
        "",
        "PM2's commands and `start` options (read from PM2's `lib/binaries/CLI.js`) and what Corral"
        " does with each. Every row is run by tests/integration/test_pm2_cli.py against a real"
        " daemon: a supported row does what it says, an unsupported one exits 2 with a usage error."
        " Ecosystem file keys are in docs/config.md.",
        "",
        "## Commands",
        "",
        "| PM2 | Corral | Notes |",
        "| --- | --- | --- |",
    ]
    for v in VERBS:
        corral = f"`{v.corral}`" if v.corral else "not supported"
        lines.append(f"| `pm2 {_cell(v.pm2)}` | {_cell(corral)} | {_cell(v.note)} |")
    lines += [
        "",
        "Exit codes as in PM2: 0 done, 1 when nothing matched or an operation failed"
        " (`corral stop nosuch`), 2 for a usage or config error.",
        "",
        "## `start` options",
        "",
        "| PM2 | Corral | Notes |",
        "| --- | --- | --- |",
    ]
    for r in START_FLAGS:
        lines.append(f"| `{_cell(r.pm2)}` | {_cell(_corral_flag(r))} | {_cell(r.note)} |")
    lines += [
        "",
        "Corral's own `start` options, for keys PM2 has no option for:",
        "",
        "| Option | Key |",
        "| --- | --- |",
    ]
    for names, key in corral_only_flags():
        lines.append(f"| `{names}` | `{key}` |")
    lines += [
        "",
        "Other `start` options of Corral: `--wait` (answer once every started instance has"
        " settled: online, ready with `wait_ready`, or failed; apps with `depends_on` started in"
        " order, a failed dependency exits 1), `--no-wait` (the default: answer once the"
        " processes are spawned, apps held back by `depends_on` shown `waiting`, as"
        " `pm2 start` does; the table shows their pids, `launching` for an app with `wait_ready`"
        " that has not reported ready, and an exec error exits 1; `pm2 start` waits for the"
        " ready message of a `wait_ready` app, Corral only with `--wait`), `--json` (print the"
        " process list as JSON).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corral.cli.pm2", description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help=f"write {DOCS_PATH}")
    group.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    ns = parser.parse_args(argv)
    text = render()
    if ns.write:
        DOCS_PATH.write_text(text)
        return 0
    if ns.check:
        current = DOCS_PATH.read_text() if DOCS_PATH.exists() else ""
        if current != text:
            sys.stderr.write(f"{DOCS_PATH} is stale: run python -m corral.cli.pm2 --write\n")
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
