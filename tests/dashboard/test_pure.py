"""The dashboard's pure parts: series merging on a fake clock, settings, Host/Origin rules, the token file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from corral.core.errors import ConfigError
from corral.dashboard import auth
from corral.dashboard.series import KEEP, STEP, Series, merge
from corral.dashboard.settings import Settings, is_loopback, resolve


def sample(t: float, cpu: float = 1.0, mem: float = 100.0) -> dict[str, float]:
    return {"time": t, "cpu": cpu, "memory": mem}


@pytest.mark.parametrize(
    ("existing", "samples", "offset", "now", "want_t", "added"),
    [
        # monotonic times become wall times with the offset
        ([], [sample(10), sample(12)], 1000.0, 1020.0, [1010, 1012], 2),
        # samples already merged are not added again
        ([1010, 1012], [sample(10), sample(12), sample(14)], 1000.0, 1020.0, [1010, 1012, 1014], 1),
        # at most one point per STEP seconds
        ([], [sample(10), sample(10.5), sample(11), sample(12.5)], 0.0, 20.0, [10, 12.5], 2),
        # points older than an hour fall off the front
        ([0.0, 5.0], [sample(KEEP + 10)], 0.0, KEEP + 10, [KEEP + 10], 1),
        # malformed samples are skipped
        ([], [{"time": "x"}, {"cpu": 1}, sample(3)], 0.0, 10.0, [3], 1),
        # a sample from the future (a clock jump) is not taken
        ([], [sample(100)], 0.0, 10.0, [], 0),
    ],
)
def test_merge(existing: list[float], samples: list[dict[str, float]], offset: float, now: float, want_t: list[float], added: int) -> None:
    s = Series()
    for t in existing:
        s.t.append(t)
        s.cpu.append(0.0)
        s.mem.append(0.0)
    assert merge(s, samples, offset, now) == added
    assert list(s.t) == want_t
    # invariants: the three columns stay aligned, times increase by at least STEP, nothing older than KEEP
    assert len(s.t) == len(s.cpu) == len(s.mem)
    assert all(b - a >= STEP for a, b in zip(s.t, s.t[1:], strict=False))
    assert all(t >= now - KEEP for t in s.t)


def test_series_as_json_since() -> None:
    s = Series()
    merge(s, [sample(1, cpu=5), sample(4, cpu=6), sample(7, cpu=7)], 0.0, 10.0)
    assert s.as_json(since=4) == {"t": [7.0], "cpu": [7.0], "mem": [100.0]}
    assert len(s.as_json()["t"]) == 3


def test_settings_flags_win_over_the_file() -> None:
    got = resolve({"port": 9000, "read_only": True}, "corral.toml", {"port": 9100, "host": None, "read_only": None, "allow_remote": None})
    assert got == Settings(host="127.0.0.1", port=9100, read_only=True, allow_remote=False)
    assert resolve({}, "corral.toml", {}) == Settings()


@pytest.mark.parametrize(
    ("table", "key"),
    [({"port": "x"}, "dashboard.port"), ({"port": 70000}, "dashboard.port"), ({"host": ""}, "dashboard.host"), ({"read_only": "yes"}, "dashboard.read_only"), ({"colour": "blue"}, "dashboard.colour")],
)
def test_bad_settings_name_the_key(table: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as e:
        resolve(table, "/h/corral.toml", {})
    assert key in e.value.render() and "/h/corral.toml" in e.value.render()


@pytest.mark.parametrize(("host", "loop"), [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True), ("0.0.0.0", False), ("192.168.1.4", False), ("example.com", False)])
def test_is_loopback(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop


def test_host_and_origin_rules() -> None:
    allowed = auth.allowed_hosts("127.0.0.1", 9615)
    assert auth.host_ok("127.0.0.1:9615", allowed) and auth.host_ok("localhost:9615", allowed) and auth.host_ok("[::1]:9615", allowed)
    assert not auth.host_ok("evil.example:9615", allowed)  # DNS rebinding: the attacker's name
    assert not auth.host_ok("127.0.0.1:9616", allowed) and not auth.host_ok(None, allowed)
    assert auth.origin_ok(None, allowed) and auth.origin_ok("http://localhost:9615", allowed)
    assert not auth.origin_ok("http://evil.example", allowed) and not auth.origin_ok("null", allowed)
    assert not auth.origin_ok("https://localhost:9615", allowed)
    remote = auth.allowed_hosts("10.0.0.5", 9615)
    assert auth.host_ok("10.0.0.5:9615", remote)


def test_token_file_created_0600_once_and_kept(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = auth.load_or_create_token(home)
    assert len(first) >= 40
    assert stat.S_IMODE(os.stat(home / auth.TOKEN_FILE).st_mode) == 0o600
    assert auth.load_or_create_token(home) == first
    os.chmod(home / auth.TOKEN_FILE, 0o644)
    assert auth.load_or_create_token(home) == first
    assert stat.S_IMODE(os.stat(home / auth.TOKEN_FILE).st_mode) == 0o600
    assert auth.session_value(first) != auth.csrf_value(first) and first not in auth.session_value(first)


def test_token_file_never_followed_through_a_symlink(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "elsewhere").write_text("x" * 50)
    os.symlink(tmp_path / "elsewhere", home / auth.TOKEN_FILE)
    with pytest.raises(OSError):
        auth.load_or_create_token(home)


def test_events_of_both_shapes_are_shown_by_app() -> None:
    from corral.dashboard.hub import Hub

    live = Hub.normalise_event({"v": 1, "stream": "event", "kind": "exit", "name": "web", "id": 3, "message": "killed"})
    ring = Hub.normalise_event({"seq": 4, "kind": "exited", "app": "web", "instance": 0, "code": 1, "message": "exited with code 1"})
    assert live == {"kind": "exit", "name": "web", "id": 3, "message": "killed"}
    assert ring["name"] == "web" and ring["seq"] == 4 and ring["instance"] == 0
