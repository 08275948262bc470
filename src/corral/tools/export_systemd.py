"""``corral export systemd <ecosystem>``: the apps as systemd units, for machines whose
services are handed to the OS rather than to a Corral daemon.

* one ``<name>.service`` per app; with several instances a template
  ``<name>@.service`` (``%i`` is the instance number) and a ``<name>.target`` that
  starts instances 0..N-1;
* ``Type=notify`` + ``NotifyAccess=main`` where ``wait_ready`` is set (the same
  sd_notify READY=1 the apps send Corral), ``TimeoutStartSec`` from ``listen_timeout``,
  ``WatchdogSec`` from ``watchdog_sec``; one-shot apps (``autorestart = false``) as
  ``Type=oneshot`` with ``RemainAfterExit=yes``;
* a ``.socket`` unit per ``listen`` address (systemd's socket activation: the same
  LISTEN_FDS / LISTEN_FDNAMES protocol), shared by every instance through ``Sockets=``;
* ``Requires=``/``Wants=`` and ``After=`` from ``depends_on``;
* restart policy, ``KillSignal``/``TimeoutStopSec``, ``MemoryMax``/``CPUQuota``, and
  log files through ``StandardOutput=append:`` (Corral's default paths: the journal).

Pure text generation; :func:`systemd_units` returns ``{file name: text}``.
"""

from __future__ import annotations

import os

from corral.config.keys import resolve_instances
from corral.config.loader import build_argv
from corral.core.appspec import AppSpec
from corral.core.deps import COMPLETED, HEALTHY, Graph, is_one_shot


def quote_word(word: str) -> str:
    """One word of an Exec line: quoted when needed, % and $ escaped (systemd.service(5))."""
    escaped = word.replace("%", "%%").replace("$", "$$")
    if escaped and not any(c in escaped for c in " \t\n\"'\\;"):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_assignment(text: str) -> str:
    """A value of Environment= (quoted as a whole; % escaped, no $ expansion there)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%") + '"'


def unit_name(name: str) -> str:
    """An app name as a unit name: systemd-escape's rules for the characters it refuses."""
    out = []
    for ch in name:
        if ch.isalnum() or ch in ":_.-":
            out.append(ch)
        else:
            out.append("".join(f"\\x{b:02x}" for b in ch.encode()))
    return "".join(out)


def listen_unit_names(app: AppSpec) -> list[tuple[str, str, str]]:
    """(socket unit, fd name, address) per listen address."""
    names = list(app.listen_names or [])
    base = unit_name(app.name)
    listen = list(app.listen or [])
    out = []
    for i, address in enumerate(listen):
        fd_name = names[i] if i < len(names) else ("http" if i == 0 else f"sock{i}")
        unit = f"{base}.socket" if len(listen) == 1 else f"{base}-{unit_name(fd_name)}.socket"
        out.append((unit, fd_name, address))
    return out


def app_unit(app: AppSpec, instances: int) -> str:
    """What other units name to depend on the app: its service, or its target."""
    base = unit_name(app.name)
    return f"{base}.target" if instances > 1 else f"{base}.service"


def seconds_text(ms: int | float) -> str:
    s = ms / 1000
    return f"{s:g}s"


def systemd_units(apps: list[AppSpec], graph: Graph, *, source: str, cpus: int | None = None) -> tuple[dict[str, str], list[str]]:
    """Unit files for ``apps``; returns ({file name: text}, notes)."""
    cpus = cpus or os.cpu_count() or 1
    by_name = {a.name: a for a in apps}
    count = {a.name: resolve_instances(a.instances, cpus) for a in apps}
    files: dict[str, str] = {}
    notes: list[str] = []
    for app in apps:
        name = app.name
        base = unit_name(name)
        n = count[name]
        template = n > 1
        one_shot = is_one_shot(app)
        unit_lines = [f"Description={name} (from {source}, exported by Corral)"]
        requires: list[str] = []
        wants: list[str] = []
        after: list[str] = ["network.target"]
        for d in graph.needs.get(name, ()):
            dep = by_name.get(d.name)
            if dep is None:
                notes.append(f"{name} depends_on {d.name}, which is not exported: no unit to order after")
                continue
            target = app_unit(dep, count[d.name])
            (wants if d.condition == COMPLETED else requires).append(target)
            after.append(target)
            if d.condition == HEALTHY:
                notes.append(f"{name} depends_on {d.name} (healthy): systemd has no health probes; it waits for {d.name} to be started (READY=1 with wait_ready)")
        sockets = listen_unit_names(app)
        for unit, _, _ in sockets:
            requires.append(unit)
            after.append(unit)
        if requires:
            unit_lines.append("Requires=" + " ".join(dict.fromkeys(requires)))
        if wants:
            unit_lines.append("Wants=" + " ".join(dict.fromkeys(wants)))
        unit_lines.append("After=" + " ".join(dict.fromkeys(after)))
        if template:
            unit_lines.append(f"PartOf={base}.target")
        svc: list[str] = []
        if one_shot:
            svc += ["Type=oneshot", "RemainAfterExit=yes"]
        elif app.wait_ready:
            svc += ["Type=notify", "NotifyAccess=main", f"TimeoutStartSec={seconds_text(app.listen_timeout)}"]
        else:
            svc.append("Type=exec")
        if app.watchdog_sec:
            if one_shot:
                notes.append(f"{name}: watchdog_sec is ignored for a one-shot unit")
            else:
                svc.append(f"WatchdogSec={seconds_text(app.watchdog_sec)}")
                if not app.wait_ready:
                    svc.append("NotifyAccess=main")
        svc.append(f"WorkingDirectory={quote_word(app.cwd)}")
        svc.append("ExecStart=" + " ".join(quote_word(w) for w in build_argv(app)))
        env = dict(app.env or {})
        if app.interpreter and os.path.basename(str(app.interpreter)).startswith("python"):
            env.setdefault("PYTHONUNBUFFERED", "1")
        from corral.core.appkind import is_secret

        secrets = [k for k in env if is_secret(k)]
        for k, v in env.items():
            if k not in secrets:
                svc.append("Environment=" + quote_assignment(f"{k}={v}"))
        if template:
            svc.append("Environment=" + quote_assignment(f"{app.instance_var or 'NODE_APP_INSTANCE'}=") [:-1] + '%i"')
            svc.append("Environment=CORRAL_INSTANCE=%i")
            if app.increment_var:
                notes.append(f"{name}: increment_var = {app.increment_var} has no systemd counterpart: every instance gets the same value")
        if secrets:
            svc.append(f"# {', '.join(secrets)}: values not exported; put them in /etc/corral/{base}.env (mode 0600)")
            svc.append(f"EnvironmentFile=-/etc/corral/{base}.env")
        if app.uid is not None:
            svc.append(f"User={app.uid}")
        if app.gid is not None:
            svc.append(f"Group={app.gid}")
        if sockets:
            svc.append("Sockets=" + " ".join(u for u, _, _ in sockets))
        if one_shot:
            svc.append("Restart=no")
        else:
            svc.append("Restart=always")
            delay = app.exp_backoff_restart_delay or app.restart_delay or 100
            svc.append(f"RestartSec={seconds_text(delay)}")
            if app.exp_backoff_restart_delay:
                notes.append(f"{name}: exponential backoff is approximated by a fixed RestartSec (systemd 254+ has RestartSteps=)")
            codes = app.stop_exit_codes or []
            if codes:
                svc.append("RestartPreventExitStatus=" + " ".join(str(c) for c in codes))
        svc.append(f"KillSignal={app.kill_signal}")
        svc.append("KillMode=mixed")  # the signal to the main process, SIGKILL to the whole tree after the grace period
        svc.append(f"TimeoutStopSec={seconds_text(app.kill_timeout)}")
        if app.memory_max:
            svc.append(f"MemoryMax={int(app.memory_max)}")
        if app.max_memory_restart:
            notes.append(f"{name}: max_memory_restart has no systemd counterpart (a restart on a soft limit); use memory_max (MemoryMax=) for a hard one")
        if app.cpu_max:
            svc.append(f"CPUQuota={round(float(app.cpu_max) * 100)}%")
        for value, stream in ((app.out_file, "StandardOutput"), (app.error_file, "StandardError")):
            if value and value != "default":
                path = value.replace("%", "%%")
                if template and not app.merge_logs:
                    root, ext = os.path.splitext(path)
                    path = f"{root}-%i{ext}"
                svc.append(f"{stream}=append:{path}")
            elif value == "default":
                svc.append(f"{stream}=journal")
        if app.cron_restart:
            notes.append(f"{name}: cron_restart is not exported (a systemd timer running `systemctl restart` would do it)")
        if app.watch:
            notes.append(f"{name}: watch is not exported (a .path unit could do it)")
        start_limit = max(1, int(app.max_restarts))
        unit_lines.append(f"StartLimitIntervalSec={max(10, int(start_limit * app.min_uptime / 1000) + 10)}s")
        unit_lines.append(f"StartLimitBurst={start_limit + 1}")
        text = "[Unit]\n" + "\n".join(unit_lines) + "\n\n[Service]\n" + "\n".join(svc) + "\n"
        if template:
            files[f"{base}@.service"] = text
            members = " ".join(f"{base}@{i}.service" for i in range(n))
            files[f"{base}.target"] = (
                f"[Unit]\nDescription={name}: {n} instances (from {source}, exported by Corral)\n"
                f"Wants={members}\nAfter={members}\n\n[Install]\nWantedBy=multi-user.target\n"
            )
        else:
            files[f"{base}.service"] = text + "\n[Install]\nWantedBy=multi-user.target\n"
        for unit, fd_name, address in sockets:
            listen = address[len("unix:"):] if address.startswith("unix:") else address
            if listen.startswith("0.0.0.0:"):
                listen = listen[len("0.0.0.0:"):]  # every IPv4 and IPv6 address, as Corral's 0.0.0.0
            sock = [
                "[Unit]",
                f"Description={name}: listen {address} (from {source}, exported by Corral)",
                "",
                "[Socket]",
                f"ListenStream={listen}",
                f"FileDescriptorName={fd_name}",
                f"Backlog={int(app.backlog)}",
            ]
            if address.startswith("unix:"):
                sock.append("RemoveOnStop=yes")
            sock.append(f"Service={base}@0.service" if template else f"Service={base}.service")
            sock += ["", "[Install]", "WantedBy=sockets.target", ""]
            files[unit] = "\n".join(sock)
        if app.health:
            notes.append(f"{name}: health probes are not exported (systemd has none); watchdog_sec is its liveness check")
    return files, notes
