"""The dashboard's HTTP server against a real daemon with real apps: routes, login, Host/Origin
checks, CSRF, read-only mode, the SSE streams and the actions."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Corral, free_port, pid_alive, wait_until
from tests.dashboard.helpers import Dashboard, kill9, wait_online


def sse_events(client: httpx.Client, path: str, want: Any, timeout: float = 20) -> list[tuple[str, Any]]:
    """Read a Server-Sent Events stream until want(events) is true; returns the events read."""
    events: list[tuple[str, Any]] = []
    with client.stream("GET", path, headers={"accept": "text/event-stream"}, timeout=httpx.Timeout(timeout)) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        kind, data = None, []
        for line in r.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "" and kind is not None:
                events.append((kind, json.loads("\n".join(data))))
                kind, data = None, []
                if want(events):
                    return events
    raise AssertionError(f"stream ended before the condition: {events[-5:]}")


# ---------------------------------------------------------------- login and checks


def test_without_token_every_page_and_api_is_401(dash: Dashboard) -> None:
    for path in ("/", "/apps/web", "/api/processes", "/stream", "/apps/web/logs"):
        r = httpx.get(dash.base + path, timeout=10)
        assert r.status_code == 401, path
    r = httpx.get(dash.base + "/", headers={"accept": "text/html"}, timeout=10)
    assert "corral dashboard --url" in r.text
    assert httpx.post(dash.base + "/api/action", json={"action": "stop", "target": "web"}, timeout=10).status_code == 401
    assert httpx.get(dash.base + "/login?token=wrong", timeout=10).status_code == 401


def test_token_file_is_0600_and_url_logs_in_with_a_strict_httponly_cookie(dash: Dashboard, home: Corral) -> None:
    mode = stat.S_IMODE(os.stat(home.home / "dashboard.token").st_mode)
    assert mode == 0o600
    url = dash.login_url()
    assert url == f"{dash.base}/login?token={dash.token}"
    r = httpx.get(url, timeout=10)
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/" in cookie
    assert dash.token not in cookie  # the cookie is derived from the token, not the token
    client = dash.session()
    page = client.get("/", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "content-security-policy" in page.headers and page.headers["x-frame-options"] == "DENY"
    initial = json.loads(page.text.split('<script type="application/json" id="initial">')[1].split("</script>")[0])
    assert {p["name"] for p in initial["procs"]} == {"web", "api"}


def test_bearer_token_works_for_scripts(dash: Dashboard) -> None:
    r = httpx.get(dash.base + "/api/processes", headers={"authorization": f"Bearer {dash.token}"}, timeout=10)
    assert r.status_code == 200
    assert r.json()["daemon"]["up"] is True
    assert httpx.get(dash.base + "/api/processes", headers={"authorization": "Bearer nope"}, timeout=10).status_code == 401


def test_wrong_host_is_403_even_logged_in(dash: Dashboard) -> None:
    client = dash.session()
    r = client.get("/api/processes", headers={"host": f"evil.example:{dash.port}"})
    assert r.status_code == 403 and "Host" in r.json()["error"]
    assert client.get("/api/processes", headers={"host": f"localhost:{dash.port}"}).status_code == 200


def test_wrong_origin_is_403(dash: Dashboard) -> None:
    client = dash.session()
    assert client.get("/api/processes", headers={"origin": "http://evil.example"}).status_code == 403
    r = client.post("/api/action", json={"action": "restart", "target": "api"}, headers={"origin": "http://evil.example", "x-csrf-token": dash.csrf(client)})
    assert r.status_code == 403
    assert client.get("/api/processes", headers={"origin": dash.base}).status_code == 200


def test_actions_need_the_csrf_token_and_an_origin(dash: Dashboard, home: Corral) -> None:
    client = dash.session()
    before = wait_online(home, "api", 1)[0]
    body = {"action": "restart", "target": "api"}
    r = client.post("/api/action", json=body, headers={"origin": dash.base})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    r = client.post("/api/action", json=body, headers={"origin": dash.base, "x-csrf-token": "0" * 64})
    assert r.status_code == 403
    r = client.post("/api/action", json=body, headers={"x-csrf-token": dash.csrf(client)})
    assert r.status_code == 403 and "Origin" in r.json()["error"]
    assert home.proc("api")["pid"] == before["pid"]  # nothing happened
    r = client.post("/api/action", json=body, headers={"origin": dash.base, "x-csrf-token": dash.csrf(client)})
    assert r.status_code == 200, r.text
    after = wait_online(home, "api", 1)[0]
    assert after["pid"] != before["pid"] and not pid_alive(before["pid"])


def test_bad_action_requests_name_the_field(dash: Dashboard) -> None:
    client = dash.session()
    h = {"origin": dash.base, "x-csrf-token": dash.csrf(client)}
    r = client.post("/api/action", json={"action": "explode", "target": "web"}, headers=h)
    assert r.status_code == 400 and "'action'" in r.json()["error"]
    r = client.post("/api/action", json={"action": "scale", "target": "web", "count": "lots"}, headers=h)
    assert r.status_code == 400 and "'count'" in r.json()["error"]
    r = client.post("/api/action", json={"action": "stop"}, headers=h)
    assert r.status_code == 400 and "'target'" in r.json()["error"]
    r = client.post("/api/action", content=b"not json", headers=h)
    assert r.status_code == 400
    r = client.post("/api/action", json={"action": "stop", "target": "nosuchapp"}, headers=h)
    assert r.status_code == 404 and "nosuchapp" in r.json()["error"]


def test_scale_and_stop_start_through_the_api(dash: Dashboard, home: Corral) -> None:
    h = {"authorization": f"Bearer {dash.token}"}
    r = httpx.post(dash.base + "/api/action", json={"action": "scale", "target": "web", "count": "3"}, headers=h, timeout=60)
    assert r.status_code == 200, r.text
    wait_online(home, "web", 3)
    r = httpx.post(dash.base + "/api/action", json={"action": "scale", "target": "web", "count": 2}, headers=h, timeout=60)
    assert r.status_code == 200, r.text
    wait_online(home, "web", 2)
    assert httpx.post(dash.base + "/api/action", json={"action": "stop", "target": "api"}, headers=h, timeout=60).json()["ok"]
    assert home.proc("api")["status"] == "stopped"
    assert httpx.post(dash.base + "/api/action", json={"action": "start", "target": "api"}, headers=h, timeout=60).json()["ok"]
    wait_online(home, "api", 1)


def test_app_page_shows_config_with_secrets_hidden(dash: Dashboard) -> None:
    client = dash.session()
    page = client.get("/apps/web", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "DB_PASSWORD" in page.text and "hunter2" not in page.text and "&lt;hidden&gt;" in page.text
    assert "ticker.py" in page.text
    assert client.get("/apps/nosuchapp", headers={"accept": "text/html"}).status_code == 404


# ---------------------------------------------------------------- live streams


def test_stream_sends_the_table_then_follows_a_kill(dash: Dashboard, home: Corral) -> None:
    client = dash.session()
    victim = wait_online(home, "web", 2)[0]
    seen_first = []

    def want(events: list[tuple[str, Any]]) -> bool:
        procs = [d for k, d in events if k == "procs"]
        if not seen_first and procs:
            seen_first.append(procs[0])
            assert any(p["id"] == victim["id"] and p["pid"] == victim["pid"] for p in procs[0])
            kill9(victim["pid"])
        for table in procs[1:]:
            row = next((p for p in table if p["id"] == victim["id"]), None)
            if row is not None and row["pid"] != victim["pid"] and row["restarts"] > victim["restarts"]:
                return any(k == "event" and d.get("id") == victim["id"] and d.get("kind") == "exit" for k, d in events)
        return False

    events = sse_events(client, "/stream", want)
    assert events[0][0] == "daemon" and events[0][1]["up"] is True


def test_log_stream_tails_and_searches(dash: Dashboard) -> None:
    client = dash.session()
    events = sse_events(client, "/apps/web/logs?q=alert&streams=out", lambda ev: sum(1 for k, d in ev if k == "log" and not d.get("tail")) >= 2)
    lines = [d for k, d in events if k == "log"]
    assert lines and all("alert" in d["message"] and d["type"] == "out" for d in lines)
    assert any(d.get("tail") for d in lines)  # the tail first, then live lines
    events = sse_events(client, "/apps/web/logs?streams=err&range=5m", lambda ev: sum(1 for k, _ in ev if k == "log") >= 2)
    assert all(d["type"] == "err" and "oops" in d["message"] for k, d in events if k == "log")
    r = client.get("/apps/web/logs?range=1y")
    assert r.status_code == 400 and "'range'" in r.json()["error"]


def test_history_api_has_points(dash: Dashboard) -> None:
    client = dash.session()

    def points() -> bool:
        hist = client.get("/api/apps/web").json()["history"]
        return bool(hist) and all(len(s["t"]) >= 2 for s in hist.values())

    wait_until(points, timeout=30, message="CPU/memory points for web")


# ---------------------------------------------------------------- modes and flags


def test_read_only_refuses_actions_and_hides_them(home: Corral) -> None:
    ro = Dashboard(home, "--read-only").start()
    try:
        client = ro.session()
        page = client.get("/apps/web", headers={"accept": "text/html"}).text
        assert 'data-read-only="1"' in page and 'id="actions"' not in page and "read-only" in page
        r = client.post("/api/action", json={"action": "stop", "target": "web"}, headers={"origin": ro.base, "x-csrf-token": ro.csrf(client)})
        assert r.status_code == 403 and "read-only" in r.json()["error"]
        r = httpx.post(ro.base + "/api/action", json={"action": "stop", "target": "web"}, headers={"authorization": f"Bearer {ro.token}"}, timeout=10)
        assert r.status_code == 403
        assert all(p["status"] == "online" for p in home.jlist() if p["name"] == "web")
    finally:
        ro.stop()


def test_non_loopback_bind_needs_a_flag(home: Corral) -> None:
    proc = subprocess.run([sys.executable, "-m", "corral.dashboard", "--host", "0.0.0.0", "--port", str(free_port())], env=home.env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "--allow-remote" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_settings_name_the_file_and_key(tmp_path: Path) -> None:
    env = {**os.environ, "CORRAL_HOME": str(tmp_path)}
    (tmp_path / "corral.toml").write_text('[dashboard]\nport = "high"\n')
    proc = subprocess.run([sys.executable, "-m", "corral.dashboard", "--url"], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "corral.toml" in proc.stderr and "dashboard.port" in proc.stderr
    (tmp_path / "corral.toml").write_text('[dashboard]\nport = 9777\nread_only = true\n')
    # through the CLI's `corral dashboard` this time
    proc = subprocess.run([sys.executable, "-m", "corral", "dashboard", "--url"], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.startswith("http://127.0.0.1:9777/login?token=")


def test_port_in_use_is_a_clear_error(home: Corral, dash: Dashboard) -> None:
    proc = subprocess.run([sys.executable, "-m", "corral.dashboard", "--port", str(dash.port)], env=home.env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and f"cannot listen on 127.0.0.1:{dash.port}" in proc.stderr


def test_install_adds_the_dashboard_as_an_app(home: Corral) -> None:
    port = free_port()
    proc = subprocess.run([sys.executable, "-m", "corral.dashboard", "--install", "--port", str(port)], env=home.env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    try:
        wait_online(home, "corral-dashboard", 1)
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/api/processes", headers={"authorization": f"Bearer {(home.home / 'dashboard.token').read_text().strip()}"}, timeout=2).status_code == 200, timeout=20)
    finally:
        home.run("delete", "corral-dashboard")


def test_ls_and_the_daemon_never_import_the_web_stack() -> None:
    code = (
        "import sys, corral._entry, corral.cli, corral.cli.client, corral.daemon.server, corral.daemon.http, corral.tools.monit;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'jinja2', 'corral.dashboard') or m.startswith('corral.dashboard'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_daemon_that_is_down_is_reported_not_started(corral: Corral) -> None:
    corral.home.mkdir(mode=0o700)
    d = Dashboard(corral).start()
    try:
        h = {"authorization": f"Bearer {d.token}"}
        state = httpx.get(d.base + "/api/processes", headers=h, timeout=10).json()
        assert state["daemon"]["up"] is False and state["daemon"]["error"]
        assert not (corral.home / "corral.sock").exists()  # the dashboard never starts a daemon
        page = d.session().get("/", headers={"accept": "text/html"})
        assert page.status_code == 200 and '"up": false' in page.text  # the page starts with the banner's data
        corral.run("ping")  # the CLI starts the daemon; the dashboard notices
        wait_until(lambda: httpx.get(d.base + "/api/processes", headers=h, timeout=10).json()["daemon"]["up"], timeout=30, message="daemon seen up")
    finally:
        d.stop()


def test_without_the_web_stack_it_says_which_extra_to_install(tmp_path: Path) -> None:
    code = "import sys; sys.modules['starlette'] = None; from corral.dashboard.__main__ import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "CORRAL_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code, "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "pip install 'corral[dashboard]'" in proc.stderr and "Traceback" not in proc.stderr


def test_reload_and_flush_through_the_api(dash: Dashboard, home: Corral) -> None:
    h = {"authorization": f"Bearer {dash.token}"}
    before = {p["id"]: p["pid"] for p in wait_online(home, "web", 2)}
    r = httpx.post(dash.base + "/api/action", json={"action": "reload", "target": "web"}, headers=h, timeout=60)
    assert r.status_code == 200, r.text
    after = wait_online(home, "web", 2)
    assert all(p["pid"] != before[p["id"]] for p in after)  # replaced one by one
    out_log = home.home / "logs" / "api-out.log"  # the default log file of a one-instance app
    wait_until(lambda: out_log.stat().st_size > 2000, timeout=20, message="api has logged")
    size = out_log.stat().st_size
    r = httpx.post(dash.base + "/api/action", json={"action": "flush", "target": "api"}, headers=h, timeout=60)
    assert r.status_code == 200 and str(out_log) in r.json()["result"]["files"]
    assert out_log.stat().st_size < size
