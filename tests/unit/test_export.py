"""corral export kubernetes|compose and corral startup|unstartup systemd."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from corral.core.appspec import HealthConfig
from corral.tools import export
from tests.conftest import ROOT, pid_alive, wait_until, write

WEBAPP = ROOT / "examples" / "webapp" / "ecosystem.toml"
SECRET_VALUE = "s3cr3t-value-never-exported"

FULL = f"""
[[apps]]
name = "api"
script = "app.py"
args = ["--config", "conf/api.toml"]
instances = 3
listen = ["0.0.0.0:8080", "0.0.0.0:9090"]
listen_names = ["web", "admin"]
max_memory_restart = "300M"
kill_timeout = "2500ms"
kill_signal = "SIGTERM"

[apps.env]
LOG_LEVEL = "info"
DATABASE_URL = "postgresql://u:{SECRET_VALUE}@db/x"
API_TOKEN = "{SECRET_VALUE}"

[apps.env_production]
LOG_LEVEL = "warning"
STRIPE_SECRET_KEY = "{SECRET_VALUE}"

[apps.health]
http = "/healthz"
interval = "5s"
timeout = "1500ms"
start_period = "20s"
failure_threshold = 2
success_threshold = 2
liveness = true

[[apps]]
name = "Worker_Queue"
script = "worker.py"
interpreter_args = ["-u"]
kill_timeout = 100

[apps.health]
exec = "./check.sh --quick"

[[apps]]
name = "tcp-svc"
script = "app.py"
port = 7000

[apps.health]
tcp = "127.0.0.1:{{port}}"

[[apps]]
name = "manual"
script = "app.py"
autostart = false
"""


@pytest.fixture
def eco(tmp_path: Path) -> Path:
    folder = tmp_path / "proj"
    write(folder / "app.py", "print('hi')\n")
    write(folder / "worker.py", "print('hi')\n")
    write(folder / "conf" / "api.toml", "")
    return write(folder / "ecosystem.toml", FULL)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = export.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def by_kind(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for d in docs:
        if d["kind"] == kind and d["metadata"]["name"] == name:
            return d
    raise KeyError((kind, name))


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    out: dict[str, Any] = containers[0]
    return out


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def validate(docs: list[dict[str, Any]]) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    version = kv.latest_version()
    for d in docs:
        kv.validate(d, version, strict=True)


# ---------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("DATABASE_URL", True),
        ("SENTRY_DSN", True),
        ("api_token", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("DB_PASSWORD", True),
        ("SMTP_PASSWD", True),
        ("GOOGLE_APPLICATION_CREDENTIALS", True),
        ("PRIVATE_PEM", True),
        ("LOG_LEVEL", False),
        ("PORT", False),
        ("APP_ENV", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert export.is_secret(name) is secret


@pytest.mark.parametrize(
    ("size", "quantity"),
    [(3 * 1024**3, "3Gi"), (300 * 1024**2, "300Mi"), (1536 * 1024**2, "1536Mi"), (1000, "1Mi"), (1024**2 + 1, "2Mi")],
)
def test_memory_quantity(size: int, quantity: str) -> None:
    assert export.memory_quantity(size) == quantity


def test_seconds_round_up_and_at_least_one() -> None:
    assert export.seconds(10_000) == 10
    assert export.seconds(2500) == 3
    assert export.seconds(100) == 1
    assert export.seconds(0) == 1


@pytest.mark.parametrize(("name", "k8s"), [("webapp", "webapp"), ("Worker_Queue", "worker-queue"), ("9lives", "app-9lives"), ("a..b", "a-b")])
def test_k8s_names(name: str, k8s: str) -> None:
    assert export.k8s_name(name) == k8s


# ---------------------------------------------------------------- kubernetes: the web app


def webapp_health() -> dict[str, Any] | None:
    from corral.config.loader import load_ecosystem
    from corral.core.appspec import to_wire

    apps = load_ecosystem(WEBAPP, env_name="production", only=["webapp"]).apps
    health: dict[str, Any] | None = to_wire(next(a for a in apps if a.name == "webapp"))["health"]
    return health


def test_webapp_pods_strategy(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "export", "kubernetes", str(WEBAPP), "--env", "production", "--image", "corral-webapp:1")
    assert code == 0, err
    docs = documents(out)
    validate(docs)
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [("Deployment", "webapp"), ("Service", "webapp")]
    dep = by_kind(docs, "Deployment", "webapp")
    # the one-shot migration runs first, as the pod's init container (depends_on)
    (migrate,) = dep["spec"]["template"]["spec"]["initContainers"]
    assert migrate["name"] == "migrate" and migrate["command"] == ["python", "migrate.py"]
    labels = {"app.kubernetes.io/name": "webapp", "app.kubernetes.io/managed-by": "corral"}
    assert dep["metadata"]["labels"] == labels
    assert dep["spec"]["template"]["metadata"]["labels"] == labels
    assert dep["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "webapp"}
    assert dep["spec"]["replicas"] == 4
    pod = dep["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 10
    c = container(dep)
    assert c["image"] == "corral-webapp:1"
    assert c["workingDir"] == "/app"
    assert c["command"] == ["python", "-X", "faulthandler", "serve.py"]
    assert c["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert c["resources"] == {"limits": {"memory": "3Gi"}}
    env = env_of(c)
    assert env["APP_ENV"] == "production" and env["LOG_LEVEL"] == "info" and env["SHUTDOWN_TIMEOUT"] == "8"
    assert env["HOST"] == "0.0.0.0" and env["PORT"] == "8000"  # serve.py binds them itself without Corral
    assert env["PYTHONUNBUFFERED"] == "1"
    health = webapp_health()
    if health is None:
        assert c["readinessProbe"]["tcpSocket"] == {"port": "http"}  # no health table: a port check
    else:
        assert c["readinessProbe"]["httpGet"] == {"path": health["target"], "port": "http"}
    assert ("livenessProbe" in c) is bool(health and health["liveness"])
    svc = by_kind(docs, "Service", "webapp")
    assert svc["spec"]["selector"] == {"app.kubernetes.io/name": "webapp"}
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    # webapp-dev is autostart = false: like `corral start`, it is left out
    assert "webapp-dev" in out.split("apiVersion")[0]
    assert not any(d["metadata"]["name"] == "webapp-dev" for d in docs)
    # no machine paths leak into the manifests
    assert str(ROOT) not in yaml.safe_dump_all(docs)


def test_webapp_runtime_strategy(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "export", "kubernetes", str(WEBAPP), "--env", "production", "--strategy", "runtime", "--image", "corral-webapp:1")
    assert code == 0, err
    docs = documents(out)
    validate(docs)
    dep = by_kind(docs, "Deployment", "webapp")
    assert dep["spec"]["replicas"] == 1
    c = container(dep)
    assert c["command"] == ["corral-runtime"]
    assert c["args"][:6] == ["/app/ecosystem.toml", "--env", "production", "--only", "webapp", "--json"]
    assert c["args"][6:] == ["--health-port", f"0.0.0.0:{export.HEALTH_PORT}"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8000, "corral": export.HEALTH_PORT}
    assert c["resources"]["limits"]["memory"] == "12Gi"  # 4 instances x 3G in one pod
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 10
    health = webapp_health()
    if health is None:
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "corral"}
    else:
        assert c["readinessProbe"]["httpGet"] == {"path": health["target"], "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "corral"}
    assert by_kind(docs, "Service", "webapp")["spec"]["ports"][0]["port"] == 8000
    # the file listens on loopback: said on stderr and in the manifest
    assert "127.0.0.1:8000" in err and "WARNING" in out


# ---------------------------------------------------------------- kubernetes: every mapping


@pytest.mark.parametrize("strategy", ["pods", "runtime"])
def test_secrets_are_references_never_values(eco: Path, capsys: pytest.CaptureFixture[str], strategy: str) -> None:
    code, out, err = run(capsys, "export", "kubernetes", str(eco), "--env", "production", "--strategy", strategy, "--image", "img")
    assert code == 0, err
    assert SECRET_VALUE not in out and SECRET_VALUE not in err
    docs = documents(out)
    validate(docs)
    env = env_of(container(by_kind(docs, "Deployment", "api")))
    for key in ("DATABASE_URL", "API_TOKEN", "STRIPE_SECRET_KEY"):
        assert env[key] == {"secretKeyRef": {"name": "api-secrets", "key": key}}
    assert env["LOG_LEVEL"] == "warning"  # env_production over env
    # a commented Secret template lists the keys, without values
    template = [line for line in out.splitlines() if line.startswith("#")]
    text = "\n".join(template)
    assert "kind: Secret" in text and "name: api-secrets" in text
    for key in ("DATABASE_URL", "API_TOKEN", "STRIPE_SECRET_KEY"):
        assert f'#   {key}: ""' in text
    assert not any(d["kind"] == "Secret" for d in docs)  # only as a comment


def test_pods_strategy_mappings(eco: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "export", "kubernetes", str(eco), "--image", "img")
    assert code == 0, err
    docs = documents(out)
    validate(docs)
    api = by_kind(docs, "Deployment", "api")
    assert api["spec"]["replicas"] == 3
    assert api["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 3  # 2500ms rounded up
    c = container(api)
    assert c["command"] == ["python", "app.py", "--config", "conf/api.toml"]
    assert c["ports"] == [{"name": "web", "containerPort": 8080, "protocol": "TCP"}, {"name": "admin", "containerPort": 9090, "protocol": "TCP"}]
    assert c["resources"]["limits"]["memory"] == "300Mi"
    timing = {"periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 2}
    assert c["readinessProbe"] == {"httpGet": {"path": "/healthz", "port": "web"}, **timing, "successThreshold": 2}
    # liveness = true: a livenessProbe (successThreshold must be 1), held off by a startupProbe
    assert c["livenessProbe"] == {"httpGet": {"path": "/healthz", "port": "web"}, **timing, "successThreshold": 1}
    assert "&id" not in out and "*id" not in out  # no YAML aliases between the probes
    startup = c["startupProbe"]
    assert startup["successThreshold"] == 1
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 20 + 2 * 5
    svc = by_kind(docs, "Service", "api")
    assert [(p["name"], p["port"]) for p in svc["spec"]["ports"]] == [("web", 8080), ("admin", 9090)]

    worker = by_kind(docs, "Deployment", "worker-queue")
    assert worker["metadata"]["annotations"]["corral/app"] == "Worker_Queue"
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 1  # at least 1
    w = container(worker)
    assert w["command"] == ["python", "-u", "worker.py"]
    assert w["readinessProbe"]["exec"] == {"command": ["./check.sh", "--quick"]}
    assert "livenessProbe" not in w and "ports" not in w and "resources" not in w
    assert "liveness = false" in out  # noted, not silently dropped
    assert not any(d["kind"] == "Service" and d["metadata"]["name"] == "worker-queue" for d in docs)

    tcp = container(by_kind(docs, "Deployment", "tcp-svc"))
    assert tcp["ports"][0]["containerPort"] == 7000
    assert tcp["readinessProbe"]["tcpSocket"] == {"port": "http"}
    assert env_of(tcp)["PORT"] == "7000"

    # autostart = false is left out unless --only names it, then with 0 replicas
    assert not any(d["metadata"]["name"] == "manual" for d in docs)
    code, out, _ = run(capsys, "export", "kubernetes", str(eco), "--only", "manual", "--image", "img")
    assert code == 0
    manual = documents(out)
    validate(manual)
    assert [d["metadata"]["name"] for d in manual] == ["manual"]
    assert manual[0]["spec"]["replicas"] == 0


def test_runtime_strategy_mappings(eco: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "export", "kubernetes", str(eco), "--strategy", "runtime", "--only", "api,Worker_Queue", "--image", "img")
    assert code == 0, err
    docs = documents(out)
    validate(docs)
    c = container(by_kind(docs, "Deployment", "api"))
    assert c["args"] == ["/app/ecosystem.toml", "--only", "api", "--json", "--health-port", f"0.0.0.0:{export.HEALTH_PORT}"]
    assert c["resources"]["limits"]["memory"] == "900Mi"  # 3 instances x 300M
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "web"}  # the app's own check
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "corral"}  # corral-runtime's
    assert "startupProbe" not in c
    w = container(by_kind(docs, "Deployment", "worker-queue"))
    assert w["args"][:3] == ["/app/ecosystem.toml", "--only", "Worker_Queue"]
    assert [p["name"] for p in w["ports"]] == ["corral"]
    assert "DATABASE_URL" in err  # secrets in the file win over the Secret with corral-runtime: warned


PORTS = [("http", "0.0.0.0", 8000), ("admin", "0.0.0.0", 9000)]


@pytest.mark.parametrize(
    ("health", "action"),
    [
        ({"http": "/up"}, {"httpGet": {"path": "/up", "port": "http"}}),
        ({"http": "http://127.0.0.1:{port}/up?deep=1"}, {"httpGet": {"path": "/up?deep=1", "port": "http"}}),
        ({"http": "http://localhost:9000/admin/up"}, {"httpGet": {"path": "/admin/up", "port": "admin"}}),
        ({"http": "http://127.0.0.1:7777/x"}, {"httpGet": {"path": "/x", "port": 7777}}),
        ({"http": "http://status.example:80/x"}, {"httpGet": {"path": "/x", "port": 80, "host": "status.example"}}),
        ({"tcp": "127.0.0.1:{port}"}, {"tcpSocket": {"port": "http"}}),
        ({"tcp": "127.0.0.1:9000"}, {"tcpSocket": {"port": "admin"}}),
        ({"exec": ["curl", "-fs", "http://127.0.0.1:{port}/up"]}, {"exec": {"command": ["curl", "-fs", "http://127.0.0.1:8000/up"]}}),
    ],
)
def test_probe_targets(health: dict[str, Any], action: dict[str, Any], tmp_path: Path) -> None:
    from corral.core.healthspec import parse_health

    spec = parse_health(health)
    assert spec is not None
    got, _ = export.probe_action(msgspec.convert(spec, HealthConfig), PORTS, export.Image(tmp_path), "/app")
    assert got == action


def test_probe_without_a_port_is_an_error(eco: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(eco.parent / "ecosystem.toml", '[[apps]]\nname = "a"\nscript = "app.py"\n[apps.health]\nhttp = "/up"\n')
    code, _, err = run(capsys, "export", "kubernetes", str(eco), "--image", "img")
    assert code == 2 and "no port" in err


def test_instances_max_is_resolved_here(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "app.py", "")
    eco = write(tmp_path / "ecosystem.toml", '[[apps]]\nname = "a"\nscript = "app.py"\ninstances = "max"\n')
    code, out, _ = run(capsys, "export", "kubernetes", str(eco), "--image", "img")
    assert code == 0
    dep = documents(out)[0]
    assert dep["spec"]["replicas"] == (os.cpu_count() or 1)
    assert dep["metadata"]["annotations"]["corral/instances"] == "max"


def test_program_on_path_and_module_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "pkg" / "__init__.py", "")
    # a program of the project's own virtualenv: the image has its own on PATH
    uvicorn = write(tmp_path / ".venv" / "bin" / "uvicorn", "#!/bin/sh\n")
    uvicorn.chmod(0o755)
    write(tmp_path / ".venv" / "pyvenv.cfg", "home = /usr/bin\n")
    eco = write(
        tmp_path / "ecosystem.yaml",
        "apps:\n"
        "  - name: tool\n    script: sh\n    args: ['-c', 'sleep 1']\n"
        "  - name: mod\n    script: pkg.main\n    interpreter_args: ['-m']\n    cwd: pkg\n"
        "  - name: served\n    script: .venv/bin/uvicorn\n    args: app:app --port 8001\n",
    )
    code, out, err = run(capsys, "export", "kubernetes", str(eco), "--image", "img")
    assert code == 0, err
    docs = documents(out)
    validate(docs)
    assert container(by_kind(docs, "Deployment", "tool"))["command"] == ["sh", "-c", "sleep 1"]
    assert container(by_kind(docs, "Deployment", "served"))["command"] == ["uvicorn", "app:app", "--port", "8001"]
    mod = container(by_kind(docs, "Deployment", "mod"))
    assert mod["command"] == ["python", "-m", "pkg.main"]
    assert mod["workingDir"] == "/app/pkg"


def test_output_file_and_default_image(eco: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "k8s.yaml"
    code, out, err = run(capsys, "export", "kubernetes", str(eco), "-o", str(target))
    assert code == 0 and out == ""
    assert "no --image" in err
    docs = documents(target.read_text())
    assert container(by_kind(docs, "Deployment", "api"))["image"] == "proj:latest"


def test_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "export", "kubernetes", str(tmp_path / "missing.toml"))
    assert code == 2 and "file not found" in err
    write(tmp_path / "app.py", "")
    eco = write(tmp_path / "ecosystem.toml", '[[apps]]\nname = "a"\nscript = "app.py"\nautostart = false\n')
    code, _, err = run(capsys, "export", "compose", str(eco))
    assert code == 2 and "nothing to export" in err
    code, _, err = run(capsys, "export", "kubernetes", str(eco), "--only", "nope")
    assert code == 2 and "nope" in err
    with pytest.raises(SystemExit) as exc:
        export.main(["export", "kubernetes", str(eco), "--strategy", "sideways"])
    assert exc.value.code == 2


def test_cli_dispatches_to_export(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "corral", "export", "kubernetes", str(WEBAPP), "--env", "production", "--image", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, CORRAL_HOME=str(tmp_path / "home")),
    )
    assert proc.returncode == 0, proc.stderr
    assert [d["kind"] for d in documents(proc.stdout)] == ["Deployment", "Service"]
    assert not (tmp_path / "home").exists()  # no daemon was started


# ---------------------------------------------------------------- compose


def test_compose_for_the_webapp(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "export", "compose", str(WEBAPP), "--env", "production", "--image", "corral-webapp")
    assert code == 0, err
    data = yaml.safe_load(out)
    assert list(data["services"]) == ["webapp"]
    svc = data["services"]["webapp"]
    assert svc["image"] == "corral-webapp"
    assert svc["entrypoint"] == ["corral-runtime"]
    assert svc["command"] == ["/app/ecosystem.toml", "--env", "production", "--json"]
    assert svc["healthcheck"]["test"] == ["CMD", "corral", "healthcheck"]
    assert svc["healthcheck"]["start_period"] == "20s"  # listen_timeout with wait_ready
    assert svc["stop_grace_period"] == "10s"
    assert svc["ports"] == ["8000:8000"]
    assert svc["environment"]["CORRAL_HOME"] == "/app/.corral"
    assert "127.0.0.1:8000" in err


def test_compose_largest_kill_timeout_and_secrets(eco: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(eco.parent / "ecosystem.toml", FULL.replace('kill_timeout = 100', 'kill_timeout = "95s"'))
    code, out, err = run(capsys, "export", "compose", str(eco), "--env", "production")
    assert code == 0, err
    svc = yaml.safe_load(out)["services"]["proj"]
    assert svc["stop_grace_period"] == "1m35s"
    assert svc["ports"] == ["8080:8080", "9090:9090", "7000:7000"]
    assert svc["command"] == ["/app/ecosystem.toml", "--env", "production", "--json"]
    assert SECRET_VALUE not in out and SECRET_VALUE not in err
    assert "DATABASE_URL" in err
    assert "manual" in out.split("services:")[0]  # autostart = false: said in the header


# ---------------------------------------------------------------- systemd


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as {section: {key: [values]}} (keys may repeat, like Environment=)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=value: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def me() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def test_systemd_unit_structure(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUDO_USER", raising=False)
    home = tmp_path / "corral home"
    code, out, err = run(capsys, "startup", "systemd", "--home", str(home), "--service-name", "corral-test")
    assert code == 0, err
    unit = parse_unit(out)
    assert set(unit) == {"Unit", "Service", "Install"}
    svc = {k: v[-1] for k, v in unit["Service"].items()}
    assert svc["Type"] == "forking"
    assert svc["User"] == me()
    assert svc["PIDFile"] == f'"{home}/corral.pid"'  # quoted: the path has a space
    assert f'"CORRAL_HOME={home}"' in unit["Service"]["Environment"]
    assert svc["KillMode"] == "control-group"
    assert svc["Restart"] == "on-failure"
    program = export.corral_program()
    assert os.path.isabs(program[0]) and os.access(program[0], os.X_OK)
    commands = {k: svc[k] for k in ("ExecStart", "ExecStartPost", "ExecReload", "ExecStop")}
    assert commands == {
        "ExecStart": f"{program[0]} ping",
        "ExecStartPost": f"-{program[0]} resurrect",
        "ExecReload": f"{program[0]} reload all",
        "ExecStop": f"{program[0]} kill",
    }
    for value in commands.values():
        assert value.lstrip("-").startswith("/")
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert "--install" in err


def test_systemd_unit_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd); the structure is checked above")
    monkeypatch.delenv("SUDO_USER", raising=False)
    unit = tmp_path / "corral-verify.service"
    code, _, err = run(capsys, "startup", "systemd", "--home", str(tmp_path / "home"), "-o", str(unit))
    assert code == 0, err
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 and "Failed to" in proc.stderr and "corral-verify" not in proc.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    problems = [line for line in (proc.stdout + proc.stderr).splitlines() if "corral-verify" in line]
    assert problems == []  # no unknown keys, no missing executables


def test_startup_install_without_systemd(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "systemd_running", lambda: False)
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(export, "systemctl", lambda *a: calls.append(a))
    code, out, err = run(capsys, "startup", "--install", "--unit-dir", str(tmp_path), "--home", str(tmp_path / "h"))
    assert code == 0, err
    unit = tmp_path / "corral.service"
    assert parse_unit(unit.read_text())["Service"]["Type"] == ["forking"]
    assert oct(unit.stat().st_mode & 0o777) == "0o644"
    assert calls == []
    assert "systemctl daemon-reload && systemctl enable corral" in err
    assert out == ""


def test_startup_install_and_unstartup_with_systemd(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "systemd_running", lambda: True)
    calls: list[tuple[str, ...]] = []

    def fake_systemctl(*args: str) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        return subprocess.CompletedProcess(["systemctl", *args], 0, "", "")

    monkeypatch.setattr(export, "systemctl", fake_systemctl)
    code, _, err = run(capsys, "startup", "systemd", "--install", "--unit-dir", str(tmp_path), "--service-name", "corral-app", "--home", str(tmp_path / "h"))
    assert code == 0, err
    assert (tmp_path / "corral-app.service").is_file()
    assert calls == [("daemon-reload",), ("enable", "corral-app")]
    assert "corral save" in err

    calls.clear()
    code, _, err = run(capsys, "unstartup", "systemd", "--unit-dir", str(tmp_path), "--service-name", "corral-app")
    assert code == 0, err
    assert not (tmp_path / "corral-app.service").exists()
    assert calls == [("disable", "corral-app"), ("daemon-reload",)]
    code, _, err = run(capsys, "unstartup", "--unit-dir", str(tmp_path), "--service-name", "corral-app")
    assert code == 1 and "nothing to remove" in err


def test_startup_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run(capsys, "startup", "--user", "no-such-user-here")
    assert code == 2 and "no-such-user-here" in err
    code, _, err = run(capsys, "startup", "--service-name", "bad/name")
    assert code == 2
    monkeypatch.setattr(export, "systemd_running", lambda: True)
    monkeypatch.setattr(export, "systemctl", lambda *a: subprocess.CompletedProcess(["systemctl", *a], 1, "", "Access denied"))
    code, _, err = run(capsys, "startup", "--install", "--unit-dir", str(tmp_path), "--home", str(tmp_path / "h"))
    assert code == 1 and "Access denied" in err


def test_startup_user_defaults(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.delenv("SUDO_USER", raising=False)
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "mine"))
    code, out, _ = run(capsys, "startup")
    assert code == 0
    assert f"CORRAL_HOME={tmp_path / 'mine'}" in parse_unit(out)["Service"]["Environment"]
    if os.getuid() == 0:
        # under sudo, the unit is for the user who ran sudo, with that user's home
        monkeypatch.setenv("SUDO_USER", "nobody")
        code, out, _ = run(capsys, "startup")
        import pwd

        service = parse_unit(out)["Service"]
        assert service["User"] == ["nobody"]
        assert f"CORRAL_HOME={pwd.getpwnam('nobody').pw_dir}/.corral" in service["Environment"]


def test_systemd_sequence_without_systemd(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """What systemd does with the unit, done by hand: ExecStart, PIDFile, ExecStartPost, ExecReload, ExecStop."""
    monkeypatch.delenv("SUDO_USER", raising=False)
    home = tmp_path / "home"
    code, out, _ = run(capsys, "startup", "--home", str(home))
    assert code == 0
    service = parse_unit(out)["Service"]
    env = dict(os.environ)
    for assignment in service["Environment"]:
        key, _, value = shlex_one(assignment).partition("=")
        env[key] = value
    assert env["CORRAL_HOME"] == str(home)
    pid_file = Path(shlex_one(service["PIDFile"][0]))

    def exec_line(key: str) -> subprocess.CompletedProcess[str]:
        line = service[key][0]
        return subprocess.run(shlex.split(line.lstrip("-")), env=env, capture_output=True, text=True, timeout=60, cwd="/")

    started = exec_line("ExecStart")
    try:
        assert started.returncode == 0, started.stderr
        # Type=forking: once ExecStart has exited, the PIDFile names the daemon it left running
        pid = int(pid_file.read_text())
        assert pid_alive(pid)
        # nothing saved yet: resurrect fails, which the '-' prefix tells systemd to accept
        post = exec_line("ExecStartPost")
        assert post.returncode != 0 and "nothing to resurrect" in post.stderr
        assert service["ExecStartPost"][0].startswith("-")
        assert pid_alive(pid)
        assert exec_line("ExecReload").returncode in (0, 1)  # no apps: nothing to reload
        stopped = exec_line("ExecStop")
        assert stopped.returncode == 0, stopped.stderr
        # systemd, too, waits for the main process to exit after ExecStop
        wait_until(lambda: not pid_alive(pid), timeout=15, message="the daemon exits")
        assert not pid_file.exists()
    finally:
        subprocess.run([sys.executable, "-m", "corral", "kill"], env=env, capture_output=True, timeout=60)


def shlex_one(value: str) -> str:
    words = shlex.split(value)
    assert len(words) == 1, value
    return words[0]
