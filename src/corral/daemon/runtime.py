"""``corral-runtime``: the daemon's supervision in the foreground, for containers.

Like PM2's pm2-runtime, done right: it starts the apps of an ecosystem file,
streams every app's output to its own stdout/stderr (raw, ``--json`` or
``--format``), serves the control socket (so ``corral ls`` and ``corral
reload all`` work through ``docker exec``) and does PID 1's duties:

* SIGTERM / SIGINT: graceful stop of every app (kill_signal, kill_timeout,
  SIGKILL), then exit 0;
* SIGHUP: rolling reload of every app; SIGUSR1: forwarded to every app;
  SIGUSR2: reopen log files;
* every zombie is reaped, re-parented orphans included (it is a child
  subreaper, and PID 1 in a container anyway).

Exit codes: 0 after a requested stop (signal or ``corral kill``), or when every app
is a one-shot that exited 0; the exit code of a failed one-shot app (a migration
the others depend on: they are not started, see docs/dependencies.md); 1 when every
app has stopped or errored on its own (so the orchestrator restarts the container),
unless ``--no-auto-exit``; 2 for a usage or config error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from corral.core.appspec import AppSpec
from corral.core.errors import ConfigError, CorralError
from corral.system.paths import Home

EXIT_REQUESTED = 0
EXIT_APPS_ENDED = 1
EXIT_USAGE = 2
STD_STREAMS = {"/dev/stdout", "/dev/stderr", "/proc/self/fd/1", "/proc/self/fd/2", "/dev/fd/1", "/dev/fd/2"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="corral-runtime", description="Run an ecosystem file's apps in the foreground (for containers, as PID 1).")
    p.add_argument("ecosystem", nargs="?", help="ecosystem file (default: the one in this folder)")
    p.add_argument("--env", help="use env_<NAME> from the file")
    p.add_argument("--only", help="only these apps (comma separated)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON object per line (logs and process events)")
    out.add_argument("--format", action="store_true", help="key=value lines")
    p.add_argument("--raw", action="store_true", help="no app-name prefix, even with several apps")
    p.add_argument("--no-auto-exit", action="store_true", help="keep running when every app has ended")
    p.add_argument("--health-port", help="serve /healthz, /readyz and /metrics on PORT or HOST:PORT (127.0.0.1 unless a host is given)")
    return p


class Output:
    """Writes app lines and events to our own stdout/stderr in the chosen shape."""

    def __init__(self, mode: str, prefix: bool) -> None:
        self.mode = mode
        self.prefix = prefix
        self.out = sys.stdout.buffer
        self.err = sys.stderr.buffer

    def lines(self, inst: Any, stream: str, lines: list[bytes], ts: float) -> None:
        target = self.err if stream == "err" else self.out
        if self.mode == "json":
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"
            data = "".join(
                json.dumps({"timestamp": stamp, "app_name": inst.name, "process_id": inst.id, "type": stream, "message": ln.decode("utf-8", "replace")}, ensure_ascii=False) + "\n"
                for ln in lines
            ).encode()
        elif self.mode == "format":
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
            data = "".join(
                f"timestamp={stamp} app={inst.name} id={inst.id} type={stream} message={json.dumps(ln.decode('utf-8', 'replace'), ensure_ascii=False)}\n" for ln in lines
            ).encode()
        elif self.prefix:
            head = f"{inst.name}|{inst.id} | ".encode()
            data = b"".join(head + ln + b"\n" for ln in lines)
        else:
            data = b"\n".join(lines) + b"\n"
        try:
            target.write(data)
            target.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass

    def event(self, ev: dict[str, Any]) -> None:
        if self.mode == "json":
            record = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ev["time"])), "app_name": ev.get("name"), "process_id": ev.get("id"), "type": "event", "event": ev["kind"], "message": ev["message"]}
            line = json.dumps(record) + "\n"
        elif self.mode == "format":
            line = f"timestamp={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(ev['time']))} app={ev.get('name')} id={ev.get('id')} type=event event={ev['kind']} message={json.dumps(ev['message'])}\n"
        else:
            line = f"[corral] {ev.get('name') or 'runtime'}{'' if ev.get('id') is None else ':' + str(ev['id'])} {ev['kind']}: {ev['message']}\n"
        try:
            self.err.write(line.encode())
            self.err.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass


def load(ns: argparse.Namespace) -> tuple[list[AppSpec], str]:
    from corral.config.loader import find_ecosystem, load_ecosystem
    from corral.core.appspec import replace

    path = Path(ns.ecosystem) if ns.ecosystem else find_ecosystem(Path.cwd())
    if path is None:
        raise ConfigError("no ecosystem file given, and none in this folder (ecosystem.toml, ecosystem.config.js, ...)")
    only = ns.only.split(",") if ns.only else None
    result = load_ecosystem(path, env_name=ns.env, only=only)
    for w in result.warnings:
        sys.stderr.write(f"corral-runtime: warning: {w}\n")
    for n in result.notices:
        sys.stderr.write(f"corral-runtime: notice: {n}\n")
    apps = []
    for app in result.apps:
        changes: dict[str, Any] = {"autostart": True} if only else {}  # naming an app is asking for it
        # in a container, output goes to our stdout/stderr; files only where the config
        # names them (and our own stdout/stderr named as a file would double every line)
        for key in ("out_file", "error_file", "log_file"):
            value = getattr(app, key)
            if value == "default" or value in STD_STREAMS:
                changes[key] = None
        apps.append(replace(app, **changes))
    return apps, str(path.resolve())


async def run(ns: argparse.Namespace, apps: list[AppSpec], source: str, home: Home) -> int:
    from corral.core.statemachine import Status
    from corral.daemon.lifecycle import install_signals, start_http
    from corral.daemon.server import Daemon
    from corral.system import osproc

    output = Output("json" if ns.json else "format" if ns.format else "raw", prefix=len(apps) > 1 and not ns.raw)
    daemon = Daemon(home, log=lambda message: None)  # events reach stderr through the output instead
    sup = daemon.sup
    sup.log_listeners.append(output.lines)
    sup.event_listeners.append(output.event)
    osproc.set_child_subreaper()
    requested = asyncio.Event()

    def graceful(signame: str) -> Callable[[], Awaitable[None]]:
        async def stop() -> None:
            if requested.is_set():
                return
            requested.set()
            output.event({"time": time.time(), "kind": "signal", "message": f"{signame}: stopping every app"})
            await daemon.stop_all()
            daemon.stopping.set()

        return stop

    def forward(sig: int) -> None:
        for inst in sup.instances():
            if inst.child is not None:
                osproc.signal_group(inst.child.pgid, sig)

    def reload_failed(app: Any, e: Exception) -> None:  # the old instances keep serving
        output.event({"time": time.time(), "kind": "reload-failed", "message": str(getattr(e, "message", e)), "name": app.name})

    install_signals(
        daemon.loop,
        {
            signal.SIGCHLD: sup.reap_children,
            signal.SIGTERM: graceful("SIGTERM"),
            signal.SIGINT: graceful("SIGINT"),
            signal.SIGHUP: lambda: daemon.reload_all(reload_failed),
            signal.SIGUSR1: lambda: forward(signal.SIGUSR1),
            signal.SIGUSR2: daemon.reload_logs,
        },
    )

    await daemon.serve()
    daemon.start_watchers()
    await start_http(daemon, str(ns.health_port) if ns.health_port else None)
    home.pid_file.write_text(f"{os.getpid()}\n")
    try:
        await daemon.start_apps(apps, dict(os.environ), source)
    except Exception as e:
        sys.stderr.write(f"corral-runtime: error: {getattr(e, 'message', e)}\n")
        await daemon.stop_all()
        if getattr(e, "code", None) == "dependency_failed":  # a required app failed: its own code
            return one_shot_failure(sup) or EXIT_APPS_ENDED
        return EXIT_USAGE

    def all_ended() -> bool:
        instances = sup.instances()
        return bool(instances) and all(i.state.status in (Status.STOPPED, Status.ERRORED) for i in instances)

    code = EXIT_REQUESTED
    daemon.systemd.ready(f"{len(sup.instances())} processes")  # Type=notify: the apps are up
    while not daemon.stopping.is_set():
        ended = await sup.wait_for(lambda: all_ended() or daemon.stopping.is_set(), 1.0)
        if daemon.stopping.is_set():
            break
        if ended and all_ended() and not requested.is_set():
            if not ns.no_auto_exit:
                code = one_shot_failure(sup) or (EXIT_REQUESTED if only_one_shots_done(sup) else EXIT_APPS_ENDED)
                output.event({"time": time.time(), "kind": "exit", "message": f"every app has ended on its own: exiting {code}"})
                break
            # keep serving the control socket until told to stop
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(daemon.stopping.wait(), 1.0)
    await daemon.stop_all()
    daemon.close()
    # last reap of anything left (we may be PID 1)
    sup.reap_children()
    return code


def one_shot_failure(sup: Any) -> int | None:
    """The exit code of the first one-shot app (autorestart = false) that failed, if any."""
    from corral.core.statemachine import Status

    for app in sup.apps.values():
        if app.spec.autorestart:
            continue
        for inst in app.instances:
            st = inst.state
            if st.status is Status.STOPPED and (st.exit_signal or (st.exit_code or 0) != 0):
                return st.exit_code if st.exit_code else 1
    return None


def only_one_shots_done(sup: Any) -> bool:
    """Every app is a one-shot that exited 0: the container's work is done."""
    from corral.core.statemachine import Status

    apps = list(sup.apps.values())
    return bool(apps) and all(
        not a.spec.autorestart and all(i.state.status is Status.STOPPED and i.state.exit_code == 0 for i in a.instances) for a in apps
    )


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    home = Home.from_env()
    home.ensure()
    # take the home first, so a `corral ls` racing the container's start cannot spawn a
    # background daemon that would own it
    lock_fd = home.take_lock()
    if lock_fd is None:
        sys.stderr.write(f"corral-runtime: error: a Corral daemon already runs in {home.root}; set CORRAL_HOME to another folder\n")
        return EXIT_USAGE
    try:
        try:
            apps, source = load(ns)
        except CorralError as e:
            sys.stderr.write(f"corral-runtime: error: {e.render() if isinstance(e, ConfigError) else e}\n")
            return EXIT_USAGE
        return asyncio.run(run(ns, apps, source, home))
    except KeyboardInterrupt:
        return EXIT_REQUESTED
    finally:
        os.close(lock_fd)


if __name__ == "__main__":
    raise SystemExit(main())
