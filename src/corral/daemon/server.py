"""The daemon: control socket server and command handlers.

The socket is mode 0600 inside the 0700 home folder, and every connection's
peer uid is checked (SO_PEERCRED).  A malformed, oversized or unknown request
gets an error reply; the daemon carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from corral import __version__, commands, osproc, protocol
from corral import listeners as listen
from corral.appkind import is_secret
from corral.config.loader import normalize_app
from corral.daemon.supervisor import READY_SETTLE, App, Instance, Supervisor
from corral.errors import ConfigError
from corral.paths import Home
from corral.statemachine import Restart, Status

SUBSCRIBER_QUEUE = 20000  # messages a follower may lag behind before it is dropped

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class RequestError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _peer_uid(sock: socket.socket) -> int | None:
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class Daemon:
    def __init__(self, home: Home) -> None:
        self.home = home
        self.loop = asyncio.get_running_loop()
        self.started = time.time()
        self.sup = Supervisor(home, self.loop, self.log)
        self.server: asyncio.AbstractServer | None = None
        self.stopping = asyncio.Event()
        self.systemd_notified = False
        self.handlers: dict[str, Handler] = {}
        for cmd in commands.COMMANDS:
            if cmd.streaming:
                continue
            handler = getattr(self, f"cmd_{cmd.name}", None)
            if handler is None:
                raise RuntimeError(f"command {cmd.name} has no handler")
            self.handlers[cmd.name] = handler
        from corral.daemon.watch import HealthManager, ResourceMonitor

        self.monitor = ResourceMonitor(self.sup, self.replace_instance)
        self.health = HealthManager(self.sup, self.replace_instance, self._reload_for, self.sup.watch_pid)

        from corral.daemon.triggers import Triggers

        self.triggers = Triggers(self.sup, self.restart_for)

    async def start_http(self, listen_override: str | None = None) -> None:
        from corral.daemon import http

        try:
            conf = http.settings(str(self.home.root))
            listen_at = listen_override or conf.get("listen")
            if not listen_at:
                return
            host, port = http.parse_listen(listen_at)
            self.http = http.HttpEndpoint(self, host, port, with_metrics=conf.get("metrics", True))
            await self.http.start()
        except (OSError, ValueError) as e:
            self.log(f"[daemon] HTTP endpoint not started: {e}")

    def close(self) -> None:
        """Stop serving: watchers, the HTTP endpoint, the control socket and the pid file."""
        self.stop_watchers()
        if self.server is not None:
            self.server.close()
        for path in (self.home.socket, self.home.pid_file):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def stop_watchers(self) -> None:
        for task in (self.monitor.task, self.triggers.task):
            if task is not None:
                task.cancel()
        self.health.stop()
        self.triggers.stop()
        http = getattr(self, "http", None)
        if http is not None:
            http.close()

    def start_watchers(self) -> None:
        from corral.daemon import settings

        try:
            self.sup.log_defaults = settings.log_defaults(str(self.home.root))
        except ConfigError as e:
            self.log(f"[daemon] settings ignored: {e.render()}")
        self.monitor.start()
        self.health.start()
        self.triggers.start()

    async def restart_for(self, app: App, reason: str) -> None:
        """A trigger (cron, watch) restarts the app: a rolling reload when it shares a socket."""
        for inst in app.instances:
            inst.last_restart_reason = reason
        self.sup.announce(app.instances[0] if app.instances else None, "trigger", reason)
        if app.listeners:
            await self._reload_for(app, reason)
            return
        for inst in list(app.instances):
            if inst.state.status in (Status.ONLINE, Status.LAUNCHING):
                self.sup.dispatch(inst, Restart(reason=reason))

    async def _reload_for(self, app: App, reason: str) -> None:
        try:
            await self.reload_app(app)
        except RequestError as e:
            self.sup.announce(app.instances[0] if app.instances else None, "reload-failed", f"{reason}: {e.message}")

    async def replace_instance(self, inst: Instance, reason: str) -> None:
        """Restart one instance for a reason (memory, liveness): in cluster mode with a shared
        socket, start the replacement first so capacity never drops; else a plain restart."""
        app = inst.app
        if inst not in app.instances or inst.state.status not in (Status.ONLINE, Status.LAUNCHING):
            return
        if not app.listeners or app.reloading:
            self.sup.dispatch(inst, Restart(reason=reason))
            return
        app.reloading = True
        try:
            new = self.sup.add_replacement(app, inst.index)
            why = await self._wait_ready(new)
            if why is not None:
                self.sup.delete(new)
                await self._await_gone(new)
                self.sup.announce(inst, "replace-failed", f"{reason}: the replacement {why}; restarting in place")
                self.sup.dispatch(inst, Restart(reason=reason))
                return
            self.sup.delete(inst)
            await self._await_gone(inst)
            self.sup.adopt(new, inst)
            new.last_restart_reason = reason
        finally:
            app.reloading = False

    # ------------------------------------------------------------ logging

    def log(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            sys.stdout.write(f"{stamp} {message}\n")
            sys.stdout.flush()
        except (OSError, ValueError):
            pass

    # ------------------------------------------------------------ server

    async def serve(self) -> None:
        path = str(self.home.socket)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        old_umask = os.umask(0o177)
        try:
            self.server = await asyncio.start_unix_server(self._on_client, path=path, limit=protocol.MAX_MESSAGE)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        self.log(f"[daemon] corral {__version__} listening on {path} (pid {os.getpid()})")

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        uid = _peer_uid(sock) if sock is not None else None
        if uid is None or uid != os.getuid():
            self.log(f"[daemon] refused a connection from uid {uid}")
            with contextlib.suppress(Exception):
                writer.write(protocol.encode(protocol.error(None, "forbidden", "peer uid does not match the daemon's")))
                await writer.drain()
            writer.close()
            return
        try:
            while not reader.at_eof():
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as e:
                    if not e.partial.strip():
                        break
                    line = e.partial
                except asyncio.LimitOverrunError:
                    writer.write(protocol.encode(protocol.error(None, "too_large", f"request over {protocol.MAX_MESSAGE} bytes")))
                    await writer.drain()
                    break
                if not line.strip():
                    continue
                keep_open = await self._handle_line(line, reader, writer)
                if not keep_open:
                    break
        except (ConnectionError, BrokenPipeError):
            pass
        except Exception as e:  # never let a connection take the daemon down
            self.log(f"[daemon] connection error: {e!r}")
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle_line(self, line: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        req_id: Any = None
        try:
            req_id, cmd_name, raw_args = protocol.parse_request(line)
            cmd = commands.BY_NAME.get(cmd_name)
            if cmd is None:
                raise RequestError("unknown_command", f"unknown command {cmd_name!r}")
            try:
                args = commands.check_args(cmd, raw_args)
            except ValueError as e:
                raise RequestError("bad_args", str(e))
            if cmd.streaming:
                await self.stream(args, req_id, reader, writer)
                return False
            result = await self.handlers[cmd_name](args)
            reply = protocol.ok(req_id, result)
        except protocol.ProtocolError as e:
            reply = protocol.error(req_id, e.code, e.message)
        except RequestError as e:
            reply = protocol.error(req_id, e.code, e.message)
        except ConfigError as e:
            reply = protocol.error(req_id, "bad_config", e.render())
        except listen.ListenError as e:
            reply = protocol.error(req_id, "listen_failed", str(e))
        except LookupError as e:
            reply = protocol.error(req_id, "not_found", str(e.args[0]) if e.args else "not found")
        except Exception as e:
            self.log(f"[daemon] internal error: {e!r}")
            reply = protocol.error(req_id, "internal", f"internal error: {e}")
        writer.write(protocol.encode(reply))
        await writer.drain()
        return True

    # ------------------------------------------------------------ views

    def _usage(self, inst: Instance) -> tuple[float | None, int | None]:
        """Latest sample of the instance's whole process tree."""
        if inst.child is None:
            return None, None
        usage = inst.usage
        if usage is None or self.loop.time() - usage.time > 2 * self.monitor.current_interval() + 1:
            self.monitor.tick()  # one /proc scan for every instance
            usage = inst.usage
        if usage is None:
            return None, None
        return usage.cpu_percent, usage.memory

    def view(self, inst: Instance, *, full: bool = False, show_env: bool = False) -> dict[str, Any]:
        cfg = inst.app.config
        st = inst.state
        cpu, mem = self._usage(inst)
        uptime = None
        if inst.child is not None and inst.started_wall is not None and st.status in (Status.ONLINE, Status.LAUNCHING, Status.STOPPING):
            uptime = time.time() - inst.started_wall
        user = cfg.get("uid")
        if user is None:
            import pwd

            try:
                user = pwd.getpwuid(os.getuid()).pw_name
            except KeyError:
                user = str(os.getuid())
        v: dict[str, Any] = {
            "id": inst.id,
            "name": inst.name,
            "namespace": cfg["namespace"],
            "instance": inst.index,
            "mode": cfg["exec_mode"],
            "pid": inst.child.pid if inst.child else None,
            "status": str(st.status),
            "restarts": st.restarts,
            "unstable_restarts": st.unstable_restarts,
            "uptime": uptime,
            "started_at": inst.started_wall,
            "created_at": inst.created_at,
            "cpu": cpu,
            "memory": mem,
            "user": str(user),
            "exit_code": st.exit_code,
            "exit_signal": st.exit_signal,
            "reason": st.reason,
            "ready": inst.is_ready(self.loop.time()),
            "notify_status": inst.status_text,
            "health": self._health_of(inst),
            "last_restart_reason": inst.last_restart_reason,
        }
        if full:
            log_paths = inst.log_paths()  # computed once for every log field below
            paths = {p for p in log_paths.values() if p}
            counters = [self.sup.files.counters(p) for p in paths]
            v.update(
                {
                    "script": cfg["script"],
                    "interpreter": cfg["interpreter"],
                    "interpreter_args": cfg["interpreter_args"],
                    "args": cfg["args"],
                    "cwd": cfg["cwd"],
                    "logs": log_paths,
                    "pid_file": cfg.get("pid_file"),
                    "autorestart": cfg["autorestart"],
                    "max_restarts": cfg["max_restarts"],
                    "min_uptime": cfg["min_uptime"],
                    "restart_delay": cfg["restart_delay"],
                    "exp_backoff_restart_delay": cfg["exp_backoff_restart_delay"],
                    "kill_timeout": cfg["kill_timeout"],
                    "kill_signal": cfg["kill_signal"],
                    "stop_exit_codes": cfg["stop_exit_codes"],
                    "instances": cfg["instances"],
                    "log_type": cfg["log_type"],
                    "log_date_format": cfg["log_date_format"],
                    "merge_logs": cfg["merge_logs"],
                    "max_memory_restart": cfg["max_memory_restart"],
                    "watch": cfg["watch"],
                    "cron_restart": cfg["cron_restart"],
                    "exec_mode": cfg["exec_mode"],
                    "listen": [{"name": ls.name, "address": ls.address, "port": ls.port} for ls in inst.app.listeners] or cfg["listen"],
                    "wait_ready": cfg["wait_ready"],
                    "log_errors": [f.last_error for f in self.sup.files.all() if f.failing and f.last_error and f.path in paths],
                    "log_lines_dropped": sum(counts[1] for counts in counters),
                    "log_rotations": sum(counts[0] for counts in counters),
                }
            )
            env = inst.env or self.sup.build_env(inst)
            app_keys = set(cfg["env"])
            if show_env:
                v["env"] = dict(sorted(env.items()))
            else:
                v["env"] = {k: ("<hidden>" if is_secret(k) else env.get(k, "")) for k in sorted(app_keys)}
                v["env_hidden"] = True
        return v

    def _health_of(self, inst: Instance) -> dict[str, Any] | None:
        from corral.daemon.watch import health_view

        if not inst.app.config.get("health"):
            return None
        holder: Any = inst.app if inst.app.listeners else inst
        return health_view(holder) or {"status": "starting", "failures": 0, "successes": 0, "checks": 0, "last_error": None, "last_latency_ms": None, "last_change": None}

    # ------------------------------------------------------------ commands

    def app_health(self, app: App) -> tuple[bool, str]:
        """(healthy, reason) of one app for the aggregate: all instances online and probes healthy."""
        want = len(app.instances)
        online = [i for i in app.instances if i.state.status is Status.ONLINE]
        if not app.instances:
            return False, f"{app.name}: no instances"
        if len(online) < want:
            bad = next(i for i in app.instances if i.state.status is not Status.ONLINE)
            return False, f"{app.name}: {len(online)}/{want} online ({bad.name}:{bad.id} is {bad.state.status}{': ' + bad.state.reason if bad.state.reason else ''})"
        if app.config.get("health"):
            holders: list[Any] = [app] if app.listeners else list(app.instances)
            for h in holders:
                st = h.health
                if st is None or st.status != "healthy":
                    status = st.status if st is not None else "starting"
                    err = f" ({st.last_error})" if st is not None and st.last_error else ""
                    return False, f"{app.name}: health {status}{err}"
        return True, f"{app.name}: {want}/{want} online" + (", healthy" if app.config.get("health") else "")

    async def cmd_health(self, args: dict[str, Any]) -> Any:
        names = args.get("names") or []
        if names:
            missing = [n for n in names if n not in self.sup.apps]
            if missing:
                raise LookupError(f"no app named '{missing[0]}'")
            apps = [self.sup.apps[n] for n in names]
        else:
            apps = [a for a in self.sup.apps.values() if a.config["autostart"]]
        results = []
        for app in apps:
            ok, reason = self.app_health(app)
            results.append({"name": app.name, "healthy": ok, "reason": reason})
        return {"healthy": all(r["healthy"] for r in results), "apps": results}

    async def cmd_history(self, args: dict[str, Any]) -> Any:
        return {str(i.id): self.monitor.history(i) for i in self.sup.select(args["target"])}

    async def cmd_ping(self, args: dict[str, Any]) -> Any:
        return {"version": __version__, "pid": os.getpid(), "uptime": time.time() - self.started, "home": str(self.home.root), "protocol": protocol.VERSION}

    def _validate_apps(self, raw_apps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        apps = []
        for i, raw in enumerate(raw_apps):
            name = raw.get("name") if isinstance(raw.get("name"), str) else f"#{i + 1}"
            clean = {k: v for k, v in raw.items() if k != "env_names"}
            try:
                app, _warnings, _ignored = normalize_app(clean, label="request", resolve=False)
            except ConfigError as e:
                raise RequestError("bad_config", e.render())
            app["env_names"] = raw.get("env_names", [])
            if not os.path.isabs(app["cwd"]):
                raise RequestError("bad_config", f"request: app '{name}': key 'cwd' must be absolute")
            apps.append(app)
        names = [a["name"] for a in apps]
        if len(set(names)) != len(names):
            raise RequestError("bad_config", "request: two apps have the same name")
        return apps

    async def _await_settled(self, instances: list[Instance], extra: float = 5.0) -> None:
        if not instances:
            return
        timeout = max(i.state.policy.kill_timeout for i in instances) + extra

        def settled() -> bool:
            return all(i.state.status not in (Status.STOPPING, Status.LAUNCHING) for i in instances)

        await self.sup.wait_for(settled, timeout)

    async def cmd_start(self, args: dict[str, Any]) -> Any:
        apps = self._validate_apps(args["apps"])
        client_env = {str(k): str(v) for k, v in (args.get("client_env") or {}).items()}
        source = args.get("source")
        touched: list[Instance] = []
        # register every new app first (binding its sockets), so a socket that cannot be
        # bound starts nothing at all
        new_apps: list[App] = []
        try:
            for cfg in apps:
                if cfg["name"] not in self.sup.apps:
                    new_apps.append(self.sup.add_app(cfg, client_env, source=source))
        except listen.ListenError:
            for app in new_apps:
                app.close_listeners()
                self.sup.apps.pop(app.name, None)
            raise
        for cfg in apps:
            existing = self.sup.apps.get(cfg["name"])
            if existing in new_apps:
                app = existing
                if cfg["autostart"]:
                    for inst in app.instances:
                        self.sup.start(inst)
                touched.extend(app.instances)
                continue
            changed = existing.config != cfg
            added = self.sup.update_app(existing, cfg, client_env if changed else None)
            for inst in existing.instances:
                if inst in added or inst.state.status in (Status.STOPPED, Status.ERRORED, Status.WAITING_RESTART):
                    self.sup.start(inst)
                elif changed and inst.state.status is not Status.STOPPING:
                    self.sup.restart(inst)
            touched.extend(existing.instances)
        await self._await_settled(touched)
        self.notify_systemd()
        everyone = sorted(self.sup.instances(), key=lambda i: i.id)
        return {"processes": [self.view(i) for i in touched if i in i.app.instances], "all": [self.view(i) for i in everyone]}

    # ------------------------------------------------------------ reload and scale

    async def _wait_ready(self, inst: Instance) -> str | None:
        """None once the instance is ready; else why it failed."""
        policy = inst.state.policy
        timeout = (policy.listen_timeout if policy.wait_ready else READY_SETTLE + 30.0) + 1.0
        deadline = self.loop.time() + timeout
        while True:
            st = inst.state
            if inst.is_ready(self.loop.time()):
                return None
            if st.restarts > 0 or st.status in (Status.ERRORED, Status.STOPPED, Status.WAITING_RESTART):
                return f"failed to start ({st.reason or st.status})"
            if self.loop.time() > deadline:
                return f"was not ready within {timeout:g}s"
            await asyncio.sleep(0.02)

    async def _await_gone(self, inst: Instance) -> None:
        await self.sup.wait_for(lambda: inst not in inst.app.instances, inst.state.policy.kill_timeout + 5)

    async def reload_app(self, app: App) -> dict[str, Any]:
        if app.reloading:
            raise RequestError("busy", f"a reload of '{app.name}' is already running; try again when it ends")
        app.reloading = True
        try:
            cfg = app.config
            olds = sorted(app.instances, key=lambda i: i.index)
            shared = cfg["exec_mode"] == "cluster" and bool(cfg["listen"])
            if not shared:
                # no shared socket: a replacement could not take over the port; restart one by one
                for old in olds:
                    self.sup.restart(old)
                    why = await self._wait_ready(old) if old.state.policy.autorestart else None
                    if why and old.state.status is not Status.ONLINE:
                        raise RequestError("reload_failed", f"{app.name}: instance {old.index} {why}")
                single = len(olds) == 1 and cfg["exec_mode"] == "fork"
                msg = "fork mode with one instance and no shared socket: reload falls back to restart" if single else "no shared listen socket: rolling restart, one instance at a time"
                return {"name": app.name, "mode": "restart", "replaced": len(olds), "message": msg}
            replaced = 0
            for old in olds:
                if old not in app.instances:
                    continue
                if old.state.status not in (Status.ONLINE, Status.LAUNCHING):
                    self.sup.start(old)
                    continue
                new = self.sup.add_replacement(app, old.index)
                why = await self._wait_ready(new)
                if why is not None:
                    self.sup.delete(new)
                    await self._await_gone(new)
                    raise RequestError(
                        "reload_failed",
                        f"{app.name}: the replacement for instance {old.index} {why}; reload stopped after {replaced} of {len(olds)}, the old instances keep serving",
                    )
                self.sup.delete(old)
                await self._await_gone(old)
                self.sup.adopt(new, old)
                replaced += 1
            return {"name": app.name, "mode": "reload", "replaced": replaced, "message": f"reloaded {replaced} instances with zero downtime"}
        finally:
            app.reloading = False

    async def cmd_reload(self, args: dict[str, Any]) -> Any:
        started: list[str] = []
        deleted: list[str] = []
        if args.get("apps") is not None:
            apps = self._validate_apps(args["apps"])
            source = args.get("source")
            client_env = {str(k): str(v) for k, v in (args.get("client_env") or {}).items()}
            targets: list[App] = []
            for cfg in apps:
                existing = self.sup.apps.get(cfg["name"])
                if existing is None:
                    continue
                if existing.reloading:
                    raise RequestError("busy", f"a reload of '{existing.name}' is already running; try again when it ends")
            # all or nothing: bind every socket and apply every definition first; on any
            # failure, undo what was done and start nothing
            added: list[App] = []
            changed: list[tuple[App, dict[str, Any]]] = []
            try:
                for cfg in apps:
                    existing = self.sup.apps.get(cfg["name"])
                    if existing is None:
                        added.append(self.sup.add_app(cfg, client_env, source=source))
                    else:
                        previous = existing.config
                        self.sup.set_config(existing, cfg)
                        changed.append((existing, previous))
            except listen.ListenError:
                for app in added:
                    app.close_listeners()
                    self.sup.apps.pop(app.name, None)
                for app, previous in reversed(changed):
                    with contextlib.suppress(listen.ListenError):
                        self.sup.set_config(app, previous)
                raise
            for app in added:
                if app.config["autostart"]:
                    for inst in app.instances:
                        self.sup.start(inst)
                started.append(app.name)
            for existing, previous in changed:
                existing.base_env = client_env
                existing.source = source or existing.source
                if previous["instances"] != existing.config["instances"]:
                    from corral.config.keys import resolve_instances

                    self.sup.scale(existing, resolve_instances(existing.config["instances"], self.sup.cpu_count))
                targets.append(existing)
            names = {cfg["name"] for cfg in apps}
            if source:
                for app in list(self.sup.apps.values()):
                    if app.source == source and app.name not in names:
                        for inst in list(app.instances):
                            self.sup.delete(inst)
                        deleted.append(app.name)
        else:
            instances = self.sup.select(args["target"])
            seen: dict[int, App] = {}
            for inst in instances:
                seen.setdefault(id(inst.app), inst.app)
            targets = list(seen.values())
        results = []
        for app in targets:
            results.append(await self.reload_app(app))
        return {"apps": results, "started": started, "deleted": deleted}

    async def cmd_scale(self, args: dict[str, Any]) -> Any:
        app = self.sup.apps.get(args["name"])
        if app is None:
            raise LookupError(f"no app named '{args['name']}'")
        text = str(args["count"]).strip()
        current = len(app.instances)
        try:
            count = current + int(text) if text[:1] in "+-" else int(text)
        except ValueError:
            raise RequestError("bad_args", f"field 'args.count': expected N, +N or -N, got {text!r}")
        if count < 1:
            raise RequestError("bad_args", f"field 'args.count': {app.name} would have {count} instances; use stop or delete instead")
        if app.reloading:
            raise RequestError("busy", f"a reload of '{app.name}' is running; scale after it ends")
        added, removed = self.sup.scale(app, count)
        await self._await_settled(added)
        for inst in removed:
            await self._await_gone(inst)
        return {"processes": [self.view(i) for i in sorted(app.instances, key=lambda i: i.index)], "added": len(added), "removed": len(removed)}

    async def _apply(self, args: dict[str, Any], action: Callable[[Instance], None]) -> Any:
        instances = self.sup.select(args["target"])
        for inst in instances:
            action(inst)
        await self._await_settled(instances)
        return {"processes": [self.view(i) for i in instances]}

    async def cmd_stop(self, args: dict[str, Any]) -> Any:
        return await self._apply(args, self.sup.stop)

    async def cmd_restart(self, args: dict[str, Any]) -> Any:
        instances = self.sup.select(args["target"])
        if args.get("update_env"):
            client_env = {str(k): str(v) for k, v in (args.get("client_env") or {}).items()}
            for app in {id(i.app): i.app for i in instances}.values():
                app.base_env = client_env
        for inst in instances:
            self.sup.restart(inst)
        await self._await_settled(instances)
        return {"processes": [self.view(i) for i in instances]}

    async def cmd_delete(self, args: dict[str, Any]) -> Any:
        instances = self.sup.select(args["target"])
        views = [self.view(i) for i in instances]
        for inst in instances:
            self.sup.delete(inst)

        def gone() -> bool:
            return all(i not in i.app.instances for i in instances)

        timeout = max((i.state.policy.kill_timeout for i in instances), default=0) + 5
        await self.sup.wait_for(gone, timeout)
        for v in views:
            v["status"] = "deleted"
        return {"processes": views}

    async def cmd_reset(self, args: dict[str, Any]) -> Any:
        from dataclasses import replace

        instances = self.sup.select(args["target"])
        for inst in instances:
            inst.state = replace(inst.state, restarts=0, unstable_restarts=0)
        return {"processes": [self.view(i) for i in instances]}

    async def cmd_signal(self, args: dict[str, Any]) -> Any:
        from corral.config.keys import p_signal

        try:
            sig = p_signal(args["signal"])
        except ValueError as e:
            raise RequestError("bad_args", f"field 'args.signal': {e}")
        instances = self.sup.select(args["target"])
        for inst in instances:
            if inst.child is not None:
                osproc.signal_group(inst.child.pgid, sig)
        return {"processes": [self.view(i) for i in instances], "signal": sig}

    async def cmd_list(self, args: dict[str, Any]) -> Any:
        return [self.view(i) for i in sorted(self.sup.instances(), key=lambda i: i.id)]

    async def cmd_describe(self, args: dict[str, Any]) -> Any:
        return [self.view(i, full=True, show_env=bool(args.get("show_env"))) for i in self.sup.select(args["target"])]

    async def cmd_env(self, args: dict[str, Any]) -> Any:
        instances = self.sup.select([str(args["id"])])
        inst = instances[0]
        return dict(sorted((inst.env or self.sup.build_env(inst)).items()))

    async def cmd_flush(self, args: dict[str, Any]) -> Any:
        instances = self.sup.select(args["target"])
        paths: set[str] = set()
        for inst in instances:
            paths.update(p for p in inst.log_paths().values() if p)
        flushed = []
        from corral.logrotate import rotated_files

        for path in sorted(paths):
            for old in rotated_files(path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(old)
                    flushed.append(old)
            try:
                with open(path, "r+b") as f:
                    f.truncate(0)
                flushed.append(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                raise RequestError("failed", f"cannot empty {path}: {e.strerror}")
        return {"files": flushed}

    async def cmd_reload_logs(self, args: dict[str, Any]) -> Any:
        n = self.sup.files.reopen_all()
        self.log(f"[daemon] reopened {n} log files")
        return {"reopened": n}

    def _dump(self) -> list[dict[str, Any]]:
        out = []
        for app in self.sup.apps.values():
            running = any(i.state.status in (Status.ONLINE, Status.LAUNCHING, Status.WAITING_RESTART) for i in app.instances)
            out.append({"config": app.config, "base_env": app.base_env, "running": running})
        return out

    async def cmd_save(self, args: dict[str, Any]) -> Any:
        entries = self._dump()
        if not entries and not args.get("force"):
            raise RequestError("empty", "no apps to save (use --force to save an empty list)")
        path = self.home.dump_file
        tmp = path.with_suffix(".tmp")
        data = json.dumps({"version": 1, "saved_at": time.time(), "apps": entries}, indent=1).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if path.exists():
            os.replace(path, path.with_suffix(".json.bak"))
        os.replace(tmp, path)
        return {"path": str(path), "count": len(entries)}

    def _read_dump(self) -> tuple[list[dict[str, Any]], str]:
        errors = []
        for candidate in (self.home.dump_file, self.home.dump_file.with_suffix(".json.bak")):
            try:
                data = json.loads(candidate.read_bytes())
                apps = data["apps"]
                if not isinstance(apps, list) or not all(isinstance(a, dict) and isinstance(a.get("config"), dict) for a in apps):
                    raise ValueError("bad shape")
                return apps, str(candidate)
            except FileNotFoundError:
                errors.append(f"{candidate}: missing")
            except (ValueError, KeyError, TypeError) as e:
                errors.append(f"{candidate}: corrupt ({e})")
                self.log(f"[daemon] dump {candidate} is corrupt: {e}")
        raise RequestError("no_dump", "nothing to resurrect: " + "; ".join(errors))

    async def cmd_resurrect(self, args: dict[str, Any]) -> Any:
        entries, source = self._read_dump()
        started: list[Instance] = []
        for entry in entries:
            cfg = self._validate_apps([entry["config"]])[0]
            if cfg["name"] in self.sup.apps:
                continue
            base_env = {str(k): str(v) for k, v in (entry.get("base_env") or args.get("client_env") or {}).items()}
            app: App = self.sup.add_app(cfg, base_env)
            if entry.get("running", True):
                for inst in app.instances:
                    self.sup.start(inst)
                started.extend(app.instances)
        await self._await_settled(started)
        self.notify_systemd()
        return {"processes": [self.view(i) for i in started], "source": source}

    def notify_systemd(self) -> None:
        """Under systemd (NOTIFY_SOCKET in the daemon's env), READY=1 once every autostart app is online."""
        if self.systemd_notified or not os.environ.get("NOTIFY_SOCKET"):
            return
        apps = [a for a in self.sup.apps.values() if a.config["autostart"]]
        if all(i.state.status is Status.ONLINE for a in apps for i in a.instances):
            import corral

            corral.notify(ready=True, status=f"{sum(len(a.instances) for a in apps)} processes online", mainpid=str(os.getpid()))
            self.systemd_notified = True

    async def stop_all(self) -> int:
        instances = self.sup.instances()
        for inst in instances:
            self.sup.stop(inst)
        await self._await_settled(instances)
        return len(instances)

    async def cmd_kill(self, args: dict[str, Any]) -> Any:
        n = await self.stop_all()
        self.loop.call_later(0.05, self.stopping.set)
        return {"stopped": n}

    # ------------------------------------------------------------ streaming

    async def stream(self, args: dict[str, Any], req_id: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        targets = args["target"]
        instances = self.sup.select(targets)
        ids = {i.id for i in instances}
        names = {i.name for i in instances}
        whole = "all" in targets
        streams = set(args["streams"])
        queue: deque[bytes] = deque()
        wake = asyncio.Event()
        dropped = False

        def push(msg: dict[str, Any]) -> None:
            nonlocal dropped
            if dropped:
                return
            if len(queue) >= SUBSCRIBER_QUEUE:
                dropped = True
                queue.clear()
                queue.append(protocol.encode({"v": protocol.VERSION, "stream": "notice", "message": "follower too slow: dropped"}))
            else:
                queue.append(protocol.encode(msg))
            wake.set()

        def wanted(inst: Instance) -> bool:
            return whole or inst.id in ids or inst.name in names

        def on_lines(inst: Instance, stream: str, lines: list[bytes], ts: float) -> None:
            if stream not in streams or not wanted(inst):
                return
            for line in lines:
                text = line.decode("utf-8", "replace")
                if grep is not None and not grep.search(text):
                    continue
                push({"v": 1, "stream": "log", "time": ts, "name": inst.name, "id": inst.id, "type": stream, "message": text})

        def on_event(ev: dict[str, Any]) -> None:
            if ev.get("id") is None or whole or ev.get("id") in ids or ev.get("name") in names:
                push({"v": 1, **ev})

        # Tail first, then register, in the same loop turn: no line lost or doubled.
        grep = None
        if args.get("grep"):
            import re

            try:
                grep = re.compile(args["grep"])
            except re.error as e:
                raise RequestError("bad_args", f"field 'args.grep': not a regular expression: {e}")
        writer.write(protocol.encode(protocol.ok(req_id, {"subscribed": sorted(ids), "names": sorted(names)})))
        if args["lines"] > 0 and args["logs"]:
            for msg in self._tail(instances, streams, args["lines"], args.get("since"), args.get("until"), grep):
                writer.write(protocol.encode(msg))
        if not args["follow"] or args.get("until") is not None:
            writer.write(protocol.encode({"v": 1, "stream": "end"}))
            await writer.drain()
            return
        if args["logs"]:
            self.sup.log_listeners.append(on_lines)
        if args["events"]:
            self.sup.event_listeners.append(on_event)
        closed = self.loop.create_task(reader.read())
        try:
            await writer.drain()
            while not closed.done() and not self.stopping.is_set():
                wake.clear()
                while queue:
                    batch = []
                    while queue and len(batch) < 512:
                        batch.append(queue.popleft())
                    writer.write(b"".join(batch))
                    await writer.drain()
                if dropped:
                    break
                waiter = self.loop.create_task(wake.wait())
                await asyncio.wait({waiter, closed}, return_when=asyncio.FIRST_COMPLETED, timeout=1.0)
                waiter.cancel()
        finally:
            closed.cancel()
            if on_lines in self.sup.log_listeners:
                self.sup.log_listeners.remove(on_lines)
            if on_event in self.sup.event_listeners:
                self.sup.event_listeners.remove(on_event)

    def _tail(self, instances: list[Instance], streams: set[str], n: int, since: float | None = None, until: float | None = None, grep: Any = None) -> list[dict[str, Any]]:
        from corral import logread

        seen: set[str] = set()
        groups: list[list[logread.LogLine]] = []
        for inst in instances:
            paths = inst.log_paths()
            for stream, key in (("out", "out_file"), ("err", "error_file")):
                path = paths[key]
                if stream not in streams or not path or path in seen:
                    continue
                seen.add(path)
                groups.append(logread.history(path, lines=n, name=inst.name, id=inst.id, type=stream, since=since, until=until, grep=grep))
        return [
            {"v": 1, "stream": "log", "tail": True, "time": ln.time, "name": ln.name, "id": ln.id, "type": ln.type, "message": ln.message}
            for ln in logread.interleave(groups)
        ]


async def run(home: Home) -> int:
    daemon = Daemon(home)
    loop = daemon.loop
    osproc.set_child_subreaper()
    loop.add_signal_handler(signal.SIGCHLD, daemon.sup.reap_children)
    loop.add_signal_handler(signal.SIGUSR2, lambda: loop.create_task(daemon.cmd_reload_logs({})))
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(daemon.cmd_reload_logs({})))

    async def graceful() -> None:
        daemon.log("[daemon] signal received: stopping every app")
        await daemon.stop_all()
        daemon.stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: loop.create_task(graceful()))
    home.pid_file.write_text(f"{os.getpid()}\n")  # before the socket answers (systemd Type=forking)
    await daemon.serve()
    daemon.start_watchers()
    await daemon.start_http()
    await daemon.stopping.wait()
    daemon.close()
    daemon.log("[daemon] exited")
    return 0
