"""A real daemon with real apps, and real dashboard servers in front of it, for the dashboard tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Corral, ecosystem, free_port, wait_until, write

# Prints a line every 0.2s, an "alert" line every 5th, and a line on stderr every 10th.
TICKER = """
import os, sys, time
i = 0
while True:
    word = "alert" if i % 5 == 0 else "tick"
    print(f"{word} {i} from {os.getpid()}", flush=True)
    if i % 10 == 0:
        print(f"oops {i}", file=sys.stderr, flush=True)
    i += 1
    time.sleep(0.2)
"""


def start_home(root: Path, *, instances: int = 2) -> Corral:
    """A home with the app `web` (1s CPU/memory samples: it has a memory limit) and `api`."""
    home, work = root / "home", root / "work"
    work.mkdir(parents=True)
    c = Corral(home, work)
    write(work / "ticker.py", TICKER)
    write(
        work / "ecosystem.toml",
        ecosystem(
            {"name": "web", "script": "ticker.py", "instances": instances, "max_memory_restart": "500M", "kill_timeout": 1000, "env": {"DB_PASSWORD": "hunter2", "MODE": "demo"}},
            {"name": "api", "script": "ticker.py", "kill_timeout": 1000},
        ),
    )
    c.run("start", "ecosystem.toml")
    return c


class Dashboard:
    """`python -m corral.dashboard` as a subprocess on a free loopback port."""

    def __init__(self, corral: Corral, *flags: str, port: int | None = None) -> None:
        self.corral = corral
        self.flags = flags
        self.port = port or free_port()
        self.proc: subprocess.Popen[str] | None = None
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self) -> Dashboard:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "corral.dashboard", "--port", str(self.port), *self.flags],
            env=self.corral.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

        def answers() -> bool:
            assert self.proc is not None and self.proc.poll() is None, "the dashboard exited"
            return httpx.get(self.base + "/api/processes", timeout=2).status_code == 401

        wait_until(answers, timeout=20, message="the dashboard answers")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    @property
    def token(self) -> str:
        return (self.corral.home / "dashboard.token").read_text().strip()

    def login_url(self) -> str:
        proc = subprocess.run([sys.executable, "-m", "corral.dashboard", "--port", str(self.port), "--url"], env=self.corral.env, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def session(self) -> httpx.Client:
        """An HTTP client logged in through the login URL, as a browser would be."""
        client = httpx.Client(base_url=self.base, timeout=30)
        r = client.get(self.login_url())
        assert r.status_code == 200, r.text
        return client

    def csrf(self, client: httpx.Client) -> str:
        import re

        page = client.get("/", headers={"accept": "text/html"}).text
        m = re.search(r'<meta name="csrf" content="([0-9a-f]+)">', page)
        assert m, page[:500]
        return m.group(1)


def jlist_by_id(c: Corral) -> dict[int, dict[str, Any]]:
    return {p["id"]: p for p in c.jlist()}


def wait_online(c: Corral, name: str, count: int, timeout: float = 20) -> list[dict[str, Any]]:
    def ok() -> list[dict[str, Any]] | None:
        procs = [p for p in c.jlist() if p["name"] == name]
        return procs if len(procs) == count and all(p["status"] == "online" for p in procs) else None

    return wait_until(ok, timeout=timeout, message=f"{count} instances of {name} online")


def kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)

