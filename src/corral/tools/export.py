"""``corral export`` and ``corral startup``: an ecosystem file for other supervisors.

* ``corral export kubernetes <ecosystem>``: Deployments (and Services) in one of
  two strategies. ``pods`` (default): Kubernetes is the supervisor, each pod
  runs one instance of the app's own command, ``replicas`` = ``instances``.
  ``runtime``: one pod per app runs ``corral-runtime`` with the app's N
  instances inside (cluster-mode socket sharing, zero-downtime reload, Corral's
  restart policy and probes), one replica.
* ``corral export compose <ecosystem>``: a compose file with one service that
  runs ``corral-runtime`` for the ecosystem, with ``corral healthcheck``.
* ``corral startup systemd``: a unit that runs the daemon at boot and
  resurrects the saved process list; ``corral unstartup systemd`` removes it.

Nothing here talks to the daemon: the exporters only load the ecosystem file.
Variables that look secret are never written out, only their names.
"""

from __future__ import annotations

import argparse
import math
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from corral.config.keys import resolve_instances
from corral.config.loader import load_ecosystem
from corral.core.appkind import is_secret
from corral.core.appspec import AppSpec, HealthConfig
from corral.core.deps import (
    Graph,
    condition_timeout,
    is_one_shot,
    start_levels,
    with_dependencies,
)
from corral.core.deps import validate as validate_dependencies
from corral.core.errors import ConfigError

APP_DIR = "/app"  # where the image holds the ecosystem file's folder
HEALTH_PORT = 9615  # corral-runtime --health-port in the runtime strategy
ANNOTATION = "corral/"
MANAGED_BY = {"app.kubernetes.io/managed-by": "corral"}
LOOPBACK = ("127.", "localhost", "[::1]", "::1")
MI = 1024**2
GI = 1024**3


class ExportError(Exception):
    """A usage problem: printed as one line, exit code 2."""


# ---------------------------------------------------------------- small helpers


def memory_quantity(size: int) -> str:
    """Bytes as a Kubernetes quantity: whole Gi when exact, else Mi rounded up."""
    if size % GI == 0:
        return f"{size // GI}Gi"
    return f"{math.ceil(size / MI)}Mi"


def seconds(ms: int | float, minimum: int = 1) -> int:
    """Milliseconds as whole seconds, rounded up, at least ``minimum``."""
    return max(minimum, math.ceil(ms / 1000))


def k8s_name(name: str) -> str:
    """An app name as a DNS-1035 label (what Service names need): lowercase, a-z0-9-, a letter first."""
    out = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    out = re.sub(r"-{2,}", "-", out)
    if not out or not out[0].isalpha():
        out = "app-" + out
    return out[:63].rstrip("-")


def port_name(name: str, index: int) -> str:
    """A container port name (IANA_SVC_NAME: 15 characters, a-z0-9-, one letter at least)."""
    base = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:15].strip("-")
    if not base or not re.search(r"[a-z]", base) or "--" in base:
        base = "http" if index == 0 else f"port-{index + 1}"
    return base


def tcp_ports(app: AppSpec) -> list[tuple[str, str, int]]:
    """(name, host, port) of the app's TCP listen addresses, then of ``port`` if it adds one."""
    out: list[tuple[str, str, int]] = []
    names = app.listen_names or []
    for i, address in enumerate(app.listen or []):
        if address.startswith("unix:"):
            continue
        host, _, port = address.rpartition(":")
        n = int(port)
        if n == 0 or any(p == n for _, _, p in out):
            continue
        name = port_name(names[i], i) if i < len(names) else port_name("", len(out))
        if any(existing == name for existing, _, _ in out):
            name = port_name("", len(out))
        out.append((name, host.strip("[]"), n))
    if app.port and not any(p == app.port for _, _, p in out):
        out.append((port_name("", len(out)), "0.0.0.0", int(app.port)))
    return out


def is_loopback(host: str) -> bool:
    return host.startswith(LOOPBACK)


def comment(lines: Iterable[str]) -> str:
    return "".join(f"# {line}".rstrip() + "\n" for line in lines)


def dump_yaml(data: Any) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True  # a probe shared by readiness and liveness is written out twice, not as &id001

    return str(yaml.dump(data, Dumper=Dumper, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True))


@dataclass
class Loaded:
    path: Path
    apps: list[AppSpec]
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    graph: Graph = field(default_factory=lambda: Graph(order=(), needs={}))
    added: list[str] = field(default_factory=list)  # not asked for, but needed by an app that was


def load(path_text: str, env_name: str | None, only: str | None) -> Loaded:
    path = Path(path_text).expanduser()
    wanted = [n.strip() for n in only.split(",") if n.strip()] if only else None
    # here=False: paths of the machine the file is for are warnings ("not on this machine")
    result = load_ecosystem(path, env_name=env_name, here=False)
    warnings = list(result.warnings)
    graph = validate_dependencies(result.apps, file=str(path.resolve()))
    names = [a.name for a in result.apps]
    if wanted:
        missing = [n for n in wanted if n not in names]
        if missing:
            raise ConfigError(
                f"--only names {'an app' if len(missing) == 1 else 'apps'} not in the file: {', '.join(missing)} (the file has: {', '.join(names)})",
                file=str(path.resolve()),
            )
    loaded = Loaded(path=path.resolve(), apps=[], warnings=warnings, graph=graph)
    chosen: list[str] = []
    for app in result.apps:
        # like `corral start`: an autostart = false app is only registered, so it is
        # exported only when --only names it
        if wanted is not None and app.name not in wanted:
            continue
        if not app.autostart and not wanted:
            loaded.skipped.append(app.name)
            continue
        chosen.append(app.name)
    # what the chosen apps need comes along (as `corral start` starts it first)
    needed = with_dependencies(graph, chosen)
    loaded.added = [n for n in needed if n not in chosen]
    loaded.skipped = [n for n in loaded.skipped if n not in needed]
    loaded.apps = [a for a in result.apps if a.name in needed]
    if not loaded.apps:
        raise ExportError(f"{path}: nothing to export (autostart = false: {', '.join(loaded.skipped)}; name apps with --only)")
    return loaded


# ---------------------------------------------------------------- paths in the image


@dataclass
class Image:
    """Maps this machine's paths (resolved by the loader) to the image's ``/app`` layout."""

    root: Path  # the ecosystem file's folder: /app in the image
    notes: list[str] = field(default_factory=list)

    def inside(self, path: str) -> str | None:
        """The image path of a file under the ecosystem's folder, else None."""
        try:
            rel = Path(os.path.normpath(path)).relative_to(self.root)
        except ValueError:
            return None
        return APP_DIR if str(rel) == "." else f"{APP_DIR}/{rel.as_posix()}"

    def workdir(self, app: AppSpec) -> str:
        mapped = self.inside(app.cwd)
        if mapped is None:
            self.notes.append(f"cwd {app.cwd} is outside the ecosystem's folder: the pod runs in {APP_DIR}")
            return APP_DIR
        return mapped

    def relative(self, path: str, workdir: str) -> str:
        """A path for the command line: relative to the working directory when it is below it."""
        mapped = self.inside(path)
        if mapped is None:
            return path
        if mapped.startswith(workdir + "/"):
            return mapped[len(workdir) + 1 :]
        return mapped

    def argv(self, app: AppSpec, workdir: str) -> list[str]:
        """The app's command in the image: interpreter by name, files relative to /app."""
        interpreter = app.interpreter or "none"
        interp_args = list(app.interpreter_args or [])
        module_mode = bool(interp_args) and interp_args[-1] == "-m"
        argv: list[str] = []
        if interpreter != "none":
            argv.append(os.path.basename(interpreter))  # the image's own, on PATH
            argv.extend(interp_args)
        script = app.script
        if module_mode:
            argv.append(script)
        elif interpreter == "none" and in_virtualenv_bin(script):
            argv.append(os.path.basename(script))  # uvicorn from a local .venv: the image's own
        elif self.inside(script) is not None:
            argv.append(self.relative(script, workdir))
        elif interpreter == "none" and os.path.isabs(script):
            argv.append(os.path.basename(script))  # a program found on PATH here: on PATH there
        else:
            self.notes.append(f"script {script} is outside the ecosystem's folder: it must exist at that path in the image")
            argv.append(script)
        argv.extend(self.relative(a, workdir) if os.path.isabs(a) else a for a in app.args or [])
        return argv


def in_virtualenv_bin(path: str) -> bool:
    """Is this a program of a virtualenv (``.venv/bin/uvicorn``)? The image installs its own."""
    folder = Path(path).parent
    return folder.name == "bin" and (folder.parent / "pyvenv.cfg").is_file()


def looks_like_python(app: AppSpec) -> bool:
    interpreter = os.path.basename(app.interpreter or "")
    return interpreter.startswith("python") or app.script.endswith(".py")


# ---------------------------------------------------------------- kubernetes


def probe_action(health: HealthConfig, ports: list[tuple[str, str, int]], image: Image, workdir: str) -> tuple[dict[str, Any], list[str]]:
    """The probe's handler (httpGet / tcpSocket / exec) for a health table; notes on what changed."""
    notes: list[str] = []
    kind, target = health.kind, health.target
    first: str | int | None = ports[0][0] if ports else None
    first_number = ports[0][2] if ports else None

    def port_of(text: str) -> str | int | None:
        if text in ("{port}", ""):
            return first
        if text.isdigit():
            n = int(text)
            for name, _, number in ports:
                if number == n:
                    return name
            return n
        return first

    if kind == "exec":
        argv = [image.relative(a, workdir) if os.path.isabs(a) else a for a in target]
        if first_number is not None:
            argv = [a.replace("{port}", str(first_number)) for a in argv]
        return {"exec": {"command": argv}}, notes
    text = str(target).replace("{listen}", "127.0.0.1:{port}")
    if kind == "tcp":
        host, _, port = text.rpartition(":")
        tcp: dict[str, Any] = {"port": port_of(port)}
        if tcp["port"] is None:
            raise ExportError(f"the tcp health probe {target!r} has no port, and the app listens on none")
        if host and "{" not in host and not is_loopback(host) and host not in ("0.0.0.0", "[::]", "*"):
            tcp["host"] = host
        return {"tcpSocket": tcp}, notes
    if text.startswith("http://"):
        parts = urlsplit(text.replace("{port}", "PORTPLACEHOLDER"))
        netloc_port = parts.netloc.rpartition(":")[2] if ":" in parts.netloc else "80"
        host = parts.hostname or ""
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        http: dict[str, Any] = {"path": path, "port": port_of("{port}" if netloc_port == "PORTPLACEHOLDER" else netloc_port)}
        if host and host != "portplaceholder" and not is_loopback(host) and host != "0.0.0.0":
            http["host"] = host
        if is_loopback(host):
            notes.append(f"the probe URL {target} names a loopback host: the kubelet probes the pod's IP")
    else:
        http = {"path": text, "port": first}
    if http["port"] is None:
        raise ExportError(f"the http health probe {target!r} has no port, and the app listens on none")
    return {"httpGet": http}, notes


def timing(health: HealthConfig) -> dict[str, int]:
    return {
        "periodSeconds": seconds(health.interval),
        "timeoutSeconds": seconds(health.timeout),
        "failureThreshold": int(health.failure_threshold),
        "successThreshold": int(health.success_threshold),
    }


def app_probes(app: AppSpec, ports: list[tuple[str, str, int]], image: Image, workdir: str, strategy: str, notes: list[str]) -> dict[str, Any]:
    """readinessProbe / livenessProbe / startupProbe for one container."""
    out: dict[str, Any] = {}
    health = app.health
    if health:
        action, more = probe_action(health, ports, image, workdir)
        notes.extend(more)
        t = timing(health)
        out["readinessProbe"] = {**action, **t}
        if strategy == "pods":
            if health.liveness:
                out["livenessProbe"] = {**action, **t, "successThreshold": 1}
                if health.start_period:
                    # liveness waits for the first success; the start may fail for start_period
                    period = t["periodSeconds"]
                    out["startupProbe"] = {**action, **t, "successThreshold": 1, "failureThreshold": math.ceil(health.start_period / 1000 / period) + t["failureThreshold"]}
            else:
                notes.append("health.liveness = false: readiness only, no livenessProbe (set liveness = true to restart the pod after failure_threshold failures)")
                if health.start_period:
                    notes.append("health.start_period applies to liveness only: there is no startupProbe without it")
        else:
            notes.append(
                "the app's health probe is the readinessProbe; corral-runtime runs it too"
                + (" and restarts the one failing instance (health.liveness = true)" if health.liveness else "")
                + "; the livenessProbe is corral-runtime's /healthz"
            )
    elif strategy == "pods" and ports:
        out["readinessProbe"] = {"tcpSocket": {"port": ports[0][0]}, "periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 3, "successThreshold": 1}
        notes.append("no health table: the readinessProbe only connects to the port (add [apps.health] http = \"/path\" for a real check)")
    elif strategy == "pods":
        notes.append("no health table and no port: no probes")
    if strategy == "runtime":
        if not health:
            # every instance online (READY=1 with wait_ready), and probes healthy: corral's aggregate
            out["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": "corral"}, "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 3, "successThreshold": 1}
            notes.append("no health table: the readinessProbe is corral-runtime's /readyz (every instance online)")
        # 503 once an instance is errored (its restarts used up): restart the pod then
        out["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": "corral"}, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3, "successThreshold": 1}
    return out


def env_entries(app: AppSpec, secret_name: str, extra: dict[str, str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Container env: plain values, and secretKeyRef for names that look secret (never their values)."""
    entries: list[dict[str, Any]] = []
    secrets: list[str] = []
    merged = dict(app.env)
    for k, v in extra.items():
        merged.setdefault(k, v)
    for name, value in merged.items():
        if is_secret(name):
            secrets.append(name)
            entries.append({"name": name, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": name}}})
        else:
            entries.append({"name": name, "value": str(value)})
    return entries, secrets


def secret_template(secret_name: str, keys: list[str]) -> list[str]:
    lines = [
        f"Secret {secret_name}: the values are not exported. Create it, e.g.",
        f"  kubectl create secret generic {secret_name} " + " ".join(f"--from-literal={k}=..." for k in keys),
        "or apply this template with the values filled in:",
        "---",
        "apiVersion: v1",
        "kind: Secret",
        "metadata:",
        f"  name: {secret_name}",
        "type: Opaque",
        "stringData:",
    ]
    lines.extend(f'  {k}: ""' for k in keys)
    return lines


def kubernetes_docs(loaded: Loaded, *, strategy: str, image_name: str, env_name: str | None) -> tuple[list[tuple[list[str], dict[str, Any]]], list[str]]:
    """(comment lines, manifest) pairs, and the warnings for stderr."""
    docs: list[tuple[list[str], dict[str, Any]]] = []
    warnings: list[str] = []
    deployments: dict[str, tuple[list[str], dict[str, Any]]] = {}
    cpus = os.cpu_count() or 1
    for app in loaded.apps:
        image = Image(loaded.path.parent)
        name = k8s_name(app.name)
        notes: list[str] = []
        if name != app.name:
            notes.append(f"Kubernetes name {name!r} for app {app.name!r}")
        labels = {"app.kubernetes.io/name": name, **MANAGED_BY}
        annotations: dict[str, str] = {f"{ANNOTATION}app": app.name, f"{ANNOTATION}strategy": strategy}
        ports = tcp_ports(app)
        workdir = APP_DIR if strategy == "runtime" else image.workdir(app)
        instances = resolve_instances(app.instances, cpus)
        if isinstance(app.instances, str) or app.instances < 0:
            notes.append(f"instances = {app.instances!r} resolved on this machine ({cpus} CPUs) to {instances}")
        for _, host, port in ports:
            if is_loopback(host) and strategy == "runtime":
                warnings.append(f"app '{app.name}' listens on {host}:{port}: in a pod nothing else reaches it (not the Service, not the kubelet's probes); the image's ecosystem must listen on 0.0.0.0:{port}")
        extra_env: dict[str, str] = {}
        container: dict[str, Any] = {"name": name, "image": image_name, "workingDir": workdir}
        if strategy == "pods":
            replicas = instances if app.autostart else 0
            container["command"] = image.argv(app, workdir)
            if looks_like_python(app):
                extra_env["PYTHONUNBUFFERED"] = "1"  # what Corral gives Python apps
            if ports:
                # no shared socket without Corral: the app binds the port itself, on every interface
                extra_env["HOST"] = "0.0.0.0"
                extra_env["PORT"] = str(ports[0][2])
                if app.listen:
                    annotations[f"{ANNOTATION}listen"] = ", ".join(app.listen)
                    notes.append(f"listen = {', '.join(app.listen)}: without Corral's shared socket the app must bind 0.0.0.0:$PORT itself (HOST and PORT are set unless env sets them)")
                if app.env.get("HOST", "0.0.0.0") != "0.0.0.0" and is_loopback(app.env["HOST"]):
                    warnings.append(f"app '{app.name}' sets HOST={app.env['HOST']}: in a pod nothing else reaches it")
            if app.exec_mode == "cluster" or instances > 1:
                notes.append(f"{instances} instance(s): one per pod (replicas), each its own process; no shared socket, no rolling reload inside a pod")
            if app.kill_signal != "SIGTERM":
                notes.append(f"kill_signal = {app.kill_signal}: Kubernetes stops containers with SIGTERM")
            if app.increment_var:
                notes.append(f"increment_var = {app.increment_var} has no counterpart: every pod gets the same value")
            if not app.autostart:
                notes.append("autostart = false: replicas 0 (scale it up to start it)")
        else:
            replicas = 1
            ecosystem = f"{APP_DIR}/{loaded.path.name}"
            args = [ecosystem]
            if env_name:
                args += ["--env", env_name]
            args += ["--only", app.name, "--json", "--health-port", f"0.0.0.0:{HEALTH_PORT}"]
            container["command"] = ["corral-runtime"]
            container["args"] = args
            notes.append(f"{instances} instance(s) inside one pod, supervised by corral-runtime (restarts, shared socket, reload: kubectl exec ... corral reload {app.name})")
            if not app.autostart:
                warnings.append(f"app '{app.name}' has autostart = false: corral-runtime registers it without starting it")
        annotations[f"{ANNOTATION}instances"] = str(app.instances)
        secret_name = f"{name}-secrets"
        env, secrets = env_entries(app, secret_name, extra_env)
        if strategy == "runtime" and secrets:
            warnings.append(
                f"app '{app.name}': {', '.join(secrets)} set in the ecosystem file: corral-runtime applies the file's value over the Secret's; "
                "keep secrets out of the file and in the Secret"
            )
        if env:
            container["env"] = env
        container_ports = [{"name": pname, "containerPort": port, "protocol": "TCP"} for pname, _, port in ports]
        if strategy == "runtime":
            container_ports.append({"name": "corral", "containerPort": HEALTH_PORT, "protocol": "TCP"})
        if container_ports:
            container["ports"] = container_ports
        if app.max_memory_restart:
            per_instance = int(app.max_memory_restart)
            total = per_instance * (instances if strategy == "runtime" else 1)
            container["resources"] = {"limits": {"memory": memory_quantity(total)}}
            annotations[f"{ANNOTATION}max-memory-restart"] = memory_quantity(per_instance)
            if strategy == "runtime" and instances > 1:
                notes.append(f"memory limit = {instances} x max_memory_restart ({memory_quantity(per_instance)}); Corral restarts one instance that passes its own")
            else:
                notes.append("max_memory_restart is the pod's memory limit: passing it means an OOM kill and a container restart")
        container.update(app_probes(app, ports, image, workdir, strategy, notes))
        notes.extend(image.notes)
        deployment: dict[str, Any] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": dict(labels), "annotations": annotations},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {
                        "terminationGracePeriodSeconds": seconds(app.kill_timeout),
                        "containers": [container],
                    },
                },
            },
        }
        head = [f"{app.name}: Deployment ({strategy} strategy)"] + [f"- {n}" for n in notes]
        if secrets:
            head += [""] + secret_template(secret_name, secrets)
        docs.append((head, deployment))
        deployments[app.name] = (head, deployment)
        if ports:
            service = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "labels": dict(labels)},
                "spec": {
                    "selector": {"app.kubernetes.io/name": name},
                    "ports": [{"name": pname, "port": port, "targetPort": pname, "protocol": "TCP"} for pname, _, port in ports],
                },
            }
            docs.append(([f"{app.name}: Service"], service))
    consumed = add_dependency_containers(loaded, deployments, image_name)
    docs = [(head, body) for head, body in docs if body.get("metadata", {}).get("annotations", {}).get(f"{ANNOTATION}app") not in consumed]
    for app in loaded.apps:
        if is_one_shot(app) and app.name in deployments and app.name not in consumed:
            as_job(*deployments[app.name])
    return docs, warnings


def as_job(head: list[str], deployment: dict[str, Any]) -> None:
    """A one-shot app (autorestart = false) that nothing depends on: a Job, run once."""
    spec = deployment["spec"]
    template = spec["template"]
    template["spec"]["restartPolicy"] = "Never"
    for c in template["spec"]["containers"]:
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            c.pop(probe, None)
    deployment["apiVersion"] = "batch/v1"
    deployment["kind"] = "Job"
    deployment["spec"] = {"backoffLimit": 0, "template": template}
    head[0] = head[0].replace("Deployment", "Job")
    head.append("- autorestart = false: a Job that runs once (backoffLimit 0)")


# Run by a `wait-<app>` init container: connect to a dependency's Service until it
# answers (a Service routes only to ready pods), at most the dependency's own timeout.
WAIT_SNIPPET = (
    "import socket,sys,time\n"
    "host,port,limit=sys.argv[1],int(sys.argv[2]),float(sys.argv[3])\n"
    "end=time.monotonic()+limit\n"
    "while True:\n"
    "    try:\n"
    "        socket.create_connection((host,port),2).close();break\n"
    "    except OSError as e:\n"
    "        if time.monotonic()>end: sys.exit(f'{host}:{port} not ready within {limit:g}s: {e}')\n"
    "        time.sleep(1)\n"
)


def dependency_container(app: AppSpec, loaded: Loaded, image_name: str, notes: list[str], *, sidecar: bool) -> dict[str, Any]:
    """A dependency as a container of its dependent's pod, running the app's own command."""
    image = Image(loaded.path.parent)
    workdir = image.workdir(app)
    extra = {"PYTHONUNBUFFERED": "1"} if looks_like_python(app) else {}
    ports = tcp_ports(app)
    env, secrets = env_entries(app, f"{k8s_name(app.name)}-secrets", extra)
    c: dict[str, Any] = {"name": k8s_name(app.name), "image": image_name, "workingDir": workdir, "command": image.argv(app, workdir)}
    if env:
        c["env"] = env
    if secrets:
        notes.append(f"{app.name}: {', '.join(secrets)} come from the Secret {k8s_name(app.name)}-secrets (create it as for any app)")
    if sidecar:
        c["restartPolicy"] = "Always"
        probes = app_probes(app, ports, image, workdir, "pods", [])
        c.update(probes)
        if "readinessProbe" in probes and "startupProbe" not in probes:
            # the kubelet starts the next container once a sidecar's startupProbe passes
            c["startupProbe"] = {**probes["readinessProbe"], "successThreshold": 1}
    notes.extend(image.notes)
    return c


def add_dependency_containers(loaded: Loaded, deployments: dict[str, tuple[list[str], dict[str, Any]]], image_name: str) -> set[str]:
    """Map ``depends_on`` into the dependents' pods; returns the apps that no longer get
    their own Deployment. One-shot dependencies become init containers (the pod starts
    once they exit 0); long-running ones without a port become native sidecars (init
    containers with ``restartPolicy: Always``: started first, probes carried over, stopped
    after the app); long-running ones with a port stay their own Deployment and Service,
    and the pod waits for them with a ``wait-<name>`` init container."""
    by_name = {a.name: a for a in loaded.apps}
    consumed: set[str] = set()
    keep: set[str] = set()
    for app in loaded.apps:
        needs = loaded.graph.needs.get(app.name, ())
        if not needs or app.name not in deployments:
            continue
        head, deployment = deployments[app.name]
        if deployment["metadata"]["annotations"].get(f"{ANNOTATION}strategy") == "runtime":
            # corral-runtime --only <app> starts what the app depends on first, in its pod
            names = [d.name for d in needs if d.name in by_name]
            head.append(f"- depends_on {', '.join(names)}: corral-runtime runs them in this pod first, in order")
            consumed.update(names)
            continue
        pod = deployment["spec"]["template"]["spec"]
        inits: list[dict[str, Any]] = []
        notes: list[str] = []
        order = {n: i for i, n in enumerate(n for level in start_levels(loaded.graph) for n in level)}
        for d in sorted(needs, key=lambda d: order.get(d.name, 0)):
            dep = by_name.get(d.name)
            if dep is None:
                continue
            ports = tcp_ports(dep)
            if is_one_shot(dep):
                inits.append(dependency_container(dep, loaded, image_name, notes, sidecar=False))
                notes.append(f"depends_on {d.name} ({d.condition}): an init container; the app starts once it exits 0")
                consumed.add(d.name)
            elif not ports:
                inits.append(dependency_container(dep, loaded, image_name, notes, sidecar=True))
                notes.append(f"depends_on {d.name} ({d.condition}): a native sidecar (restartPolicy: Always), started before the app and stopped after it")
                consumed.add(d.name)
            else:
                limit = condition_timeout(dep, d.condition) or 300.0
                inits.append({
                    "name": f"wait-{k8s_name(d.name)}"[:63],
                    "image": image_name,
                    "command": ["python", "-c", WAIT_SNIPPET, k8s_name(d.name), str(ports[0][2]), f"{max(limit, 60.0):g}"],
                })
                notes.append(f"depends_on {d.name} ({d.condition}): its own Deployment and Service; an init container waits until the Service answers")
                keep.add(d.name)
        if inits:
            pod["initContainers"] = inits
            head.extend(f"- {n}" for n in notes)
    return consumed - keep


def render_docs(header: list[str], docs: list[tuple[list[str], dict[str, Any]]]) -> str:
    parts = []
    for i, (notes, body) in enumerate(docs):
        text = comment(header) + "\n" if i == 0 else ""
        parts.append(text + comment(notes) + dump_yaml(body))
    return "---\n".join(parts)


def default_image(path: Path) -> str:
    return f"{k8s_name(path.parent.name)}:latest"


def export_kubernetes(ns: argparse.Namespace) -> str:
    loaded = load(ns.ecosystem, ns.env, ns.only)
    image_name = ns.image or default_image(loaded.path)
    docs, warnings = kubernetes_docs(loaded, strategy=ns.strategy, image_name=image_name, env_name=ns.env)
    for w in loaded.warnings + warnings:
        warn(w)
    if not ns.image:
        warn(f"no --image: using {image_name!r}")
    header = [
        f"Generated by: corral export kubernetes {shlex.join(ns.raw_args)}",
        f"From {loaded.path.name}{f' (env_{ns.env})' if ns.env else ''}, strategy {ns.strategy}, image {image_name}.",
        f"The image holds the ecosystem's folder in {APP_DIR} (see examples/webapp/Dockerfile).",
    ]
    if loaded.skipped:
        header.append(f"Not exported (autostart = false; name them with --only): {', '.join(loaded.skipped)}")
    header += [f"WARNING: {w}" for w in warnings]
    return render_docs(header, docs)


# ---------------------------------------------------------------- compose


def compose_duration(ms: int | float) -> str:
    s = seconds(ms)
    minutes, rest = divmod(s, 60)
    return f"{minutes}m{rest}s" if minutes and rest else f"{minutes}m" if minutes else f"{s}s"


COMPOSE_CONDITIONS = {
    "started": "service_started",
    "healthy": "service_healthy",
    "completed": "service_completed_successfully",
    "completed_successfully": "service_completed_successfully",
}


def compose_probe(app: AppSpec, ports: list[tuple[str, str, int]], image: Image, workdir: str) -> list[str] | None:
    """A compose healthcheck ``test`` for the app's health table, run inside its container."""
    health = app.health
    if not health:
        return None
    kind, target = health.kind, health.target
    port = str(ports[0][2]) if ports else ""
    if kind == "exec":
        return ["CMD", *[(image.relative(a, workdir) if os.path.isabs(a) else a).replace("{port}", port) for a in target]]
    text = str(target).replace("{listen}", "127.0.0.1:{port}").replace("{port}", port)
    if kind == "tcp":
        host, _, p = text.rpartition(":")
        host = "127.0.0.1" if not host or host in ("0.0.0.0", "*", "[::]") else host
        return ["CMD", "python", "-c", f"import socket; socket.create_connection(({host!r}, {int(p or 0)}), {seconds(health.timeout)}).close()"]
    url = text if text.startswith("http") else f"http://127.0.0.1:{port}{text}"
    return ["CMD", "python", "-c", f"import urllib.request; urllib.request.urlopen({url!r}, timeout={seconds(health.timeout)})"]


def compose_services(loaded: Loaded, image_name: str) -> tuple[dict[str, Any], list[str], list[str]]:
    """One compose service per app running its own command (compose is the supervisor),
    ``depends_on`` mapped to compose's conditions. Returns (services, notes, warnings)."""
    services: dict[str, Any] = {}
    notes: list[str] = []
    warnings: list[str] = []
    by_name = {a.name: a for a in loaded.apps}
    cpus = os.cpu_count() or 1
    for app in loaded.apps:
        image = Image(loaded.path.parent)
        workdir = image.workdir(app)
        ports = tcp_ports(app)
        env = {k: str(v) for k, v in app.env.items() if not is_secret(k)}
        secrets = [k for k in app.env if is_secret(k)]
        if looks_like_python(app):
            env.setdefault("PYTHONUNBUFFERED", "1")
        svc: dict[str, Any] = {"image": image_name, "working_dir": workdir, "command": image.argv(app, workdir)}
        if ports:
            env.setdefault("HOST", "0.0.0.0")
            env.setdefault("PORT", str(ports[0][2]))
            svc["ports"] = [f"{p}:{p}" for _, _, p in ports]
        if env:
            svc["environment"] = env
        if secrets:
            warnings.append(f"app '{app.name}': {', '.join(secrets)} not written; pass them from the environment or an env file")
        test = compose_probe(app, ports, image, workdir)
        if test:
            h = app.health
            svc["healthcheck"] = {
                "test": test,
                "interval": compose_duration(h.interval),
                "timeout": compose_duration(h.timeout),
                "retries": int(h.failure_threshold),
                "start_period": compose_duration(h.start_period or 0),
            }
        needs: dict[str, Any] = {}
        for d in loaded.graph.needs.get(app.name, ()):
            dep = by_name.get(d.name)
            if dep is None:
                continue
            condition = COMPOSE_CONDITIONS.get(d.condition)
            if d.condition == "ready":
                condition = "service_healthy" if dep.health else "service_started"
                if dep.wait_ready and not dep.health:
                    notes.append(f"{app.name} depends_on {d.name} (ready): compose has no READY=1, so it waits for the start only; give {d.name} a health table for service_healthy")
            if d.condition == "completed":
                notes.append(f"{app.name} depends_on {d.name} (completed): compose only has service_completed_successfully (exit 0)")
            needs[k8s_name(d.name)] = {"condition": condition}
        if needs:
            svc["depends_on"] = needs
        svc["stop_signal"] = app.kill_signal
        svc["stop_grace_period"] = compose_duration(app.kill_timeout)
        svc["restart"] = "no" if is_one_shot(app) else "unless-stopped"
        instances = resolve_instances(app.instances, cpus)
        if instances > 1:
            if ports:
                notes.append(f"{app.name}: {instances} instances need Corral's shared socket; one container here (publish one port per replica, or use the runtime strategy)")
            else:
                svc["deploy"] = {"replicas": instances}
        notes.extend(image.notes)
        services[k8s_name(app.name)] = svc
    return services, notes, warnings


def export_compose(ns: argparse.Namespace) -> str:
    loaded = load(ns.ecosystem, ns.env, ns.only)
    image_name = ns.image or default_image(loaded.path)
    if getattr(ns, "strategy", "runtime") == "services":
        services, notes, warnings = compose_services(loaded, image_name)
        for w in loaded.warnings + warnings:
            warn(w)
        header = [
            f"Generated by: corral export compose {shlex.join(ns.raw_args)}",
            f"One service per app of {loaded.path.name}, each running its own command; compose supervises them.",
            "depends_on carries the ecosystem's start order (service_started / service_healthy / service_completed_successfully).",
        ]
        if loaded.added:
            header.append(f"Added because other apps depend on them: {', '.join(loaded.added)}")
        header += [f"- {n}" for n in dict.fromkeys(notes)]
        header += [f"WARNING: {w}" for w in warnings]
        return comment(header) + dump_yaml({"services": services})
    warnings = []
    command = [f"{APP_DIR}/{loaded.path.name}"]
    if ns.env:
        command += ["--env", ns.env]
    if ns.only:
        command += ["--only", ",".join(a.name for a in loaded.apps)]
    command.append("--json")
    ports: list[str] = []
    secrets: list[str] = []
    for app in loaded.apps:
        for _, host, port in tcp_ports(app):
            if is_loopback(host):
                warnings.append(f"app '{app.name}' listens on {host}:{port}: a published port reaches only 0.0.0.0 in the container; the image's ecosystem must listen on 0.0.0.0:{port}")
            mapping = f"{port}:{port}"
            if mapping not in ports:
                ports.append(mapping)
        secrets.extend(k for k in app.env if is_secret(k) and k not in secrets)
    for k in secrets:
        warnings.append(f"{k} is set in the ecosystem file: corral-runtime applies the file's value over the container's environment; keep secrets out of the file")
    kill = max(a.kill_timeout for a in loaded.apps)
    start = 0
    for a in loaded.apps:
        if a.wait_ready:
            start = max(start, a.listen_timeout)
        if a.health:
            start = max(start, a.health.start_period + a.health.interval)
    service: dict[str, Any] = {
        "image": image_name,
        "working_dir": APP_DIR,
        "entrypoint": ["corral-runtime"],
        "command": command,
        "environment": {"CORRAL_HOME": f"{APP_DIR}/.corral"},
        "healthcheck": {
            "test": ["CMD", "corral", "healthcheck"],
            "interval": "10s",
            "timeout": "5s",
            "retries": 3,
            "start_period": compose_duration(max(start, 10_000)),
        },
        "stop_signal": "SIGTERM",
        # corral-runtime stops every app in parallel, each within its kill_timeout
        "stop_grace_period": compose_duration(kill),
        "restart": "unless-stopped",
    }
    if ports:
        service["ports"] = ports
    name = k8s_name(loaded.path.parent.name)
    for w in loaded.warnings + warnings:
        warn(w)
    header = [
        f"Generated by: corral export compose {shlex.join(ns.raw_args)}",
        f"One service runs corral-runtime for {loaded.path.name}: {', '.join(a.name for a in loaded.apps)}.",
        "The image holds the ecosystem's folder in /app; `docker compose exec "
        + name
        + " corral ls` shows the processes.",
    ]
    if loaded.skipped:
        header.append(f"Not started (autostart = false): {', '.join(loaded.skipped)}")
    header += [f"WARNING: {w}" for w in warnings]
    if secrets:
        header.append(f"Pass secrets from the environment or an env file, e.g. environment: {{{secrets[0]}: ${{{secrets[0]}}}}}")
    return comment(header) + dump_yaml({"services": {name: service}})


# ---------------------------------------------------------------- systemd

UNIT_DIR = "/etc/systemd/system"


def export_systemd(ns: argparse.Namespace) -> int:
    from corral.tools.export_systemd import systemd_units

    loaded = load(ns.ecosystem, ns.env, ns.only)
    files, notes = systemd_units(loaded.apps, loaded.graph, source=loaded.path.name)
    for w in loaded.warnings:
        warn(w)
    header = [
        f"Generated by: corral export systemd {shlex.join(ns.raw_args)}",
        f"From {loaded.path.name}{f' (env_{ns.env})' if ns.env else ''}: install into {UNIT_DIR}, then systemctl daemon-reload",
        "and systemctl enable --now each .socket, .target and .service that has an [Install] section.",
    ]
    if loaded.added:
        header.append(f"Added because other apps depend on them: {', '.join(loaded.added)}")
    if loaded.skipped:
        header.append(f"Not exported (autostart = false; name them with --only): {', '.join(loaded.skipped)}")
    header += [f"- {n}" for n in dict.fromkeys(notes)]
    if ns.output and ns.output != "-":
        folder = Path(ns.output)
        folder.mkdir(parents=True, exist_ok=True)
        for fname, text in files.items():
            (folder / fname).write_text(comment(header[:1]) + text)
        say(f"wrote {len(files)} unit file(s) into {folder}: {', '.join(files)}")
        for n in dict.fromkeys(notes):
            say(n)
        return 0
    out = [comment(header)]
    for fname, text in files.items():
        out.append(f"\n### {fname}\n{text}")
    sys.stdout.write("".join(out))
    return 0


def corral_program() -> list[str]:
    """The absolute command that runs this Corral: its console script, else ``python -m corral``."""
    candidate = Path(sys.executable).parent / "corral"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return [str(candidate)]
    found = shutil.which("corral")
    if found:
        return [os.path.abspath(found)]
    return [os.path.abspath(sys.executable), "-m", "corral"]


def systemd_quote(word: str) -> str:
    if word and not re.search(r"[\s\"'\\;$%]", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$") + '"'


def invoking_user() -> str:
    """The user to run the daemon as: the one behind sudo, else the current one."""
    sudo_user = os.environ.get("SUDO_USER")
    if os.getuid() == 0 and sudo_user and sudo_user != "root":
        return sudo_user
    return pwd.getpwuid(os.getuid()).pw_name


def systemd_unit(*, user: str, home: str, service_name: str, program: list[str] | None = None) -> str:
    program = program or corral_program()
    cmd = " ".join(systemd_quote(w) for w in program)
    bin_dir = os.path.dirname(program[0])
    path = ":".join(dict.fromkeys([bin_dir, "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]))
    pid_file = os.path.join(home, "corral.pid")
    return f"""\
# {service_name}.service: the Corral daemon for user {user}, started at boot.
# Generated by `corral startup systemd`; remove with `corral unstartup systemd`.
#
# Type=forking: `corral ping` starts the daemon, which detaches (its own session)
# and writes {pid_file}; systemd follows it from there. (Type=notify would need
# the process systemd started to stay in the foreground: the CLI exits instead.)
# ExecStartPost brings back the list saved by `corral save`; the leading '-' keeps
# the unit up when nothing was saved yet. Stopping runs `corral kill` (every app
# stopped with its kill_signal and kill_timeout); what is left of the cgroup after
# that is killed by systemd (KillMode=control-group), so a restarted daemon never
# finds the old apps still holding their ports.

[Unit]
Description=Corral process manager ({user})
After=network-online.target
Wants=network-online.target

[Service]
Type=forking
User={user}
Environment={systemd_quote("CORRAL_HOME=" + home)}
Environment={systemd_quote("PATH=" + path)}
PIDFile={systemd_quote(pid_file)}
ExecStart={cmd} ping
ExecStartPost=-{cmd} resurrect
ExecReload={cmd} reload all
ExecStop={cmd} kill
KillMode=control-group
Restart=on-failure
RestartSec=2
TimeoutStartSec=120
TimeoutStopSec=120
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
"""


def systemd_running() -> bool:
    """sd_booted(3): is this machine running systemd (so systemctl can act)?"""
    return os.path.isdir("/run/systemd/system") and shutil.which("systemctl") is not None


def systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=60)


def resolve_user_home(ns: argparse.Namespace) -> tuple[str, str]:
    user = ns.user or invoking_user()
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ExportError(f"no user named {user!r} on this machine")
    if ns.home:
        home = os.path.abspath(os.path.expanduser(ns.home))
    elif user == pwd.getpwuid(os.getuid()).pw_name and os.environ.get("CORRAL_HOME"):
        home = os.path.abspath(os.environ["CORRAL_HOME"])
    else:
        home = os.path.join(entry.pw_dir, ".corral")
    return user, home


def check_service_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9:_.\\-]+", name) or name.endswith(".service"):
        raise ExportError(f"{name!r} is not a service name (letters, digits, ':', '_', '.', '-'; without .service)")
    return name


def cmd_startup(ns: argparse.Namespace) -> int:
    name = check_service_name(ns.service_name)
    user, home = resolve_user_home(ns)
    text = systemd_unit(user=user, home=home, service_name=name)
    if not ns.install:
        write_output(text, ns.output)
        if not ns.output:
            say(f"to install it: sudo {shlex.join(corral_program())} startup systemd --user {user} --install")
        return 0
    if ns.output:
        write_output(text, ns.output)
    unit_path = Path(ns.unit_dir) / f"{name}.service"
    try:
        unit_path.parent.mkdir(parents=True, exist_ok=True)
        unit_path.write_text(text)
        os.chmod(unit_path, 0o644)
    except PermissionError:
        raise ExportError(f"cannot write {unit_path}: run it as root (sudo {shlex.join(corral_program())} startup systemd --user {user} --install)")
    say(f"wrote {unit_path}")
    if not systemd_running():
        say("systemd is not running here (no /run/systemd/system, or no systemctl): nothing enabled.")
        say(f"on a machine that boots with systemd: systemctl daemon-reload && systemctl enable {name}")
        return 0
    for args in (("daemon-reload",), ("enable", name)):
        result = systemctl(*args)
        if result.returncode != 0:
            say(f"systemctl {' '.join(args)} failed ({result.returncode}): {(result.stderr or result.stdout).strip()}")
            return 1
    say(f"enabled {name}: the daemon starts at boot and resurrects what `corral save` saved.")
    say(f"save the list now: corral save. To hand a running daemon over to systemd: corral save && corral kill && systemctl start {name}")
    return 0


def cmd_unstartup(ns: argparse.Namespace) -> int:
    name = check_service_name(ns.service_name)
    unit_path = Path(ns.unit_dir) / f"{name}.service"
    if not unit_path.exists():
        say(f"no {unit_path}: nothing to remove")
        return 1
    running = systemd_running()
    if running:
        result = systemctl("disable", name)
        if result.returncode != 0:
            say(f"systemctl disable {name} failed ({result.returncode}): {(result.stderr or result.stdout).strip()}")
            return 1
    try:
        unit_path.unlink()
    except PermissionError:
        raise ExportError(f"cannot remove {unit_path}: run it as root")
    say(f"removed {unit_path}")
    if running:
        systemctl("daemon-reload")
        say(f"disabled {name}; a daemon it started keeps running until `corral kill`")
    return 0


# ---------------------------------------------------------------- command line


def warn(message: str) -> None:
    sys.stderr.write(f"corral: warning: {message}\n")


def say(message: str) -> None:
    sys.stderr.write(f"[corral] {message}\n")


def write_output(text: str, output: str | None) -> int:
    if output and output != "-":
        Path(output).write_text(text)
        say(f"wrote {output}")
    else:
        sys.stdout.write(text)
    return 0


def build_parser(command: str) -> argparse.ArgumentParser:
    if command == "export":
        p = argparse.ArgumentParser(prog="corral export", description="Write Kubernetes manifests or a compose file for an ecosystem file.")
        sub = p.add_subparsers(dest="target", metavar="kubernetes|compose|systemd", required=True)
        k = sub.add_parser("kubernetes", aliases=["k8s"], help="Deployments and Services")
        k.add_argument("ecosystem", help="ecosystem file")
        k.add_argument("--env", help="use env_<NAME> from the file")
        k.add_argument("--only", help="only these apps (comma separated)")
        k.add_argument("--image", help="container image (default: <folder name>:latest)")
        k.add_argument("--strategy", choices=("pods", "runtime"), default="pods", help="pods: one instance per pod, replicas = instances (default); runtime: corral-runtime runs the N instances in one pod")
        k.add_argument("-o", "--output", help="write to FILE (default: stdout)")
        k.set_defaults(func=lambda ns: write_output(export_kubernetes(ns), ns.output))
        c = sub.add_parser("compose", aliases=["docker-compose"], help="a compose file running corral-runtime")
        c.add_argument("ecosystem", help="ecosystem file")
        c.add_argument("--env", help="use env_<NAME> from the file")
        c.add_argument("--only", help="only these apps (comma separated)")
        c.add_argument("--image", help="container image (default: <folder name>:latest)")
        c.add_argument("--strategy", choices=("runtime", "services"), default="runtime", help="runtime: one service running corral-runtime for every app, in dependency order (default); services: one service per app, depends_on mapped to compose's conditions")
        c.add_argument("-o", "--output", help="write to FILE (default: stdout)")
        c.set_defaults(func=lambda ns: write_output(export_compose(ns), ns.output))
        d = sub.add_parser("systemd", help="systemd units: one per app, .socket units, order from depends_on")
        d.add_argument("ecosystem", help="ecosystem file")
        d.add_argument("--env", help="use env_<NAME> from the file")
        d.add_argument("--only", help="only these apps (comma separated), and what they depend on")
        d.add_argument("-o", "--output", help="write the unit files into this folder (default: all to stdout)")
        d.set_defaults(func=export_systemd)
        return p
    install = command == "startup"
    p = argparse.ArgumentParser(prog=f"corral {command}", description="Install a systemd unit that runs the Corral daemon at boot." if install else "Remove the systemd unit.")
    p.add_argument("platform", nargs="?", default="systemd", choices=("systemd",), help="init system (systemd)")
    p.add_argument("--service-name", default="corral", help="unit name without .service (default: corral)")
    p.add_argument("--unit-dir", default=UNIT_DIR, help=f"where units are installed (default: {UNIT_DIR})")
    if install:
        p.add_argument("--user", help="run the daemon as this user (default: you, or $SUDO_USER under sudo)")
        p.add_argument("--home", help="its CORRAL_HOME (default: ~USER/.corral, or $CORRAL_HOME for yourself)")
        p.add_argument("-o", "--output", help="write the unit to FILE (default: stdout)")
        p.add_argument("--install", action="store_true", help="write it to the unit folder and enable it (as root)")
        p.set_defaults(func=cmd_startup)
    else:
        p.set_defaults(func=cmd_unstartup)
    return p


def main(argv: list[str] | None = None) -> int:
    """``corral export|startup|unstartup ...``: argv starts with the command word."""
    from corral.core.errors import CorralError, report

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("export", "startup", "unstartup"):
        args = ["export", *args]
    command, rest = args[0], args[1:]
    parser = build_parser(command)
    ns = parser.parse_args(rest)
    ns.raw_args = rest[1:] if command == "export" else rest
    func: Callable[[argparse.Namespace], int] = ns.func
    try:
        return int(func(ns))
    except ExportError as e:
        sys.stderr.write(f"corral: error: {e}\n")
        return 2
    except CorralError as e:
        return report(e)
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
