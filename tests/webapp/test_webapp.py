"""Tests of the reference web app in examples/webapp.

In-process tests drive ``create_app()`` through Starlette's TestClient against a
temporary SQLite database; the last ones start ``serve.py`` (and uvicorn) as real
processes, on a port and on an inherited socket.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("sqlalchemy")

WEBAPP_DIR = Path(__file__).resolve().parents[2] / "examples" / "webapp"
SERVE_PY = WEBAPP_DIR / "serve.py"
# The `webapp` package lives in examples/webapp, not in src/.
if str(WEBAPP_DIR) not in sys.path:
    sys.path.insert(0, str(WEBAPP_DIR))

from sqlalchemy.exc import OperationalError  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.routing import Route  # noqa: E402

with warnings.catch_warnings():
    # Starlette >= 1.x prefers httpx2 and warns when it falls back to httpx.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient  # noqa: E402

from tests.conftest import free_port  # noqa: E402
from webapp.app import create_app  # noqa: E402
from webapp.db import normalize_url  # noqa: E402
from webapp.middleware import RequestContextMiddleware  # noqa: E402
from webapp.settings import DEFAULT_DATABASE_URL, Settings, SettingsError  # noqa: E402

from webapp import __version__  # noqa: E402

ACCESS_FIELDS = {
    "time",
    "level",
    "request_id",
    "method",
    "path",
    "status",
    "duration_ms",
    "instance",
    "pid",
}


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of captured output, each parsed as JSON (fails on any other line)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def access_lines(text: str) -> list[dict[str, Any]]:
    return [e for e in json_lines(text) if e.get("logger") == "webapp.access"]


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Build app + TestClient (lifespan running) for given Settings overrides."""
    clients: list[TestClient] = []

    def _make(**overrides: Any) -> TestClient:
        overrides.setdefault("database_url", f"sqlite:///{tmp_path / 'test.db'}")
        client = TestClient(create_app(Settings(**overrides)))
        client.__enter__()
        clients.append(client)
        return client

    yield _make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(instance="0")


def add_note(client: TestClient, title: str, body: str = "") -> dict[str, Any]:
    response = client.post("/api/notes", json={"title": title, "body": body})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


# --- pages -----------------------------------------------------------------------


def test_index_lists_notes_newest_first(client: TestClient) -> None:
    add_note(client, "First note")
    add_note(client, "Second note")
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert '<form method="post" action="/notes"' in html
    assert html.index("Second note") < html.index("First note")
    assert '<span class="count">2</span>' in html


def test_index_with_no_notes(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert "No notes yet" in response.text


def test_form_creates_note_and_redirects(client: TestClient) -> None:
    response = client.post(
        "/notes", data={"title": "  From the form ", "body": "hello"}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    assert "From the form" in client.get("/").text
    [note] = client.get("/api/notes").json()["notes"]
    assert note["title"] == "From the form"
    assert note["body"] == "hello"


def test_form_validation_shows_errors_and_keeps_input(client: TestClient) -> None:
    response = client.post("/notes", data={"title": "   ", "body": "kept body"})
    assert response.status_code == 422
    assert "Title must not be blank." in response.text
    assert "kept body" in response.text
    assert client.get("/api/notes").json()["notes"] == []

    response = client.post("/notes", data={"title": "x" * 201})
    assert response.status_code == 422
    assert "at most 200 characters" in response.text


def test_note_page(client: TestClient) -> None:
    note = add_note(client, "Shown", "line one\nline two")
    response = client.get(f"/notes/{note['id']}")
    assert response.status_code == 200
    assert "<h1>Shown</h1>" in response.text
    assert "line one\nline two" in response.text
    assert f'action="/notes/{note["id"]}/toggle"' in response.text


def test_note_page_escapes_html(client: TestClient) -> None:
    note = add_note(client, "<script>alert(1)</script>")
    for path in ("/", f"/notes/{note['id']}"):
        html = client.get(path).text
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_missing_note_page_is_html_404(client: TestClient) -> None:
    response = client.get("/notes/999")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "There is no note 999." in response.text


def test_toggle_and_delete_forms(client: TestClient) -> None:
    note_id = add_note(client, "Chore")["id"]
    response = client.post(f"/notes/{note_id}/toggle", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/notes/{note_id}"
    assert client.get(f"/api/notes/{note_id}").json()["done"] is True
    assert "Reopen" in client.get(f"/notes/{note_id}").text

    response = client.post(f"/notes/{note_id}/delete", follow_redirects=False)
    assert response.status_code == 303
    assert client.get(f"/api/notes/{note_id}").status_code == 404
    assert client.post(f"/notes/{note_id}/delete").status_code == 404


def test_static_css(client: TestClient) -> None:
    response = client.get("/static/style.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert '<link rel="stylesheet" href="/static/style.css">' in client.get("/").text


# --- JSON API --------------------------------------------------------------------


def test_api_crud(client: TestClient) -> None:
    response = client.post("/api/notes", json={"title": "Buy milk", "body": "2 litres"})
    assert response.status_code == 201
    note = response.json()
    assert response.headers["location"] == f"/api/notes/{note['id']}"
    assert note["title"] == "Buy milk"
    assert note["body"] == "2 litres"
    assert note["done"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", note["created_at"])

    assert client.get(f"/api/notes/{note['id']}").json() == note
    assert client.get("/api/notes").json()["notes"] == [note]

    response = client.patch(f"/api/notes/{note['id']}", json={"done": True})
    assert response.status_code == 200
    assert response.json() == {**note, "done": True}
    response = client.patch(f"/api/notes/{note['id']}", json={"title": "Buy oat milk"})
    assert response.json()["title"] == "Buy oat milk"
    assert response.json()["done"] is True

    response = client.delete(f"/api/notes/{note['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert client.get("/api/notes").json()["notes"] == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/notes/42"),
        ("PATCH", "/api/notes/42"),
        ("DELETE", "/api/notes/42"),
        ("GET", "/api/nowhere"),
    ],
)
def test_api_404_is_json(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path, json={"done": True} if method == "PATCH" else None)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert "error" in response.json()


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({}, "title", "is required"),
        ({"body": "no title"}, "title", "is required"),
        ({"title": ""}, "title", "must not be blank"),
        ({"title": "x" * 201}, "title", "must be at most 200 characters"),
        ({"title": 42}, "title", "must be a string"),
        ({"title": "ok", "body": 1}, "body", "must be a string"),
        ({"title": "ok", "done": "yes"}, "done", "must be true or false"),
        ({"title": "ok", "colour": "red"}, "colour", "unknown field"),
    ],
)
def test_api_create_validation(
    client: TestClient, payload: dict[str, Any], field: str, message: str
) -> None:
    response = client.post("/api/notes", json=payload)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation failed"
    assert body["fields"][field] == message
    assert client.get("/api/notes").json()["notes"] == []


def test_api_title_of_200_characters_is_accepted(client: TestClient) -> None:
    assert client.post("/api/notes", json={"title": "x" * 200}).status_code == 201


def test_api_patch_validation(client: TestClient) -> None:
    note = add_note(client, "Keep me")
    response = client.patch(f"/api/notes/{note['id']}", json={"title": "x" * 201})
    assert response.status_code == 422
    assert "title" in response.json()["fields"]
    assert client.get(f"/api/notes/{note['id']}").json() == note


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"title"'])
def test_api_rejects_bodies_that_are_not_json_objects(client: TestClient, body: bytes) -> None:
    response = client.post("/api/notes", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]


def test_api_list_limit_and_offset(client: TestClient) -> None:
    for n in range(5):
        add_note(client, f"note {n}")
    body = client.get("/api/notes", params={"limit": 2, "offset": 1}).json()
    assert [n["title"] for n in body["notes"]] == ["note 3", "note 2"]
    assert (body["limit"], body["offset"]) == (2, 1)
    response = client.get("/api/notes", params={"limit": 0})
    assert response.status_code == 422
    assert "limit" in response.json()["fields"]
    assert client.get("/api/notes", params={"offset": "x"}).status_code == 422


def test_api_info(client: TestClient) -> None:
    body = client.get("/api/info").json()
    assert body["pid"] == os.getpid()
    assert body["instance"] == "0"
    assert body["version"] == __version__
    assert isinstance(body["uptime"], float | int)
    assert body["uptime"] >= 0
    assert body["database"] == "sqlite"


# --- request id and access log -------------------------------------------------


def test_request_id_is_kept_when_given(client: TestClient) -> None:
    response = client.get("/api/notes", headers={"X-Request-ID": "req-abc.123"})
    assert response.headers["x-request-id"] == "req-abc.123"


def test_request_id_is_made_when_missing_or_unusable(client: TestClient) -> None:
    made = client.get("/api/notes").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert client.get("/api/notes").headers["x-request-id"] != made
    for bad in ("has spaces", "x" * 129, 'quote"d'):
        response = client.get("/", headers={"X-Request-ID": bad})
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


def test_request_id_reaches_the_page(client: TestClient) -> None:
    html = client.get("/", headers={"X-Request-ID": "page-req-1"}).text
    assert "<code>page-req-1</code>" in html


def test_access_log_is_one_json_line_per_request(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    client.post("/api/notes", json={"title": "logged"}, headers={"X-Request-ID": "log-1"})
    client.get("/api/notes/999")
    out = capsys.readouterr().out
    first, second = json_lines(out)  # stdout holds exactly the two access lines
    assert first.keys() >= ACCESS_FIELDS
    assert first["level"] == "info"
    assert first["request_id"] == "log-1"
    assert (first["method"], first["path"], first["status"]) == ("POST", "/api/notes", 201)
    assert isinstance(first["duration_ms"], float | int)
    assert first["duration_ms"] >= 0
    assert first["instance"] == "0"
    assert first["pid"] == os.getpid()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert (second["method"], second["path"], second["status"]) == ("GET", "/api/notes/999", 404)
    assert re.fullmatch(r"[0-9a-f]{32}", second["request_id"])


def test_unhandled_error_is_logged_and_answered_with_request_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def boom(request: Any) -> Any:
        raise RuntimeError("kaboom")

    app = Starlette(
        routes=[Route("/boom", boom)], middleware=[Middleware(RequestContextMiddleware)]
    )
    capsys.readouterr()
    with TestClient(app) as client:
        response = client.get("/boom", headers={"X-Request-ID": "crash-1"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "crash-1"
    assert response.json() == {"error": "internal server error", "request_id": "crash-1"}
    captured = capsys.readouterr()
    [access] = access_lines(captured.out)
    assert (access["status"], access["request_id"]) == (500, "crash-1")
    [error] = [e for e in json_lines(captured.err) if e["level"] == "error"]
    assert error["request_id"] == "crash-1"
    assert "RuntimeError: kaboom" in error["exc"]


# --- health ----------------------------------------------------------------------


def test_health_ok_with_sqlite(client: TestClient) -> None:
    response = client.get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "up"
    assert isinstance(body["latency_ms"], float | int)
    assert body["instance"] == "0"
    assert body["pid"] == os.getpid()
    assert response.headers["cache-control"] == "no-store"


def _unreachable_urls(tmp_path: Path) -> dict[str, str]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    return {
        "postgres-refused": "postgresql+psycopg://nobody@127.0.0.1:1/x",
        "sqlite-missing-folder": f"sqlite:///{tmp_path / 'missing' / 'x.db'}",
        "sqlite-folder-is-a-file": f"sqlite:///{a_file / 'x.db'}",
    }


def _down_errors(err: str) -> list[dict[str, Any]]:
    return [e for e in json_lines(err) if e["level"] == "error"]


@pytest.mark.parametrize(
    "case", ["postgres-refused", "sqlite-missing-folder", "sqlite-folder-is-a-file"]
)
def test_health_reports_database_down_and_logs_once(
    make_client: Callable[..., TestClient],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
) -> None:
    capsys.readouterr()
    client = make_client(database_url=_unreachable_urls(tmp_path)[case], instance="1")
    started = time.monotonic()
    for _ in range(3):
        response = client.get("/api/health")
        assert response.status_code == 500
        body = response.json()
        assert body["status"] == "error"
        assert body["database"] == "down"
        assert body["error"]
        assert "\n" not in body["error"]
        assert len(body["error"]) <= 200
        assert (body["instance"], body["pid"]) == ("1", os.getpid())
    assert time.monotonic() - started < 5

    # The API says "unavailable" rather than crashing; the outage is still one line.
    assert client.get("/api/notes").status_code == 503

    [error] = _down_errors(capsys.readouterr().err)
    assert error["msg"] == "database is down"
    assert error["database"] == "down"
    assert error["error"]
    assert error["pid"] == os.getpid()


def test_health_logs_each_state_change_once(
    client: TestClient, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = client.app.state.db  # type: ignore[attr-defined]
    real_ping = db.ping
    database_up = True

    def ping(timeout: float) -> None:
        if not database_up:
            raise OperationalError("SELECT 1", {}, ConnectionError("server went away"))
        real_ping(timeout)

    monkeypatch.setattr(db, "ping", ping)
    capsys.readouterr()
    statuses = []
    for up in (True, False, False, False, True, True, False):
        database_up = up
        statuses.append(client.get("/api/health").status_code)
    assert statuses == [200, 500, 500, 500, 200, 200, 500]

    changes = [e for e in json_lines(capsys.readouterr().err) if e.get("database")]
    assert [(e["level"], e["database"]) for e in changes] == [
        ("error", "down"),
        ("info", "up"),
        ("error", "down"),
    ]
    assert changes[0]["error"] == "ConnectionError: server went away"


def test_database_that_appears_later_is_used(
    make_client: Callable[..., TestClient], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "later"
    client = make_client(database_url=f"sqlite:///{folder / 'x.db'}")
    assert client.get("/api/health").status_code == 500
    folder.mkdir()
    assert client.get("/api/health").status_code == 200
    # Tables are created on first use, since startup could not create them.
    assert client.post("/api/notes", json={"title": "late"}).status_code == 201
    assert [n["title"] for n in client.get("/api/notes").json()["notes"]] == ["late"]
    err = capsys.readouterr().err
    assert [e["msg"] for e in json_lines(err) if e.get("database")] == [
        "database is down",
        "database is up again",
    ]


def test_health_times_out_on_a_stuck_database(make_client: Callable[..., TestClient]) -> None:
    client = make_client(health_db_timeout=0.2)
    release = threading.Event()
    client.app.state.db.ping = lambda timeout: release.wait(10)  # type: ignore[attr-defined]
    try:
        started = time.monotonic()
        response = client.get("/api/health")
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert response.status_code == 500
    assert response.json()["database"] == "down"
    assert response.json()["error"] == "no answer within 0.2s"
    assert elapsed < 2


@pytest.mark.skipif(
    not os.environ.get("WEBAPP_TEST_POSTGRES_URL"),
    reason="set WEBAPP_TEST_POSTGRES_URL to a scratch PostgreSQL database to run",
)
def test_against_postgresql(make_client: Callable[..., TestClient]) -> None:
    client = make_client(database_url=os.environ["WEBAPP_TEST_POSTGRES_URL"], db_pool_size=2)
    health = client.get("/api/health")
    assert health.status_code == 200, health.text
    note = add_note(client, f"pg {uuid.uuid4().hex}")
    try:
        assert client.get(f"/api/notes/{note['id']}").json() == note
        patched = client.patch(f"/api/notes/{note['id']}", json={"done": True}).json()
        assert patched["done"] is True
        assert patched["created_at"] == note["created_at"]
        assert note["title"] in client.get("/").text
    finally:
        assert client.delete(f"/api/notes/{note['id']}").status_code == 204


# --- settings and URLs -------------------------------------------------------------


def test_settings_from_env_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert DEFAULT_DATABASE_URL.endswith("examples/webapp/data/webapp.db")
    assert settings.data_dir is not None and settings.data_dir.name == "data"
    assert settings.db_pool_size == (os.cpu_count() or 1)
    assert settings.health_db_timeout == 2.0
    assert settings.log_level == "info"
    assert settings.instance is None


def test_settings_from_env_values() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgres://u@db/app",
            "DB_POOL_SIZE": "7",
            "HEALTH_DB_TIMEOUT": "0.5",
            "LOG_LEVEL": "WARNING",
            "NODE_APP_INSTANCE": "3",
        }
    )
    assert settings.database_url == "postgres://u@db/app"
    assert settings.data_dir is None
    assert (settings.db_pool_size, settings.health_db_timeout) == (7, 0.5)
    assert (settings.log_level, settings.instance) == ("warning", "3")
    both = Settings.from_env({"CORRAL_INSTANCE": "1", "NODE_APP_INSTANCE": "3"})
    assert both.instance == "1"


@pytest.mark.parametrize(
    "env",
    [
        {"DB_POOL_SIZE": "0"},
        {"DB_POOL_SIZE": "many"},
        {"HEALTH_DB_TIMEOUT": "-1"},
        {"LOG_LEVEL": "loud"},
    ],
)
def test_settings_reject_bad_values(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgresql://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_normalize_url(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


# --- real processes ------------------------------------------------------------------

# Variables a process manager or CI might have set that would change how a child
# server behaves; each test sets what it wants.
_SCRUBBED_ENV = (
    "DATABASE_URL",
    "DB_POOL_SIZE",
    "DB_CONNECT_TIMEOUT",
    "LOG_LEVEL",
    "HEALTH_DB_TIMEOUT",
    "CORRAL_INSTANCE",
    "NODE_APP_INSTANCE",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "HOST",
    "PORT",
    "SHUTDOWN_TIMEOUT",
)


def child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'served.db'}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class ServerProcess:
    """A child process with its stdout/stderr in files (no pipe to fill up)."""

    def __init__(self, args: list[str], env: dict[str, str], log_dir: Path, **popen: Any) -> None:
        self.stdout_path = log_dir / "stdout.log"
        self.stderr_path = log_dir / "stderr.log"
        self._stdout = self.stdout_path.open("wb")
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            args,
            env=env,
            cwd=WEBAPP_DIR,
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=self._stderr,
            **popen,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def logs(self) -> str:
        return (
            f"--- stdout ---\n{self.stdout_path.read_text(errors='replace')}"
            f"--- stderr ---\n{self.stderr_path.read_text(errors='replace')}"
        )

    def stop(self) -> None:
        """End the process if it still runs: SIGTERM, then SIGKILL."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._stdout.close()
        self._stderr.close()


Spawn = Callable[..., ServerProcess]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start child processes that are always ended when the test ends."""
    started: list[ServerProcess] = []

    def _spawn(args: list[str], env: dict[str, str], **popen: Any) -> ServerProcess:
        log_dir = tmp_path / f"proc{len(started)}"
        log_dir.mkdir()
        server = ServerProcess(args, env, log_dir, **popen)
        started.append(server)
        return server

    yield _spawn
    for server in started:
        server.stop()


# Puts the socket passed at some fd number on fd 3 (as systemd would), then runs the
# rest of argv with this Python. Done in the child, so the test's own fds are untouched.
FD3_LAUNCHER = (
    "import os, sys\n"
    "fd = int(sys.argv[1])\n"
    "if fd != 3:\n"
    "    os.dup2(fd, 3)\n"
    "    os.close(fd)\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])\n"
)


def get_json(url: str, timeout: float = 2.0) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_until_healthy(
    server: ServerProcess, port: int, deadline_s: float = 30.0
) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/api/health"
    deadline = time.monotonic() + deadline_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"server exited early with {server.poll()}\n{server.logs()}")
        try:
            status, body = get_json(url, timeout=1.0)
            if status == 200:
                return body
        except (OSError, ValueError) as exc:
            last_error = exc
        time.sleep(0.05)
    pytest.fail(
        f"no healthy answer from {url} within {deadline_s}s ({last_error})\n{server.logs()}"
    )


def stop_and_wait(server: ServerProcess, signum: int = signal.SIGTERM, within: float = 10.0) -> int:
    server.signal(signum)
    try:
        return server.wait(timeout=within)
    except Exception:
        pytest.fail(f"server did not exit within {within}s of {signum}\n{server.logs()}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_py_on_a_port(spawn: Spawn, tmp_path: Path, signum: int) -> None:
    port = free_port()
    env = child_env(tmp_path, PORT=str(port), CORRAL_INSTANCE="7")
    server = spawn([sys.executable, str(SERVE_PY)], env)
    body = wait_until_healthy(server, port)
    assert body["instance"] == "7"
    assert body["pid"] == server.pid

    assert stop_and_wait(server, signum) == 0, server.logs()

    healthy = [
        line
        for line in access_lines(server.stdout_path.read_text())
        if line["path"] == "/api/health" and line["status"] == 200
    ]
    assert len(healthy) == 1  # the wait loop stops at the first 200
    health = healthy[0]
    assert health.keys() >= ACCESS_FIELDS
    assert (health["instance"], health["pid"]) == ("7", server.pid)
    # stderr is JSON too (uvicorn's own lines included), and nothing went wrong.
    stderr = json_lines(server.stderr_path.read_text())
    assert not [e for e in stderr if e["level"] in ("error", "critical")], server.logs()
    assert stderr[-1]["msg"] == "exiting"


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket to receive sd_notify messages, and its NOTIFY_SOCKET value."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    folder = tempfile.mkdtemp(prefix="webapp-notify-")  # short: sun_path is 108 bytes
    path = os.path.join(folder, "notify.sock")
    sock.bind(path)
    try:
        yield sock, path
    finally:
        sock.close()
        os.unlink(path)
        os.rmdir(folder)


@pytest.fixture
def abstract_notify_socket() -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"webapp-test-{uuid.uuid4().hex}"
    sock.bind("\0" + name)
    try:
        yield sock, "@" + name
    finally:
        sock.close()


def receive(sock: socket.socket, server: ServerProcess, deadline_s: float = 30.0) -> bytes:
    deadline = time.monotonic() + deadline_s
    sock.settimeout(0.1)
    while time.monotonic() < deadline:
        try:
            return sock.recv(4096)
        except TimeoutError:
            if server.poll() is not None:
                pytest.fail(f"server exited with {server.poll()} before notifying\n{server.logs()}")
    pytest.fail(f"no notification within {deadline_s}s\n{server.logs()}")


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_serve_py_on_an_inherited_socket_notifies_ready(
    spawn: Spawn, tmp_path: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    fixture = "notify_socket" if kind == "path" else "abstract_notify_socket"
    notify, notify_address = request.getfixturevalue(fixture)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = listener.getsockname()[1]
        env = child_env(tmp_path, LISTEN_FDS="1", NOTIFY_SOCKET=notify_address)
        # PORT points somewhere else: the inherited socket must win.
        env["PORT"] = str(free_port())
        server = spawn(
            [sys.executable, "-c", FD3_LAUNCHER, str(listener.fileno()), str(SERVE_PY)],
            env,
            pass_fds=(listener.fileno(),),
        )

        assert receive(notify, server) == b"READY=1"
        # Ready means accepting: the first request must succeed, no retry loop.
        status, body = get_json(f"http://127.0.0.1:{port}/api/health", timeout=5)
        assert (status, body["database"], body["pid"]) == (200, "up", server.pid)

        server.signal(signal.SIGTERM)
        assert receive(notify, server) == b"STOPPING=1"
        assert server.wait(timeout=10) == 0, server.logs()
    finally:
        listener.close()


def test_plain_uvicorn_on_an_inherited_fd(spawn: Spawn, tmp_path: Path) -> None:
    """`uvicorn webapp.app:app --fd 3`: the app itself does not care how it is served."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = listener.getsockname()[1]
        server = spawn(
            [
                sys.executable,
                "-c",
                FD3_LAUNCHER,
                str(listener.fileno()),
                "-m",
                "uvicorn",
                "webapp.app:app",
                "--fd",
                "3",
            ],
            child_env(tmp_path),
            pass_fds=(listener.fileno(),),
        )
        assert wait_until_healthy(server, port)["pid"] == server.pid
        # uvicorn's CLI re-raises SIGTERM after its graceful shutdown (uvicorn >= 0.29),
        # so it ends "killed by SIGTERM"; serve.py turns that into exit status 0.
        assert stop_and_wait(server) in (0, -signal.SIGTERM)
        # One access line per request: the app silenced uvicorn's own access log.
        out = server.stdout_path.read_text()
        assert access_lines(out)
        assert all(line.startswith("{") for line in out.splitlines() if line.strip())
    finally:
        listener.close()
