"""Shared test helpers: a temporary CORRAL_HOME per test and condition waits with deadlines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, message: str = "") -> T:
    """Poll predicate until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
        except Exception as e:  # a predicate may race process startup
            last = e
        if last and not isinstance(last, Exception):
            return last  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {message or predicate} (last: {last!r})")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class Corral:
    """Runs the real `corral` CLI against a temporary home."""

    def __init__(self, home: Path, cwd: Path) -> None:
        self.home = home
        self.cwd = cwd
        self.env = dict(os.environ)
        self.env["CORRAL_HOME"] = str(home)
        self.env.pop("NO_COLOR", None)
        self.env.pop("FORCE_COLOR", None)

    def run(self, *args: str, check: bool = True, timeout: float = 60, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "corral", *args],
            cwd=cwd or self.cwd,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"corral {' '.join(args)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def jlist(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = json.loads(self.run("jlist").stdout)
        return out

    def proc(self, name: str, index: int = 0) -> dict[str, Any]:
        for p in self.jlist():
            if p["name"] == name and p["instance"] == index:
                return p
        raise KeyError(name)

    def daemon_pid(self) -> int | None:
        try:
            return int((self.home / "corral.pid").read_text())
        except (OSError, ValueError):
            return None

    def shutdown(self) -> None:
        pid = self.daemon_pid()
        if (self.home / "corral.sock").exists():
            subprocess.run([sys.executable, "-m", "corral", "kill"], env=self.env, capture_output=True, timeout=60)
        if pid and pid_alive(pid):
            os.kill(pid, 9)


@pytest.fixture
def corral(tmp_path: Path) -> Iterator[Corral]:
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    c = Corral(home, work)
    try:
        yield c
    finally:
        c.shutdown()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def free_port() -> int:
    """A loopback TCP port free right now."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def toml_value(v: Any) -> str:
    """A value in TOML: JSON's scalars and arrays are TOML's; tables inline."""
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    return json.dumps(v)


def ecosystem(*apps: dict[str, Any]) -> str:
    """An ecosystem.toml with these apps."""
    out = []
    for app in apps:
        out.append("[[apps]]")
        out.extend(f"{k} = {toml_value(v)}" for k, v in app.items())
    return "\n".join(out) + "\n"


def proc_environ(pid: int) -> dict[str, str]:
    """The environment a process was exec'd with."""
    with open(f"/proc/{pid}/environ", "rb") as f:
        items = f.read().split(b"\0")
    return dict(item.decode(errors="replace").partition("=")[::2] for item in items if item)
