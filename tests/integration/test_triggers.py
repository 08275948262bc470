"""Restart triggers on real processes: cron_restart (croniter) and watch (watchfiles).

Waits are bounded: "nothing happens" is checked over a bounded time longer
than the trigger's own delay, never after a fixed sleep followed by a check.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from corral.daemon.triggers import next_cron
from tests.conftest import Corral, wait_until, write
from tests.fixtures.health.helpers import (
    SLEEPER,
    Load,
    free_port,
    server_app,
    start,
    stays,
    use_venv,
)


@pytest.fixture
def corral(corral: Corral) -> Corral:
    return use_venv(corral)


def restarts(corral: Corral, name: str) -> int:
    n: int = corral.proc(name)["restarts"]
    return n


# ---------------------------------------------------------------- cron_restart


def test_cron_every_second_restarts(corral: Corral) -> None:
    write(corral.cwd / "app.py", SLEEPER)
    start(corral, {"name": "tick", "script": "app.py", "cron_restart": "* * * * * *"})
    created = corral.proc("tick")["created_at"]
    p = wait_until(lambda: (p := corral.proc("tick"))["restarts"] >= 3 and p, timeout=10)
    elapsed = time.time() - created
    assert p["last_restart_reason"] == "cron_restart '* * * * * *'"
    # once per second at most: never two restarts for one occurrence
    assert p["restarts"] <= elapsed + 1, (p["restarts"], elapsed)
    assert "trigger: cron_restart '* * * * * *'" in (corral.home / "corral.log").read_text()
    # a stopped app is left alone
    corral.run("stop", "tick")
    before = restarts(corral, "tick")
    stays(lambda: (p := corral.proc("tick"))["status"] == "stopped" and p["restarts"] == before, 1.5)


def test_six_fields_take_seconds_first(corral: Corral) -> None:
    # PM2 (croner) reads `*/2 * * * * *` as every 2 seconds, not every second of every other minute
    base = 1_700_000_000.0  # a whole second
    fires = [next_cron("*/2 * * * * *", base + i / 4) for i in range(12)]
    assert all(f % 2 == 0 and 0 < f - (base + i / 4) <= 2 for i, f in enumerate(fires))
    assert next_cron("30 * * * * *", base) % 60 == 30
    assert next_cron("*/5 * * * *", base) % 300 == 0  # five fields: minutes first
    write(corral.cwd / "app.py", SLEEPER)
    start(corral, {"name": "even", "script": "app.py", "cron_restart": "*/2 * * * * *"})
    seen: dict[int, float] = {}

    def two_restarts() -> bool:
        p = corral.proc("even")
        if p["status"] == "online" and p["started_at"]:
            seen.setdefault(p["restarts"], p["started_at"])
        return len([r for r in seen if r >= 1]) >= 2

    wait_until(two_restarts, timeout=12, interval=0.05)
    starts = [seen[r] for r in sorted(seen) if r >= 1]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert all(g > 1.4 for g in gaps), gaps


def cluster_cron(port: int) -> dict[str, Any]:
    return server_app("web", None, exec_mode="cluster", instances=2, listen=f"127.0.0.1:{port}", wait_ready=True, cron_restart="*/2 * * * * *")


def test_cron_reloads_a_cluster_without_downtime(corral: Corral) -> None:
    port = free_port()
    start(corral, cluster_cron(port))
    before = {p["instance"]: p for p in corral.jlist()}
    with Load(("127.0.0.1", port)) as load:
        def reloaded() -> dict[int, dict[str, Any]] | None:
            procs = corral.jlist()  # 3 rows while a replacement runs beside the instance it replaces
            now = {p["instance"]: p for p in procs}
            done = len(procs) == 2 and all(now[i]["restarts"] >= 1 and now[i]["status"] == "online" for i in (0, 1))
            return now if done else None

        after = wait_until(reloaded, timeout=10, message="both instances reloaded")
        served = load.ok
        wait_until(lambda: load.ok > served + 5 or load.failures, timeout=5)
    assert not load.failures, load.failures[:5]
    for i in (0, 1):
        assert after[i]["id"] == before[i]["id"] and after[i]["pid"] != before[i]["pid"]


def test_cron_reason_survives_a_cluster_reload(corral: Corral) -> None:
    start(corral, cluster_cron(free_port()))
    p = wait_until(lambda: (p := corral.proc("web"))["restarts"] >= 1 and p["status"] == "online" and p, timeout=10)
    assert p["last_restart_reason"] == "cron_restart '*/2 * * * * *'", p


def test_invalid_cron_is_a_config_error(corral: Corral) -> None:
    write(corral.cwd / "app.py", SLEEPER)
    for pattern in ("61 * * * *", "* * *", "every day", "99 * * * * *", "* * 32 * *"):
        out = start(corral, {"name": "bad", "script": "app.py", "cron_restart": pattern}, check=False)
        assert out.returncode == 2, (pattern, out)
        assert "app 'bad'" in out.stderr and "key 'cron_restart'" in out.stderr, (pattern, out.stderr)
    assert corral.jlist() == []


def test_invalid_cron_flag_is_a_config_error(corral: Corral) -> None:
    write(corral.cwd / "app.py", SLEEPER)
    out = corral.run("start", "app.py", "--cron-restart", "61 * * * *", check=False)
    assert out.returncode == 2 and "cron_restart" in out.stderr, out.stderr
    assert corral.jlist() == []


# ---------------------------------------------------------------- watch


def armed(corral: Corral, name: str, path: Path) -> int:
    """Touch a watched file until the watcher restarts the app (it arms asynchronously); the restarts then."""
    before = restarts(corral, name)
    deadline = time.monotonic() + 15
    i = 0
    while time.monotonic() < deadline:
        i += 1
        write(path, f"# warm-up {i}\n")
        try:
            wait_until(lambda: restarts(corral, name) > before, timeout=2.0, interval=0.05)
        except AssertionError:
            continue
        wait_until(lambda: corral.proc(name)["status"] == "online", timeout=5)
        return restarts(corral, name)
    raise AssertionError("the watcher never restarted the app")


def watch_app(**extra: Any) -> dict[str, Any]:
    app: dict[str, Any] = {"name": "w", "script": "app.py", "watch": True, "watch_delay": 300}
    app.update(extra)
    return app


def test_watch_restarts_on_source_changes_only(corral: Corral) -> None:
    write(corral.cwd / "app.py", SLEEPER)
    for d in ("__pycache__", "logs", "data", "node_modules", ".git"):
        (corral.cwd / d).mkdir()
    start(corral, watch_app(ignore_watch=["data/*.json", "*.tmp"]))
    base = armed(corral, "w", corral.cwd / "warmup.py")
    # none of these restart: default ignores and the app's ignore_watch globs
    write(corral.cwd / "__pycache__" / "mod.cpython-311.pyc", "x")
    write(corral.cwd / "logs" / "out.txt", "x")
    write(corral.cwd / "app.log", "x")
    write(corral.cwd / "node_modules" / "pkg" / "index.js", "x")
    write(corral.cwd / ".git" / "HEAD", "x")
    write(corral.cwd / "data" / "cache.json", "{}")
    write(corral.cwd / "scratch.tmp", "x")
    stays(lambda: restarts(corral, "w") == base, 1.5)  # 5 times the watch delay
    # a source file does
    write(corral.cwd / "app.py", SLEEPER + "# edited\n")
    p = wait_until(lambda: (p := corral.proc("w"))["restarts"] == base + 1 and p, timeout=5)
    assert p["last_restart_reason"] == "watch: app.py changed"
    # so does a data file the globs do not match
    write(corral.cwd / "data" / "settings.yaml", "a: 1\n")
    wait_until(lambda: restarts(corral, "w") == base + 2, timeout=5)


def test_watch_a_list_of_paths(corral: Corral) -> None:
    write(corral.cwd / "app.py", SLEEPER)
    write(corral.cwd / "src" / "pkg.py", "x = 1\n")
    start(corral, watch_app(watch=["src"]))
    base = armed(corral, "w", corral.cwd / "src" / "warmup.py")
    write(corral.cwd / "other.py", "y = 1\n")  # outside the watched folder
    stays(lambda: restarts(corral, "w") == base, 1.5)
    write(corral.cwd / "src" / "pkg.py", "x = 2\n")
    p = wait_until(lambda: (p := corral.proc("w"))["restarts"] == base + 1 and p, timeout=5)
    assert p["last_restart_reason"] == "watch: src/pkg.py changed"


def test_watch_debounces_a_burst_of_writes(corral: Corral) -> None:
    write(corral.cwd / "app.py", SLEEPER)
    start(corral, watch_app(watch_delay=1000))
    base = armed(corral, "w", corral.cwd / "warmup.py")
    for i in range(5):
        write(corral.cwd / f"mod{i}.py", f"x = {i}\n")
        write(corral.cwd / "mod0.py", f"x = {i}\n")
    p = wait_until(lambda: (p := corral.proc("w"))["restarts"] > base and p, timeout=5)
    stays(lambda: restarts(corral, "w") == base + 1, 1.5)  # more than the watch delay: one restart only
    assert p["last_restart_reason"] == "watch: mod0.py, mod1.py, mod2.py and 2 more changed"


def test_watch_delay_groups_writes_spread_within_it(corral: Corral) -> None:
    write(corral.cwd / "app.py", SLEEPER)
    start(corral, watch_app(watch_delay=1000))
    base = armed(corral, "w", corral.cwd / "warmup.py")
    t0 = time.monotonic()
    for i in range(5):  # an editor saving a few files, 0.6 s in all: under the 1 s watch_delay
        write(corral.cwd / f"mod{i}.py", f"x = {i}\n")
        wait_until(lambda i=i: time.monotonic() - t0 >= 0.15 * (i + 1), timeout=2, interval=0.01)
    wait_until(lambda: restarts(corral, "w") > base, timeout=5)
    stays(lambda: restarts(corral, "w") == base + 1, 2.0)
