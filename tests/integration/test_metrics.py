"""The daemon's optional HTTP endpoint: /metrics (Prometheus text format), /healthz, /readyz.

Switched on by `CORRAL_HTTP=127.0.0.1:PORT` in the environment of the CLI call
that starts the daemon; read-only, bound to loopback.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from corral.daemon.http import parse_listen
from tests.conftest import Corral, wait_until, write
from tests.fixtures.health.helpers import (
    SLEEPER,
    free_port,
    http_get,
    server_app,
    start,
    use_venv,
    wait_health,
)

FAST = {"interval": "300ms", "timeout": "2s", "failure_threshold": 1}


@pytest.fixture
def corral(corral: Corral) -> Corral:
    return use_venv(corral)


class Endpoint:
    def __init__(self, port: int) -> None:
        self.address = ("127.0.0.1", port)

    def get(self, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        return http_get(self.address, path, method=method)

    def json(self, path: str) -> tuple[int, dict[str, Any]]:
        status, headers, body = self.get(path)
        assert headers["content-type"] == "application/json", headers
        out: dict[str, Any] = json.loads(body)
        return status, out

    def metrics(self) -> dict[str, Any]:
        status, headers, body = self.get("/metrics")
        assert status == 200, body
        assert headers["content-type"].startswith("text/plain; version=0.0.4"), headers
        return {f.name: f for f in text_string_to_metric_families(body.decode())}


@pytest.fixture
def endpoint(corral: Corral) -> Iterator[Endpoint]:
    """Starts the daemon (first CLI call) with CORRAL_HTTP; apps are started by the test."""
    port = free_port()
    env = dict(corral.env, CORRAL_HTTP=f"127.0.0.1:{port}")
    corral.run("ping", env=env)
    ep = Endpoint(port)
    wait_until(lambda: ep.get("/healthz")[0] in (200, 503), timeout=10, message="the HTTP endpoint answers")
    yield ep


def samples(families: dict[str, Any], family: str, sample_name: str | None = None) -> list[Any]:
    assert family in families, sorted(families)
    return [s for s in families[family].samples if sample_name is None or s.name == sample_name]


def by_id(ss: list[Any], **match: str) -> dict[str, float]:
    return {s.labels["id"]: s.value for s in ss if all(s.labels.get(k) == v for k, v in match.items())}


def test_metrics_families_and_labels(corral: Corral, endpoint: Endpoint) -> None:
    flag = corral.cwd / "flag"
    write(corral.cwd / "ok.py", SLEEPER)
    start(
        corral,
        server_app("web", free_port(), env={"FLAG_FILE": str(flag)}, health={"http": "/", **FAST}),
        {"name": "workers", "script": "ok.py", "instances": 2, "namespace": "jobs"},
    )
    wait_health(corral, "web", "healthy")
    procs = {p["id"]: p for p in corral.jlist()}
    ids = {str(i) for i in procs}
    assert len(ids) == 3

    fams = endpoint.metrics()
    assert fams["corral_process_up"].type == "gauge"
    up = samples(fams, "corral_process_up")
    assert by_id(up) == {i: 1.0 for i in ids}
    for s in up:
        p = procs[int(s.labels["id"])]
        assert s.labels == {"app": p["name"], "id": str(p["id"]), "instance": str(p["instance"]), "namespace": p["namespace"]}
    assert {s.labels["namespace"] for s in up if s.labels["app"] == "workers"} == {"jobs"}

    # one-hot status
    status = samples(fams, "corral_process_status")
    for i in ids:
        mine = {s.labels["state"]: s.value for s in status if s.labels["id"] == i}
        assert mine["online"] == 1 and sum(mine.values()) == 1, mine

    assert fams["corral_process_restarts"].type == "counter"
    assert by_id(samples(fams, "corral_process_restarts", "corral_process_restarts_total")) == {i: 0.0 for i in ids}

    assert fams["corral_process_cpu_seconds"].type == "counter"
    cpu = by_id(samples(fams, "corral_process_cpu_seconds", "corral_process_cpu_seconds_total"))
    assert set(cpu) == ids and all(v >= 0 for v in cpu.values())

    mem = samples(fams, "corral_process_memory_bytes")
    rss = by_id(mem, kind="rss")
    assert set(rss) == ids and all(v > 1 << 20 for v in rss.values()), rss
    pss = by_id(mem, kind="pss")
    if pss:
        assert set(pss) == ids and all(0 < pss[i] <= rss[i] for i in ids)

    health = samples(fams, "corral_health_status")
    assert [(s.labels, s.value) for s in health] == [({"app": "web", "id": str(corral.proc("web")["id"])}, 1.0)]
    assert samples(fams, "corral_probe_latency_seconds")[0].value > 0

    [daemon_mem] = samples(fams, "corral_daemon_memory_bytes")
    assert daemon_mem.labels == {}
    assert daemon_mem.value == pytest.approx(psutil.Process(corral.daemon_pid()).memory_info().rss, rel=0.5)
    assert samples(fams, "corral_daemon_uptime_seconds")[0].value > 0

    # the health gauge and the restart counters follow
    flag.write_text("fail")
    wait_health(corral, "web", "unhealthy")
    corral.run("restart", "workers")
    fams = endpoint.metrics()
    assert [s.value for s in samples(fams, "corral_health_status")] == [0.0]
    restarts = by_id(samples(fams, "corral_process_restarts", "corral_process_restarts_total"), app="workers")
    assert restarts == {str(p["id"]): 1.0 for p in procs.values() if p["name"] == "workers"}

    corral.run("stop", "workers")
    fams = endpoint.metrics()
    stopped = by_id(samples(fams, "corral_process_up"), app="workers")
    assert set(stopped.values()) == {0.0} and len(stopped) == 2
    # a stopped process has no usage
    assert not by_id(samples(fams, "corral_process_memory_bytes"), app="workers")


def test_healthz_and_readyz(corral: Corral, endpoint: Endpoint) -> None:
    status, body = endpoint.json("/healthz")
    assert status == 200 and body["status"] == "ok" and body["daemon"]["pid"] == corral.daemon_pid()
    assert body["apps"] == []
    assert endpoint.json("/readyz")[0] == 503  # no apps: not ready

    flag = corral.cwd / "flag"
    start(corral, server_app("web", free_port(), env={"FLAG_FILE": str(flag)}, health={"http": "/", **FAST}))
    wait_health(corral, "web", "healthy")
    status, body = endpoint.json("/readyz")
    assert status == 200, body
    assert body["status"] == "ready" and body["healthy"] is True
    assert body["apps"] == [{"name": "web", "healthy": True, "reason": "web: 1/1 online, healthy"}]

    flag.write_text("fail")
    wait_health(corral, "web", "unhealthy")
    status, body = endpoint.json("/readyz")
    assert status == 503 and body["status"] == "not ready"
    assert body["apps"][0]["reason"] == "web: health unhealthy (HTTP 500)"
    status, body = endpoint.json("/healthz")
    assert status == 200  # an unready app does not make the manager unhealthy

    write(corral.cwd / "crash.py", "import sys\nsys.exit(1)\n")
    start(corral, server_app("web", free_port(), env={"FLAG_FILE": str(flag)}, health={"http": "/", **FAST}), {"name": "crash", "script": "crash.py", "max_restarts": 1})
    crash_id = wait_until(lambda: (p := corral.proc("crash"))["status"] == "errored" and p["id"], timeout=15)
    status, body = endpoint.json("/healthz")
    assert status == 503 and body["status"] == "error"
    assert {a["name"]: a["errored"] for a in body["apps"]}["crash"] == [crash_id]


def test_readyz_without_apps_says_not_ready_in_the_body(corral: Corral, endpoint: Endpoint) -> None:
    status, body = endpoint.json("/readyz")
    assert status == 503
    assert body["status"] == "not ready"


def test_read_only_and_unknown_paths(corral: Corral, endpoint: Endpoint) -> None:
    for method in ("POST", "PUT", "DELETE"):
        for path in ("/metrics", "/healthz"):
            status, _, body = endpoint.get(path, method=method)
            assert status == 405, (method, path, body)
            assert "GET only" in json.loads(body)["error"]
    status, _, body = endpoint.get("/nope")
    assert status == 404 and "/metrics" in json.loads(body)["error"]
    status, _, _ = endpoint.get("/metrics?x=1")
    assert status == 200


def listening(pid: int | None) -> list[tuple[str, int]]:
    assert pid is not None
    return sorted((c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN)


def test_bound_to_loopback_only(corral: Corral, endpoint: Endpoint) -> None:
    port = endpoint.address[1]
    assert listening(corral.daemon_pid()) == [("127.0.0.1", port)]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port), timeout=2).close()


def test_bare_port_binds_loopback_and_off_by_default(corral: Corral) -> None:
    assert parse_listen("9615") == ("127.0.0.1", 9615)
    assert parse_listen(":9615") == ("127.0.0.1", 9615)
    assert parse_listen("[::1]:9615") == ("::1", 9615)
    with pytest.raises(ValueError):
        parse_listen("localhost")
    # off unless asked
    corral.run("ping")
    assert listening(corral.daemon_pid()) == []
    corral.run("kill")
    port = free_port()
    corral.run("ping", env=dict(corral.env, CORRAL_HTTP=str(port)))
    assert listening(corral.daemon_pid()) == [("127.0.0.1", port)]
    assert http_get(("127.0.0.1", port), "/healthz")[0] == 200
