"""depends_on in the exports: compose conditions, Kubernetes init containers and native
sidecars (validated with kubernetes-validate), and `export systemd` (checked with
systemd-analyze verify)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from corral.tools import export
from tests.conftest import write

ECO = """
[[apps]]
name = "migrate"
script = "migrate.py"
autorestart = false

[[apps]]
name = "db"
script = "db.py"
port = 5433
[apps.health]
tcp = "127.0.0.1:{port}"
interval = "2s"
start_period = "4s"

[[apps]]
name = "shipper"
script = "shipper.py"
wait_ready = true

[[apps]]
name = "web"
script = "web.py"
instances = 2
exec_mode = "cluster"
listen = "0.0.0.0:8080"
wait_ready = true
listen_timeout = "15s"
watchdog_sec = "10s"
memory_max = "256M"
kill_signal = "SIGTERM"
kill_timeout = "8s"
out_file = "logs/web-out.log"
depends_on = { migrate = "completed_successfully", db = "healthy", shipper = "started" }
[apps.health]
http = "/health"

[[apps]]
name = "report"
script = "report.py"
autorestart = false
"""


@pytest.fixture
def eco(tmp_path: Path) -> Path:
    folder = tmp_path / "proj"
    for f in ("migrate.py", "db.py", "shipper.py", "web.py", "report.py"):
        write(folder / f, "print('hi')\n")
    return write(folder / "ecosystem.toml", ECO)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = export.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def docs_of(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    for d in docs:
        if d["kind"] == kind and d["metadata"]["name"] == name:
            return d
    return None


# ---------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("old", "new", "app", "message"),
    [
        ('script = "shipper.py"', 'script = "shipper.py"\ndepends_on = ["web"]', "shipper", "dependency cycle: shipper -> web -> shipper"),
        ('shipper = "started"', 'shipper = "healthy"', "web", "'shipper' can never be healthy: it has no health probe"),
        ('migrate = "completed_successfully"', 'migrate = "completed_successfully", nope = "ready"', "web", "no app named 'nope'"),
        ('migrate = "completed_successfully"', 'migrate = "finished"', "web", "unknown condition 'finished'"),
    ],
)
def test_bad_dependencies_exit_2_naming_file_app_and_key(eco: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, app: str, message: str) -> None:
    write(eco, ECO.replace(old, new, 1))
    for target in ("kubernetes", "compose", "systemd"):
        code, out, err = run(capsys, "export", target, str(eco))
        assert code == 2, err
        assert out == ""
        assert f"{eco}: app '{app}': key 'depends_on': {message}" in err
        assert "Traceback" not in err


# ---------------------------------------------------------------- kubernetes


def validate(docs: list[dict[str, Any]]) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    version = kv.latest_version()
    for d in docs:
        kv.validate(d, version, strict=True)


def test_kubernetes_init_containers_and_sidecars(eco: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "export", "kubernetes", str(eco), "--image", "acme:1")
    assert code == 0, err
    docs = docs_of(out)
    validate(docs)
    # consumed into the web pod: no Deployment of their own
    assert find(docs, "Deployment", "migrate") is None and find(docs, "Deployment", "shipper") is None
    # the database has a port: its own Deployment and Service, waited for
    assert find(docs, "Deployment", "db") is not None and find(docs, "Service", "db") is not None
    web = find(docs, "Deployment", "web")
    assert web is not None
    inits = web["spec"]["template"]["spec"]["initContainers"]
    assert [c["name"] for c in inits] == ["migrate", "wait-db", "shipper"]
    migrate, wait_db, shipper = inits
    assert migrate["command"] == ["python", "migrate.py"] and "restartPolicy" not in migrate
    assert not any(k.endswith("Probe") for k in migrate)
    assert wait_db["command"][:2] == ["python", "-c"] and wait_db["command"][3:5] == ["db", "5433"]
    assert shipper["restartPolicy"] == "Always"
    # a lone one-shot is a Job
    job = find(docs, "Job", "report")
    assert job is not None and job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert "init container" in out and "native sidecar" in out


def test_kubernetes_runtime_strategy_runs_dependencies_in_the_pod(eco: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "export", "kubernetes", str(eco), "--image", "acme:1", "--strategy", "runtime")
    assert code == 0, err
    docs = docs_of(out)
    validate(docs)
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"} == {"web"}
    assert find(docs, "Job", "report") is not None  # corral-runtime exits 0 once its one-shot did
    web = find(docs, "Deployment", "web")
    assert web is not None and "initContainers" not in web["spec"]["template"]["spec"]
    assert "corral-runtime runs them in this pod first" in out


def test_the_wait_snippet_waits_for_a_port_and_gives_up(tmp_path: Path) -> None:
    import socket
    import sys

    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        ok = subprocess.run([sys.executable, "-c", export.WAIT_SNIPPET, "127.0.0.1", str(port), "5"], capture_output=True, timeout=30)
        assert ok.returncode == 0
    bad = subprocess.run([sys.executable, "-c", export.WAIT_SNIPPET, "127.0.0.1", str(port), "0.5"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "not ready within 0.5s" in bad.stderr


# ---------------------------------------------------------------- compose


def test_compose_services_map_conditions(eco: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "export", "compose", str(eco), "--strategy", "services", "--only", "web")
    assert code == 0, err
    services = yaml.safe_load(out)["services"]
    assert list(services) == ["migrate", "db", "shipper", "web"]  # --only web brings what it needs
    assert services["web"]["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "db": {"condition": "service_healthy"},
        "shipper": {"condition": "service_started"},
    }
    assert services["migrate"]["restart"] == "no" and services["web"]["restart"] == "unless-stopped"
    assert services["db"]["healthcheck"]["test"][:3] == ["CMD", "python", "-c"]
    assert services["db"]["healthcheck"]["start_period"] == "4s"
    assert "Added because other apps depend on them: migrate, db, shipper" in out


def test_compose_runtime_strategy_is_unchanged(eco: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "export", "compose", str(eco))
    assert code == 0, err
    assert list(yaml.safe_load(out)["services"]) == ["proj"]


# ---------------------------------------------------------------- systemd


def test_systemd_units(eco: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    units = tmp_path / "units"
    code, _, err = run(capsys, "export", "systemd", str(eco), "-o", str(units))
    assert code == 0, err
    names = sorted(p.name for p in units.iterdir())
    assert names == ["db.service", "migrate.service", "report.service", "shipper.service", "web.socket", "web.target", "web@.service"]
    web = (units / "web@.service").read_text()
    lines = set(web.splitlines())
    assert "Requires=migrate.service db.service shipper.service web.socket" in lines
    assert "After=network.target migrate.service db.service shipper.service web.socket" in lines
    assert {"Type=notify", "NotifyAccess=main", "TimeoutStartSec=15s", "WatchdogSec=10s", "MemoryMax=268435456",
            "KillSignal=SIGTERM", "TimeoutStopSec=8s", "Restart=always", "Sockets=web.socket", "Environment=CORRAL_INSTANCE=%i"} <= lines
    assert f"StandardOutput=append:{eco.parent}/logs/web-out-%i.log" in lines
    migrate = (units / "migrate.service").read_text().splitlines()
    assert {"Type=oneshot", "RemainAfterExit=yes", "Restart=no"} <= set(migrate)
    sock = (units / "web.socket").read_text().splitlines()
    assert {"ListenStream=8080", "FileDescriptorName=http", "Service=web@0.service"} <= set(sock)
    target = (units / "web.target").read_text()
    assert "Wants=web@0.service web@1.service" in target
    assert "health probes" in err  # what systemd cannot carry is said


def test_systemd_units_verify(eco: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    units = tmp_path / "units"
    code, _, err = run(capsys, "export", "systemd", str(eco), "-o", str(units))
    assert code == 0, err
    names = [p.name.replace("@.", "@0.") for p in units.iterdir()]
    proc = subprocess.run([analyze, "verify", *names], cwd=units, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 and "Failed to" in proc.stderr and not any(n.split("@")[0].split(".")[0] in proc.stderr for n in names):
        pytest.skip(f"systemd-analyze cannot run here: {proc.stderr.strip()[:200]}")
    problems = [line for line in (proc.stdout + proc.stderr).splitlines() if str(units) in line or any(n in line for n in names)]
    assert proc.returncode == 0 and problems == [], proc.stderr
    # and it does catch a broken unit: the check cannot pass vacuously
    (units / "migrate.service").write_text((units / "migrate.service").read_text().replace("Type=oneshot", "Type=oneshot\nBogusKey=1"))
    bad = subprocess.run([analyze, "verify", "migrate.service"], cwd=units, capture_output=True, text=True, timeout=60)
    assert "BogusKey" in bad.stderr


def test_systemd_to_stdout(eco: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "export", "systemd", str(eco), "--only", "migrate")
    assert code == 0, err
    assert "### migrate.service" in out and "### web" not in out


COMPOSE_SCHEMA = Path(__file__).resolve().parent.parent / "fixtures" / "compose" / "compose_spec.json"


@pytest.mark.parametrize("strategy", ["services", "runtime"])
def test_compose_exports_validate_against_the_compose_schema(eco: Path, capsys: pytest.CaptureFixture[str], strategy: str) -> None:
    """No docker here to run `docker compose config`: the Compose Specification's own schema checks the output."""
    import json

    import jsonschema

    schema = json.loads(COMPOSE_SCHEMA.read_text())
    code, out, err = run(capsys, "export", "compose", str(eco), "--strategy", strategy)
    assert code == 0, err
    doc = yaml.safe_load(out)
    jsonschema.Draft201909Validator(schema).validate(doc)
    # and the schema does catch a broken document
    broken = json.loads(json.dumps(doc))
    first = next(iter(broken["services"].values()))
    first["depends_on"] = {"x": {"condition": "service_sometimes"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft201909Validator(schema).validate(broken)


def test_the_webapp_compose_export_validates(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import jsonschema

    webapp = Path(__file__).resolve().parents[2] / "examples" / "webapp" / "ecosystem.toml"
    for strategy in ("runtime", "services"):
        code, out, err = run(capsys, "export", "compose", str(webapp), "--env", "production", "--strategy", strategy, "--image", "corral-webapp")
        assert code == 0, err
        jsonschema.Draft201909Validator(json.loads(COMPOSE_SCHEMA.read_text())).validate(yaml.safe_load(out))
