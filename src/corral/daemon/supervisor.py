"""The runtime: performs the state machine's effects on real processes.

Each :class:`Instance` owns one ``ProcState``; :meth:`Supervisor.dispatch`
feeds it events through the pure ``step`` and performs the effects that come
back (spawn, signal, timers).  Exits are observed through pidfds on the event
loop (no thread per child); SIGCHLD reaps re-parented orphans (the daemon is
a child subreaper).  Output is read off non-blocking pipes, framed into whole
lines and written to the log files synchronously, which slows a flooding app
through its pipe instead of losing lines.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from corral import osproc
from corral.config.keys import resolve_instances
from corral.config.loader import build_argv
from corral.logsink import LineFormat, LineFormatter, LineFramer, LogFile, LogFiles
from corral.paths import Home
from corral.statemachine import (
    Announce,
    CancelTimer,
    Delete,
    Effect,
    Event,
    Exited,
    Policy,
    ProcState,
    Remove,
    Restart,
    Signal,
    Spawn,
    Spawned,
    SpawnFailed,
    Start,
    StartTimer,
    Status,
    Stop,
    Timeout,
    UpdatePolicy,
    step,
)

READ_CHUNK = 65536
READS_PER_WAKEUP = 4
SECRET_WORDS = ("SECRET", "PASSWORD", "PASSWD", "TOKEN", "KEY", "CREDENTIAL", "PRIVATE", "DATABASE_URL", "DSN")


def policy_from_config(cfg: dict[str, Any]) -> Policy:
    exp = cfg.get("exp_backoff_restart_delay")
    return Policy(
        autorestart=bool(cfg["autorestart"]),
        max_restarts=int(cfg["max_restarts"]),
        min_uptime=cfg["min_uptime"] / 1000.0,
        restart_delay=cfg["restart_delay"] / 1000.0,
        exp_backoff=exp / 1000.0 if exp else None,
        stop_exit_codes=frozenset(cfg["stop_exit_codes"]),
        kill_timeout=cfg["kill_timeout"] / 1000.0,
        kill_signal=cfg["kill_signal"],
        wait_ready=False,  # readiness (sd_notify) is not active yet
        listen_timeout=cfg["listen_timeout"] / 1000.0,
    )


def is_secret(name: str) -> bool:
    upper = name.upper()
    return any(word in upper for word in SECRET_WORDS)


def _suffixed(path: str, index: int) -> str:
    root, ext = os.path.splitext(path)
    return f"{root}-{index}{ext}"


def _looks_like_python(argv: list[str]) -> bool:
    first = os.path.basename(argv[0])
    if first.startswith("python") or first.startswith("pypy"):
        return True
    if argv[0].endswith(".py"):
        return True
    try:
        with open(argv[0], "rb") as f:
            head = f.read(128)
        return head.startswith(b"#!") and b"python" in head.split(b"\n", 1)[0]
    except OSError:
        return False


class PipeReader:
    """Reads one of an instance's pipes until EOF, even past the instance's own exit."""

    def __init__(self, sup: Supervisor, inst: Instance, fd: int, stream: str) -> None:
        self.sup = sup
        self.inst = inst
        self.fd = fd
        self.stream = stream
        self.framer = LineFramer()
        self.targets = inst.targets_for(stream)
        self.formatter = inst.formatter
        self.closed = False
        sup.loop.add_reader(fd, self.on_readable)

    def on_readable(self) -> None:
        for _ in range(READS_PER_WAKEUP):
            try:
                chunk = os.read(self.fd, READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.close()
                return
            lines = self.framer.feed(chunk)
            if lines:
                self.emit(lines)
            if len(chunk) < READ_CHUNK:
                return

    def drain(self) -> None:
        """Read what is buffered now (called when the instance exits)."""
        if not self.closed:
            self.on_readable()

    def emit(self, lines: list[bytes]) -> None:
        ts = time.time()
        data = self.formatter.format(lines, self.stream, ts)
        for target in self.targets:
            target.write(data, len(lines))
        if self.sup.log_listeners:
            self.sup.publish_lines(self.inst, self.stream, lines, ts)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        rest = self.framer.flush()
        if rest:
            self.emit(rest)
        self.sup.loop.remove_reader(self.fd)
        osproc.close_fd(self.fd)
        self.inst.readers.discard(self)
        self.sup.release_targets(self.targets)


@dataclass(eq=False)
class Instance:
    id: int
    app: App
    index: int
    state: ProcState
    created_at: float = field(default_factory=time.time)
    child: osproc.Child | None = None
    started_wall: float | None = None
    timer: asyncio.TimerHandle | None = None
    readers: set[PipeReader] = field(default_factory=set)
    formatter: LineFormatter = field(init=False)
    env: dict[str, str] = field(default_factory=dict)
    tree_snapshot: list[int] = field(default_factory=list)
    cleanup: asyncio.TimerHandle | None = None
    proc_cache: Any = None

    def __post_init__(self) -> None:
        self.refresh_format()

    def refresh_format(self) -> None:
        cfg = self.app.config
        self.formatter = LineFormatter(
            LineFormat(
                kind=cfg["log_type"],
                app_name=cfg["name"],
                process_id=self.id,
                date_format=cfg["log_date_format"],
            )
        )

    @property
    def name(self) -> str:
        return str(self.app.config["name"])

    def log_paths(self) -> dict[str, str | None]:
        cfg = self.app.config
        home = self.app.sup.home
        several = len(self.app.instances) > 1 or self.index > 0
        merge = cfg["merge_logs"]
        out: dict[str, str | None] = {}
        defaults = {
            "out_file": str(home.logs_dir / f"{cfg['name']}-out.log"),
            "error_file": str(home.logs_dir / f"{cfg['name']}-error.log"),
            "log_file": str(home.logs_dir / f"{cfg['name']}.log"),
        }
        for key in ("out_file", "error_file", "log_file"):
            value = cfg[key]
            if value is None:
                out[key] = None
                continue
            path = defaults[key] if value == "default" else value
            out[key] = _suffixed(path, self.index) if several and not merge else path
        return out

    def targets_for(self, stream: str) -> list[LogFile]:
        paths = self.log_paths()
        wanted = [paths["out_file"] if stream == "out" else paths["error_file"], paths["log_file"]]
        return [self.app.sup.files.acquire(p) for p in wanted if p]


@dataclass(eq=False)
class App:
    sup: Supervisor
    config: dict[str, Any]
    base_env: dict[str, str]
    instances: list[Instance] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.config["name"])


class Supervisor:
    def __init__(self, home: Home, loop: asyncio.AbstractEventLoop, log: Callable[[str], None]) -> None:
        self.home = home
        self.loop = loop
        self.log = log
        self.apps: dict[str, App] = {}
        self.by_pid: dict[int, Instance] = {}
        self.next_id = 0
        self.files = LogFiles()
        self.changed = asyncio.Condition()
        self.log_listeners: list[Callable[[Instance, str, list[bytes], float], None]] = []
        self.event_listeners: list[Callable[[dict[str, Any]], None]] = []
        self.cpu_count = os.cpu_count() or 1

    # ------------------------------------------------------------ queries

    def instances(self) -> list[Instance]:
        return [i for app in self.apps.values() for i in app.instances]

    def select(self, targets: Iterable[str]) -> list[Instance]:
        """Instances named by ids, app names, namespaces or 'all'; raises LookupError."""
        chosen: dict[int, Instance] = {}
        all_instances = self.instances()
        for raw in targets:
            t = str(raw).strip()
            found: list[Instance]
            if t == "all":
                found = all_instances
            elif t.isdigit():
                found = [i for i in all_instances if i.id == int(t)]
            else:
                found = [i for i in all_instances if i.name == t]
                if not found:
                    found = [i for i in all_instances if i.app.config["namespace"] == t]
            if not found and t != "all":
                raise LookupError(f"no process or namespace named '{t}'")
            for i in found:
                chosen[i.id] = i
        return sorted(chosen.values(), key=lambda i: i.id)

    # ------------------------------------------------------------ state machine driver

    def dispatch(self, inst: Instance, event: Event) -> None:
        new, effects = step(inst.state, event, self.loop.time())
        inst.state = new
        for effect in effects:
            self.perform(inst, effect)
        self._notify()

    def _notify(self) -> None:
        async def notify() -> None:
            async with self.changed:
                self.changed.notify_all()

        self.loop.create_task(notify())

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = self.loop.time() + timeout
        async with self.changed:
            while not predicate():
                remaining = deadline - self.loop.time()
                if remaining <= 0:
                    return False
                try:
                    await asyncio.wait_for(self.changed.wait(), remaining)
                except TimeoutError:
                    return predicate()
        return True

    def perform(self, inst: Instance, effect: Effect) -> None:
        if isinstance(effect, Spawn):
            self._spawn(inst)
        elif isinstance(effect, Signal):
            self._signal(inst, effect.signal)
        elif isinstance(effect, StartTimer):
            if inst.timer:
                inst.timer.cancel()
            inst.timer = self.loop.call_later(effect.delay, self.dispatch, inst, Timeout(effect.token))
        elif isinstance(effect, CancelTimer):
            if inst.timer:
                inst.timer.cancel()
                inst.timer = None
        elif isinstance(effect, Remove):
            self._remove(inst)
        elif isinstance(effect, Announce):
            self.announce(inst, effect.kind, effect.message)

    def announce(self, inst: Instance | None, kind: str, message: str) -> None:
        who = f"{inst.name}:{inst.id}" if inst else "daemon"
        self.log(f"[{who}] {kind}: {message}")
        if self.event_listeners:
            ev = {
                "stream": "event",
                "time": time.time(),
                "kind": kind,
                "message": message,
                "name": inst.name if inst else None,
                "id": inst.id if inst else None,
                "status": str(inst.state.status) if inst else None,
            }
            for listener in list(self.event_listeners):
                listener(ev)

    # ------------------------------------------------------------ effects

    def build_env(self, inst: Instance) -> dict[str, str]:
        cfg = inst.app.config
        env = dict(inst.app.base_env)
        env.update(cfg["env"])
        env[cfg["instance_var"]] = str(inst.index)
        env["CORRAL_INSTANCE"] = str(inst.index)
        env["CORRAL_APP_NAME"] = cfg["name"]
        env["CORRAL_ID"] = str(inst.id)
        env["pm_id"] = str(inst.id)
        env["name"] = cfg["name"]
        env["CORRAL_HOME"] = str(self.home.root)
        inc = cfg.get("increment_var")
        if inc:
            try:
                env[inc] = str(int(env.get(inc, "0")) + inst.index)
            except ValueError:
                pass
        return env

    def _spawn(self, inst: Instance) -> None:
        cfg = inst.app.config
        argv = build_argv(cfg)
        env = self.build_env(inst)
        if "PYTHONUNBUFFERED" not in env and _looks_like_python(argv):
            env["PYTHONUNBUFFERED"] = "1"
        inst.env = env
        try:
            if argv and os.sep not in argv[0]:
                found = shutil.which(argv[0], path=env.get("PATH"))
                if found:
                    argv[0] = found
            child = osproc.spawn(argv, cwd=cfg["cwd"], env=env, uid=cfg.get("uid"), gid=cfg.get("gid"))
        except osproc.SpawnError as e:
            self.loop.call_soon(self.dispatch, inst, SpawnFailed(str(e)))
            return
        inst.child = child
        inst.started_wall = time.time()
        inst.tree_snapshot = []
        self.by_pid[child.pid] = inst
        inst.readers.add(PipeReader(self, inst, child.stdout_fd, "out"))
        inst.readers.add(PipeReader(self, inst, child.stderr_fd, "err"))
        if child.pidfd is not None:
            self.loop.add_reader(child.pidfd, self._on_pidfd, child)
        self._write_pid_file(inst, child.pid)
        self.dispatch(inst, Spawned(child.pid))

    def _write_pid_file(self, inst: Instance, pid: int) -> None:
        path = inst.app.config.get("pid_file")
        if not path:
            return
        if len(inst.app.instances) > 1:
            path = _suffixed(path, inst.index)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(f"{pid}\n")
        except OSError as e:
            self.announce(inst, "warning", f"cannot write pid_file {path}: {e.strerror}")

    def _signal(self, inst: Instance, sig: str) -> None:
        child = inst.child
        if child is None:
            return
        # Remember the whole tree now: descendants that left the group (setsid)
        # are still killed at the end of the grace period.
        for pid in osproc.descendants(child.pid):
            if pid not in inst.tree_snapshot:
                inst.tree_snapshot.append(pid)
        osproc.signal_group(child.pgid, sig)
        if sig == "SIGKILL":
            osproc.signal_pids(inst.tree_snapshot, "SIGKILL")

    def _on_pidfd(self, child: osproc.Child) -> None:
        status = osproc.reap(child.pid)
        if status is None:
            # Already reaped elsewhere (SIGCHLD path) or not yet exited.
            if child.pid not in self.by_pid:
                self._forget_pidfd(child)
            return
        self.child_exited(child.pid, status)

    def _forget_pidfd(self, child: osproc.Child) -> None:
        if child.pidfd is not None:
            self.loop.remove_reader(child.pidfd)
            osproc.close_fd(child.pidfd)
            child.pidfd = None

    def reap_children(self) -> None:
        """SIGCHLD: reap everything that exited, including re-parented orphans."""
        for pid, status in osproc.reap_any():
            if pid in self.by_pid:
                self.child_exited(pid, status)
            else:
                code, sig = osproc.decode_status(status)
                self.log(f"[daemon] reaped orphan pid {pid} ({sig or f'code {code}'})")

    def child_exited(self, pid: int, status: int) -> None:
        inst = self.by_pid.pop(pid, None)
        if inst is None or inst.child is None or inst.child.pid != pid:
            return
        child = inst.child
        child.popen.returncode = status  # keep subprocess from reaping it again
        self._forget_pidfd(child)
        for reader in list(inst.readers):
            reader.drain()
        inst.child = None
        code, sig = osproc.decode_status(status)
        self._clean_leftovers(inst, child)
        self.dispatch(inst, Exited(code, sig))

    def _clean_leftovers(self, inst: Instance, child: osproc.Child) -> None:
        """The main process is gone; its group or tree may live on. Give them the grace period."""
        leftovers = [p for p in inst.tree_snapshot if _alive(p)]
        if not osproc.group_alive(child.pgid) and not leftovers:
            return
        policy = inst.state.policy
        if inst.state.status is not Status.STOPPING:
            osproc.signal_group(child.pgid, policy.kill_signal)
            osproc.signal_pids(leftovers, policy.kill_signal)

        def final_kill() -> None:
            osproc.signal_group(child.pgid, "SIGKILL")
            osproc.signal_pids(leftovers, "SIGKILL")

        self.loop.call_later(policy.kill_timeout, final_kill)

    def _remove(self, inst: Instance) -> None:
        app = inst.app
        if inst.timer:
            inst.timer.cancel()
        if inst in app.instances:
            app.instances.remove(inst)
        if not app.instances and self.apps.get(app.name) is app:
            del self.apps[app.name]

    def release_targets(self, targets: list[LogFile]) -> None:
        for t in targets:
            self.files.release(t)

    def publish_lines(self, inst: Instance, stream: str, lines: list[bytes], ts: float) -> None:
        for listener in list(self.log_listeners):
            listener(inst, stream, lines, ts)

    # ------------------------------------------------------------ app management

    def add_app(self, config: dict[str, Any], base_env: dict[str, str]) -> App:
        app = App(self, config, base_env)
        self.apps[app.name] = app
        count = resolve_instances(config["instances"], self.cpu_count)
        for index in range(count):
            self._new_instance(app, index)
        return app

    def _new_instance(self, app: App, index: int) -> Instance:
        inst = Instance(id=self.next_id, app=app, index=index, state=ProcState(policy=policy_from_config(app.config)))
        self.next_id += 1
        app.instances.append(inst)
        return inst

    def update_app(self, app: App, config: dict[str, Any], base_env: dict[str, str] | None) -> list[Instance]:
        """Apply a new definition; returns instances that were added."""
        app.config = config
        if base_env is not None:
            app.base_env = base_env
        policy = policy_from_config(config)
        for inst in app.instances:
            self.dispatch(inst, UpdatePolicy(policy))
            inst.refresh_format()
        want = resolve_instances(config["instances"], self.cpu_count)
        added = []
        live = sorted(app.instances, key=lambda i: i.index)
        for inst in live[want:]:
            self.dispatch(inst, Delete())
        for index in range(len(live), want):
            added.append(self._new_instance(app, index))
        return added

    def start(self, inst: Instance) -> None:
        self.dispatch(inst, Start())

    def stop(self, inst: Instance) -> None:
        self.dispatch(inst, Stop())

    def restart(self, inst: Instance) -> None:
        self.dispatch(inst, Restart())

    def delete(self, inst: Instance) -> None:
        self.dispatch(inst, Delete())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def stop_signal_name(sig: int) -> str:
    return signal.Signals(sig).name
