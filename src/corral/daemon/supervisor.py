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

from corral import listeners as listen
from corral import osproc
from corral.appkind import looks_like_python
from corral.config.keys import resolve_instances
from corral.config.loader import build_argv
from corral.logrotate import policy_from
from corral.logsink import LineFormat, LineFormatter, LineFramer, LogEvents, LogFile, LogFiles
from corral.notify import NotifySocket
from corral.paths import Home
from corral.statemachine import (
    RUNNING,
    Announce,
    CancelTimer,
    Delete,
    Effect,
    Event,
    Exited,
    Fail,
    Policy,
    ProcState,
    Ready,
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
# Without wait_ready, an instance counts as ready (for reload) once it has stayed up this long.
READY_SETTLE = 0.5
READS_PER_WAKEUP = 16


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
        wait_ready=bool(cfg["wait_ready"]),
        listen_timeout=cfg["listen_timeout"] / 1000.0,
    )


def _suffixed(path: str, index: int) -> str:
    root, ext = os.path.splitext(path)
    return f"{root}-{index}{ext}"


class PipeReader:
    """Reads one of an instance's pipes until EOF, even past the instance's own exit."""

    def __init__(self, sup: Supervisor, inst: Instance, fd: int, stream: str) -> None:
        self.sup = sup
        self.inst = inst
        self.fd = fd
        self.stream = stream
        self.framer = LineFramer()
        self.targets = inst.targets_for(stream)
        self.closed = False
        sup.loop.add_reader(fd, self.on_readable)

    def on_readable(self) -> None:
        # Chunks of 64 KiB are processed one by one: larger buffers fall above glibc's
        # mmap threshold and cost an mmap/munmap (or brk trim) per read under a flood.
        plain = self.inst.formatter.plain and not self.sup.log_listeners
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
            if plain:
                # plain text, nobody following: whole lines go out as one block
                block = self.framer.feed_block(chunk)
                if block:
                    count = block.count(b"\n")
                    for target in self.targets:
                        target.write(block, count)
            else:
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
        data = self.inst.formatter.format(lines, self.stream, ts)
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
    notify_sock: NotifySocket | None = None
    notified_ready: bool = False
    status_text: str | None = None
    watchdog: asyncio.TimerHandle | None = None
    last_watchdog: float | None = None
    usage: Any = None  # monitor.Usage of the latest sample
    last_restart_reason: str | None = None
    health: Any = None  # healthspec.HealthState when probed per instance
    health_pid: int | None = None
    health_spec: Any = None
    cgroup: str | None = None

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

    def is_ready(self, now: float) -> bool:
        """Ready to serve: READY=1 received, or (without wait_ready) up for READY_SETTLE."""
        st = self.state
        if st.status is not Status.ONLINE:
            return False
        if st.policy.wait_ready or self.notified_ready:
            ready = self.notified_ready
        else:
            ready = st.started_at is not None and now - st.started_at >= READY_SETTLE
        if ready and self.health is not None and self.health_pid == (self.child.pid if self.child else None):
            # a per-instance readiness probe gates readiness too
            return bool(self.health.status == "healthy")
        return ready

    def log_paths(self) -> dict[str, str | None]:
        cfg = self.app.config
        home = self.app.sup.home
        several = resolve_instances(cfg["instances"], self.app.sup.cpu_count) > 1 or self.index > 0
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
        policy = policy_from(self.app.config, self.app.sup.log_defaults)
        return [self.app.sup.files.acquire(p, policy) for p in wanted if p]


@dataclass(eq=False)
class App:
    sup: Supervisor
    config: dict[str, Any]
    base_env: dict[str, str]
    instances: list[Instance] = field(default_factory=list)
    listeners: list[listen.Listener] = field(default_factory=list)
    source: str | None = None
    reloading: bool = False
    health: Any = None  # healthspec.HealthState when probed through the shared socket
    health_pid: int | None = None
    health_spec: Any = None

    def bind_listeners(self) -> None:
        """Bind the app's shared sockets (cluster mode); keeps those already bound to
        the same address, closes those no longer configured. Raises ListenError."""
        cfg = self.config
        wanted: list[str] = []
        if cfg["exec_mode"] == "cluster" and cfg["listen"] and cfg.get("reuse_port"):
            # each instance binds its own socket; check now that the addresses can be had
            for i, address in enumerate(cfg["listen"]):
                if not address.startswith("unix:"):
                    listen.bind(address, listen.listener_name(address, i, cfg.get("listen_names")), backlog=1, reuse_port=True).close()
        if cfg["exec_mode"] == "cluster" and cfg["listen"] and not cfg.get("reuse_port"):
            wanted = list(cfg["listen"])
        backlog = cfg.get("backlog") or listen.DEFAULT_BACKLOG
        existing = {ls.address: ls for ls in self.listeners}
        bound: list[listen.Listener] = []
        fresh: list[listen.Listener] = []
        try:
            for i, address in enumerate(wanted):
                name = listen.listener_name(address, i, cfg.get("listen_names"))
                ls = existing.get(address)
                if ls is not None:
                    ls.name = name
                    ls.sock.listen(backlog)
                else:
                    ls = listen.bind(address, name, backlog=backlog)
                    fresh.append(ls)
                bound.append(ls)
        except listen.ListenError:
            for ls in fresh:
                ls.close()
            raise
        for ls in self.listeners:
            if ls not in bound:
                ls.close()
        self.listeners = bound

    def close_listeners(self) -> None:
        for ls in self.listeners:
            ls.close()
        self.listeners = []

    def listen_signature(self) -> tuple[Any, ...]:
        cfg = self.config
        return (cfg["exec_mode"], tuple(cfg["listen"]), cfg.get("reuse_port"), cfg.get("backlog"))

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
        self.files = LogFiles(DaemonLogEvents(self))
        self.log_defaults: dict[str, Any] = {}
        self._compressor: Any = None
        self.changed = asyncio.Condition()
        self.log_listeners: list[Callable[[Instance, str, list[bytes], float], None]] = []
        self.event_listeners: list[Callable[[dict[str, Any]], None]] = []
        self.cpu_count = os.cpu_count() or 1
        self.extra_children: dict[int, asyncio.Future[int]] = {}
        self.cgroup_support: Any = None
        self.cgroup_notified: set[str] = set()

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

    def _instance_listeners(self, inst: Instance) -> tuple[list[listen.Listener], list[listen.Listener]]:
        """(listeners to pass, listeners to close after the spawn: reuse_port's own)."""
        cfg = inst.app.config
        if cfg["exec_mode"] != "cluster" or not cfg["listen"]:
            return [], []
        if not cfg.get("reuse_port"):
            return inst.app.listeners, []
        own = []
        for i, address in enumerate(cfg["listen"]):
            own.append(listen.bind(address, listen.listener_name(address, i, cfg.get("listen_names")), backlog=cfg.get("backlog") or listen.DEFAULT_BACKLOG, reuse_port=True))
        return own, own

    def _ensure_notify(self, inst: Instance) -> str:
        if inst.notify_sock is None:
            address = f"@corral/{os.getpid()}/{id(inst):x}"
            inst.notify_sock = NotifySocket(address, lambda pid, msg: self._on_notify(inst, pid, msg))
            self.loop.add_reader(inst.notify_sock.fileno(), inst.notify_sock.on_readable)
        return inst.notify_sock.address

    def _close_notify(self, inst: Instance) -> None:
        if inst.notify_sock is not None:
            self.loop.remove_reader(inst.notify_sock.fileno())
            inst.notify_sock.close()
            inst.notify_sock = None
        if inst.watchdog:
            inst.watchdog.cancel()
            inst.watchdog = None

    def _on_notify(self, inst: Instance, pid: int, msg: dict[str, str]) -> None:
        child = inst.child
        if child is None:
            return
        if pid != child.pid and pid not in osproc.descendants(child.pid):
            self.log(f"[{inst.name}:{inst.id}] ignored a notify datagram from pid {pid}, not in the instance's tree")
            return
        if "STATUS" in msg:
            inst.status_text = msg["STATUS"]
        if msg.get("READY") == "1" and not inst.notified_ready:
            inst.notified_ready = True
            self.dispatch(inst, Ready())
            self._notify()
            if inst.app.config.get("wait_ready") and inst.app.config.get("watchdog_sec"):
                self._arm_watchdog(inst)  # like systemd: the watchdog runs once start-up is done
        if msg.get("STOPPING") == "1":
            self.announce(inst, "stopping", "the app says it is stopping")
        if msg.get("WATCHDOG") == "1":
            inst.last_watchdog = self.loop.time()
            self._arm_watchdog(inst)
        if msg.get("WATCHDOG") == "trigger":
            self._watchdog_expired(inst, "the app asked for it (WATCHDOG=trigger)")

    def _arm_watchdog(self, inst: Instance) -> None:
        sec = inst.app.config.get("watchdog_sec")
        if not sec:
            return
        if inst.watchdog:
            inst.watchdog.cancel()
        inst.watchdog = self.loop.call_later(sec / 1000.0, self._watchdog_expired, inst, f"no WATCHDOG=1 within {sec / 1000.0:g}s")

    def _watchdog_expired(self, inst: Instance, why: str) -> None:
        inst.watchdog = None
        if inst.state.status not in RUNNING:
            return
        self.announce(inst, "watchdog", f"failed: {why}")
        # a missed watchdog is a failure, not a requested restart: the restart policy applies
        self.dispatch(inst, Fail(reason=f"watchdog: {why}"))

    def _spawn(self, inst: Instance) -> None:
        cfg = inst.app.config
        argv = build_argv(cfg)
        env = self.build_env(inst)
        if "PYTHONUNBUFFERED" not in env and looks_like_python(argv):
            env["PYTHONUNBUFFERED"] = "1"
        inst.notified_ready = False
        inst.status_text = None
        to_close: list[listen.Listener] = []
        try:
            if argv and os.sep not in argv[0]:
                found = shutil.which(argv[0], path=env.get("PATH"))
                if found:
                    argv[0] = found
            socks, to_close = self._instance_listeners(inst)
            env["NOTIFY_SOCKET"] = self._ensure_notify(inst)
            if cfg.get("watchdog_sec"):
                env["WATCHDOG_USEC"] = str(int(cfg["watchdog_sec"]) * 1000)
            pass_fds: tuple[int, ...] = ()
            if socks:
                argv = listen.expand_placeholders(argv, socks)
                env.update(listen.child_env(socks))
                pass_fds = tuple(ls.fd for ls in socks)
                argv = listen.shim_argv(argv, list(pass_fds))
            inst.env = env
            child = osproc.spawn(argv, cwd=cfg["cwd"], env=env, uid=cfg.get("uid"), gid=cfg.get("gid"), pass_fds=pass_fds)
        except (osproc.SpawnError, listen.ListenError, OSError) as e:
            for ls in to_close:
                ls.close()
            self.loop.call_soon(self.dispatch, inst, SpawnFailed(str(e)))
            return
        for ls in to_close:
            ls.close()
        if cfg.get("memory_max") or cfg.get("cpu_max"):
            self._apply_hard_limits(inst, child.pid)
        if cfg.get("watchdog_sec") and not cfg.get("wait_ready"):
            self._arm_watchdog(inst)
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

    def _apply_hard_limits(self, inst: Instance, pid: int) -> None:
        from corral.daemon import cgroups

        if self.cgroup_support is None:
            self.cgroup_support = cgroups.detect()
        support = self.cgroup_support
        cfg = inst.app.config
        if support.base is None:
            if inst.app.name not in self.cgroup_notified:
                self.cgroup_notified.add(inst.app.name)
                self.announce(inst, "notice", f"memory_max/cpu_max not applied: {support.reason}; only the sampled max_memory_restart applies")
            return
        try:
            path = cgroups.create(support, f"corral-{inst.app.name}-{inst.id}", cfg.get("memory_max"), cfg.get("cpu_max"))
            cgroups.move(path, pid)
            inst.cgroup = path
        except OSError as e:
            self.announce(inst, "notice", f"memory_max/cpu_max not applied: {e}")

    def _write_pid_file(self, inst: Instance, pid: int) -> None:
        path = inst.app.config.get("pid_file")
        if not path:
            return
        if resolve_instances(inst.app.config["instances"], self.cpu_count) > 1:
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

    def watch_pid(self, pid: int, done: asyncio.Future[int]) -> None:
        """Deliver the wait status of a helper child (e.g. an exec probe) to a future."""
        self.extra_children[pid] = done
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            pidfd = None

        def on_exit() -> None:
            status = osproc.reap(pid)
            if pidfd is not None:
                self.loop.remove_reader(pidfd)
                os.close(pidfd)
            if status is not None:
                self._finish_extra(pid, status)

        if pidfd is not None:
            self.loop.add_reader(pidfd, on_exit)
            done.add_done_callback(lambda _f: self.extra_children.pop(pid, None))

    def _finish_extra(self, pid: int, status: int) -> None:
        fut = self.extra_children.pop(pid, None)
        if fut is not None and not fut.done():
            fut.set_result(status)

    def reap_children(self) -> None:
        """SIGCHLD: reap everything that exited, including re-parented orphans."""
        for pid, status in osproc.reap_any():
            if pid in self.by_pid:
                self.child_exited(pid, status)
            elif pid in self.extra_children:
                self._finish_extra(pid, status)
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
        if inst.cgroup:
            from corral.daemon import cgroups

            cgroups.remove(inst.cgroup)
            inst.cgroup = None
        if inst.watchdog:
            inst.watchdog.cancel()
            inst.watchdog = None
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
        self._close_notify(inst)
        if inst in app.instances:
            app.instances.remove(inst)
        if not app.instances and self.apps.get(app.name) is app:
            del self.apps[app.name]
            app.close_listeners()

    def rotated_file(self, path: str, rotated_path: str, policy: Any) -> None:
        """Compress and prune in a worker thread, in order, never on the event loop."""
        if not policy.compress and policy.retain is None:
            return
        if self._compressor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._compressor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="corral-logrotate")
        fut = self.loop.run_in_executor(self._compressor, _finish_rotation, path, rotated_path, policy.compress, policy.retain)

        def done(f: asyncio.Future[list[str]]) -> None:
            if f.exception() is not None:
                self.log(f"[daemon] rotating {path}: {f.exception()!r}")

        fut.add_done_callback(done)

    def log_tick(self) -> None:
        """Every second: notice files moved or deleted from under us; scheduled rotations."""
        now = time.time()
        for f in self.files.all():
            if f.check_moved():
                self.log(f"[daemon] {f.path} was moved or deleted: reopened")
            policy = f.policy
            if policy is not None and policy.interval:
                if f.next_rotation is None:
                    from corral.logrotate import next_interval

                    f.next_rotation = next_interval(policy.interval, now)
                elif now >= f.next_rotation:
                    from corral.logrotate import next_interval

                    f.rotate()
                    f.next_rotation = next_interval(policy.interval, now)

    def release_targets(self, targets: list[LogFile]) -> None:
        for t in targets:
            self.files.release(t)

    def publish_lines(self, inst: Instance, stream: str, lines: list[bytes], ts: float) -> None:
        for listener in list(self.log_listeners):
            listener(inst, stream, lines, ts)

    # ------------------------------------------------------------ app management

    def add_app(self, config: dict[str, Any], base_env: dict[str, str], source: str | None = None) -> App:
        app = App(self, config, base_env, source=source)
        app.bind_listeners()  # raises ListenError before anything is registered
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

    def set_config(self, app: App, config: dict[str, Any]) -> None:
        """New definition without touching the running instances (reload applies it)."""
        old_sig = app.listen_signature()
        old_config = app.config
        app.config = config
        if app.listen_signature() != old_sig:
            try:
                app.bind_listeners()
            except listen.ListenError:
                app.config = old_config
                raise
        policy = policy_from_config(config)
        for inst in app.instances:
            self.dispatch(inst, UpdatePolicy(policy))
            inst.refresh_format()

    def update_app(self, app: App, config: dict[str, Any], base_env: dict[str, str] | None) -> list[Instance]:
        """Apply a new definition; returns instances that were added."""
        self.set_config(app, config)
        if base_env is not None:
            app.base_env = base_env
        want = resolve_instances(config["instances"], self.cpu_count)
        added = []
        live = sorted(app.instances, key=lambda i: i.index)
        for inst in live[want:]:
            self.dispatch(inst, Delete())
        for index in range(len(live), want):
            added.append(self._new_instance(app, index))
        return added

    def add_replacement(self, app: App, index: int) -> Instance:
        inst = self._new_instance(app, index)
        self.start(inst)
        return inst

    def adopt(self, new: Instance, old: Instance) -> None:
        """After a reload step: the replacement takes the old instance's id and counters."""
        from dataclasses import replace

        new.id = old.id
        new.state = replace(new.state, restarts=old.state.restarts + 1)
        new.created_at = old.created_at
        new.last_restart_reason = old.last_restart_reason
        new.refresh_format()

    def scale(self, app: App, count: int) -> tuple[list[Instance], list[Instance]]:
        """Change the number of instances; returns (added, removed)."""
        app.config = {**app.config, "instances": count}
        live = sorted(app.instances, key=lambda i: i.index)
        added: list[Instance] = []
        removed = live[count:]
        for inst in removed:
            self.dispatch(inst, Delete())
        next_index = (max((i.index for i in live[:count]), default=-1)) + 1
        for _ in range(len(live), count):
            inst = self._new_instance(app, next_index)
            next_index += 1
            added.append(inst)
            self.start(inst)
        return added, removed

    def start(self, inst: Instance) -> None:
        self.dispatch(inst, Start())

    def stop(self, inst: Instance) -> None:
        self.dispatch(inst, Stop())

    def restart(self, inst: Instance) -> None:
        self.dispatch(inst, Restart())

    def delete(self, inst: Instance) -> None:
        self.dispatch(inst, Delete())


class DaemonLogEvents(LogEvents):
    """Log file failures are reported once (daemon log, event stream); rotated files are
    compressed and pruned off the event loop."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup

    def _owner(self, f: LogFile) -> Instance | None:
        for inst in self.sup.instances():
            if f.path in inst.log_paths().values():
                return inst
        return None

    def write_failed(self, f: LogFile, error: str) -> None:
        self.sup.announce(self._owner(f), "log-error", f"cannot write {error}; the app keeps running, lost lines are counted")

    def write_recovered(self, f: LogFile, dropped: int) -> None:
        self.sup.announce(self._owner(f), "log-recovered", f"writing to {f.path} again; {dropped} lines could not be written")

    def rotated(self, f: LogFile, rotated_path: str) -> None:
        policy = f.policy
        if policy is None:
            return
        self.sup.rotated_file(f.path, rotated_path, policy)


def _finish_rotation(path: str, rotated_path: str, compress: bool, retain: int) -> list[str]:
    from corral.logrotate import apply_retention, compress_file

    if compress:
        try:
            compress_file(rotated_path)
        except FileNotFoundError:
            pass
    return apply_retention(path, retain)


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
