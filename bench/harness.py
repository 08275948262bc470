"""Plumbing for bench/run.py: drivers for Corral and PM2, /proc readers, bounded polling.

Everything a benchmark starts is owned by a :class:`Tool` session (a fresh
temporary CORRAL_HOME or PM2_HOME); :meth:`Tool.session` kills the daemon and
every process it spawned on the way out, failure or not, and removes the
temporary home.  Processes are only ever ended by their pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
WORK = BENCH_DIR / ".work"
APPS = BENCH_DIR / "apps"
PM2_DIR = WORK / "pm2"

CLI_TIMEOUT = 60.0


class BenchError(RuntimeError):
    """A benchmark could not produce its figure (deadline passed, tool failed...)."""


# ---------------------------------------------------------------- small helpers


def now() -> float:
    return time.perf_counter()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def wait_until(
    pred: Callable[[], Any], timeout: float, interval: float = 0.02, what: str = "condition"
) -> Any:
    """Poll ``pred`` until it returns something truthy; BenchError after ``timeout`` seconds."""
    deadline = now() + timeout
    while True:
        value = pred()
        if value:
            return value
        if now() > deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def real_python() -> str:
    """The real interpreter binary behind this venv (no pyenv shim, no venv symlink)."""
    return os.path.realpath(sys.executable)


# ---------------------------------------------------------------- /proc


def proc_stat_cpu(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # The command name may hold spaces and parentheses (PM2's "God Daemon (...)").
    fields = data[data.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_sched_cpu(pid: int) -> float:
    """CPU time of every thread of a process, in seconds, from /proc/<pid>/task/*/schedstat
    (nanoseconds: fine enough for an idle daemon, where utime+stime counts 10 ms ticks)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def proc_rss(pid: int) -> int:
    """Resident set size in bytes (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def proc_children(pid: int) -> list[int]:
    """Direct children of a process (all its threads)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(p) for p in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def proc_descendants(pid: int) -> list[int]:
    seen: list[int] = []
    todo = proc_children(pid)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo.extend(proc_children(p))
    return seen


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = data[data.rindex(")") + 2 :].split()[0]
    return state != "Z"


def proc_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except (FileNotFoundError, ProcessLookupError):
        return []


class ChildWatcher:
    """Polls a daemon's children every few ms in a thread; records when each pid running ``marker`` first appeared."""

    def __init__(self, daemon_pid: int, marker: str, interval: float = 0.005) -> None:
        self.daemon_pid = daemon_pid
        self.marker = marker
        self.interval = interval
        self.first_seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ChildWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            t = now()
            for pid in proc_children(self.daemon_pid):
                if pid in self.first_seen:
                    continue
                if any(self.marker in a for a in proc_cmdline(pid)):
                    self.first_seen[pid] = t
            self._stop.wait(self.interval)

    def time_of_nth(self, n: int, exclude: set[int] | None = None) -> float | None:
        times = sorted(t for p, t in self.first_seen.items() if not exclude or p not in exclude)
        return times[n - 1] if len(times) >= n else None


# ---------------------------------------------------------------- the two tools


@dataclass
class Proc:
    """One row of a jlist, in the same shape for both tools."""

    id: int
    name: str
    pid: int | None
    status: str
    restarts: int


@dataclass
class AppSpec:
    name: str
    script: str
    args: list[str] = field(default_factory=list)
    instances: int = 1
    interpreter: str | None = None
    autorestart: bool = True
    max_memory_restart: str | None = None  # e.g. "1G": Corral then samples every second


class Tool:
    label = "?"
    home_var = "?"

    def __init__(self) -> None:
        self.home: Path | None = None
        self.env: dict[str, str] = {}
        self.known_pids: set[int] = set()

    # -- to be provided
    def argv(self) -> list[str]:
        raise NotImplementedError

    def pid_file(self) -> Path:
        raise NotImplementedError

    def parse_jlist(self, data: Any) -> list[Proc]:
        raise NotImplementedError

    def write_ecosystem(self, apps: list[AppSpec], folder: Path) -> Path:
        raise NotImplementedError

    def default_out_log(self, name: str) -> Path:
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    # -- shared
    def cli(
        self,
        *args: str,
        timeout: float = CLI_TIMEOUT,
        check: bool = True,
        stdout: Any = subprocess.PIPE,
    ) -> subprocess.CompletedProcess[str]:
        try:
            res = subprocess.run(
                [*self.argv(), *args],
                env=self.env,
                stdout=stdout,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                timeout=timeout,
                cwd=str(self.home),
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"{self.label} {' '.join(args)}: no answer within {timeout:g}s")
        if check and res.returncode != 0:
            raise BenchError(
                f"{self.label} {' '.join(args)} exited {res.returncode}: {(res.stderr or '').strip()[-500:]}"
            )
        return res

    def jlist(self) -> list[Proc]:
        out = self.cli("jlist").stdout
        start = out.find("[")
        if start < 0:
            raise BenchError(f"{self.label} jlist printed no JSON: {out[:200]!r}")
        procs = self.parse_jlist(json.loads(out[start:]))
        for p in procs:
            if p.pid:
                self.known_pids.add(p.pid)
        return procs

    def daemon_pid(self) -> int:
        def read() -> int | None:
            try:
                pid = int(self.pid_file().read_text().strip())
            except (OSError, ValueError):
                return None
            return pid if pid_alive(pid) else None

        pid: int = wait_until(read, 15, what=f"{self.label} daemon pid file")
        return pid

    def start_daemon(self) -> int:
        self.cli("ping")
        return self.daemon_pid()

    def start_script(self, spec: AppSpec) -> None:
        args = ["start", spec.script, "--name", spec.name]
        if spec.instances != 1:
            args += ["-i", str(spec.instances)]
        if spec.interpreter:
            args += ["--interpreter", spec.interpreter]
        if not spec.autorestart:
            args.append("--no-autorestart")
        if spec.args:
            args += ["--", *spec.args]
        self.cli(*args, stdout=subprocess.DEVNULL)

    def start_ecosystem(self, apps: list[AppSpec]) -> None:
        assert self.home is not None
        path = self.write_ecosystem(apps, self.home)
        self.cli("start", str(path), stdout=subprocess.DEVNULL)

    def wait_online(self, count: int, timeout: float, name: str | None = None) -> list[Proc]:
        def check() -> list[Proc] | None:
            procs = [p for p in self.jlist() if name is None or p.name == name]
            online = [p for p in procs if p.status == "online" and p.pid]
            return online if len(online) >= count else None

        procs: list[Proc] = wait_until(
            check, timeout, interval=0.01, what=f"{count} {self.label} processes online"
        )
        return procs

    def kill_all(self) -> None:
        """``<tool> kill``, then SIGKILL by pid whatever survived (daemon and the apps we saw)."""
        if self.home is None:
            return
        daemon: int | None = None
        with contextlib.suppress(OSError, ValueError):
            daemon = int(self.pid_file().read_text().strip())
        if daemon and pid_alive(daemon):
            self.known_pids.update(proc_descendants(daemon))
        with contextlib.suppress(BenchError):
            self.cli("kill", timeout=45, check=False)
        deadline = now() + 10
        leftovers = [p for p in ([daemon] if daemon else []) + sorted(self.known_pids) if p]
        while now() < deadline and any(pid_alive(p) for p in leftovers):
            time.sleep(0.05)
        for p in leftovers:
            if pid_alive(p) and self._ours(p):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(p, signal.SIGKILL)
                sys.stderr.write(
                    f"bench: {self.label}: pid {p} outlived '{self.label} kill'; sent SIGKILL\n"
                )

    def _ours(self, pid: int) -> bool:
        """Only kill a leftover whose command line or environment names our temporary home."""
        assert self.home is not None
        home = str(self.home)
        if any(home in a for a in proc_cmdline(pid)):
            return True
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                return home.encode() in f.read()
        except OSError:
            return False

    @contextlib.contextmanager
    def session(self) -> Iterator[Tool]:
        """A fresh home for this tool; on the way out, everything is killed and the home removed."""
        self.home = Path(tempfile.mkdtemp(prefix=f"bench-{self.label.lower()}-", dir="/tmp"))
        self.env = self.make_env()
        self.known_pids = set()
        try:
            yield self
        finally:
            try:
                self.kill_all()
            finally:
                shutil.rmtree(self.home, ignore_errors=True)
                self.home = None

    def make_env(self) -> dict[str, str]:
        env = dict(os.environ)
        for k in ("CORRAL_HOME", "PM2_HOME"):
            env.pop(k, None)
        assert self.home is not None
        env[self.home_var] = str(self.home)
        env["NO_COLOR"] = "1"
        return env


class Corral(Tool):
    label = "Corral"
    home_var = "CORRAL_HOME"
    # When set (run.py --corral-ref), Corral runs from this copy of src/ instead of the working tree.
    src: Path | None = None

    def make_env(self) -> dict[str, str]:
        env = super().make_env()
        env.update(self.python_env())
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        return env

    @classmethod
    def python_env(cls) -> dict[str, str]:
        """Where Corral's code comes from, and a bytecode cache as an installed package has.

        Some machines set PYTHONDONTWRITEBYTECODE=1, which makes every CLI call compile Corral's
        sources again (~10 ms); the cache lives in bench/.work so that src/ is not written to.
        """
        env = {"PYTHONPYCACHEPREFIX": str(WORK / "pycache")}
        if cls.src is not None:
            env["PYTHONPATH"] = str(cls.src)
        return env

    def warm_up(self) -> None:
        """Fill the bytecode cache before anything is timed."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(self.python_env())
        code = "import corral.cli, corral.cli.client, corral.cli.render, corral.daemon.server, psutil"
        subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
        subprocess.run(
            [*self.argv(), "--version"], env=env, check=True, timeout=120, capture_output=True
        )

    def argv(self) -> list[str]:
        if self.src is not None:
            return [str(self.src.parent / "bin" / "corral")]
        exe = Path(sys.executable).parent / "corral"
        return [str(exe)] if exe.exists() else [sys.executable, "-m", "corral"]

    def pid_file(self) -> Path:
        assert self.home is not None
        return self.home / "corral.pid"

    def parse_jlist(self, data: Any) -> list[Proc]:
        return [
            Proc(p["id"], p["name"], p.get("pid"), p["status"], p.get("restarts", 0)) for p in data
        ]

    def write_ecosystem(self, apps: list[AppSpec], folder: Path) -> Path:
        lines = []
        for a in apps:
            lines.append("[[apps]]")
            lines.append(f"name = {json.dumps(a.name)}")
            lines.append(f"script = {json.dumps(a.script)}")
            if a.args:
                lines.append(f"args = {json.dumps(a.args)}")
            lines.append(f"instances = {a.instances}")
            if a.interpreter:
                lines.append(f"interpreter = {json.dumps(a.interpreter)}")
            lines.append(f"autorestart = {'true' if a.autorestart else 'false'}")
            if a.max_memory_restart:
                lines.append(f"max_memory_restart = {json.dumps(a.max_memory_restart)}")
            lines.append("")
        path = folder / "ecosystem.toml"
        path.write_text("\n".join(lines))
        return path

    def default_out_log(self, name: str) -> Path:
        assert self.home is not None
        return self.home / "logs" / f"{name}-out.log"

    def version(self) -> str:
        env = dict(os.environ)
        env.update(self.python_env())
        res = subprocess.run(
            [*self.argv(), "--version"], capture_output=True, text=True, timeout=30, env=env
        )
        return (res.stdout or res.stderr).strip().replace("corral ", "")


class PM2(Tool):
    label = "PM2"
    home_var = "PM2_HOME"

    def argv(self) -> list[str]:
        return [str(PM2_DIR / "node_modules" / ".bin" / "pm2")]

    def pid_file(self) -> Path:
        assert self.home is not None
        return self.home / "pm2.pid"

    def parse_jlist(self, data: Any) -> list[Proc]:
        out = []
        for p in data:
            env = p.get("pm2_env") or {}
            out.append(
                Proc(
                    p["pm_id"],
                    p["name"],
                    p.get("pid") or None,
                    env.get("status", "?"),
                    env.get("restart_time", 0),
                )
            )
        return out

    def write_ecosystem(self, apps: list[AppSpec], folder: Path) -> Path:
        doc = {
            "apps": [
                {
                    "name": a.name,
                    "script": a.script,
                    **({"args": a.args} if a.args else {}),
                    "instances": a.instances,
                    "exec_mode": "fork",
                    **({"interpreter": a.interpreter} if a.interpreter else {}),
                    "autorestart": a.autorestart,
                    **({"max_memory_restart": a.max_memory_restart} if a.max_memory_restart else {}),
                }
                for a in apps
            ]
        }
        path = folder / "ecosystem.json"
        path.write_text(json.dumps(doc, indent=2))
        return path

    def default_out_log(self, name: str) -> Path:
        assert self.home is not None
        return self.home / "logs" / f"{name}-out.log"

    def version(self) -> str:
        pkg = PM2_DIR / "node_modules" / "pm2" / "package.json"
        return str(json.loads(pkg.read_text())["version"])

    def make_env(self) -> dict[str, str]:
        env = super().make_env()
        env["PM2_DISCRETE_MODE"] = "true"  # no banner on stdout
        return env


def ensure_pm2(spec: str = "pm2") -> None:
    """``npm install pm2`` into bench/.work/pm2, once; later runs reuse it."""
    binary = PM2_DIR / "node_modules" / ".bin" / "pm2"
    if binary.exists():
        return
    if shutil.which("npm") is None:
        raise BenchError(
            "npm is not installed: PM2 cannot be installed (apt-get install nodejs npm)"
        )
    PM2_DIR.mkdir(parents=True, exist_ok=True)
    sys.stderr.write(f"bench: installing {spec} into {PM2_DIR} (cached for later runs)\n")
    res = subprocess.run(
        [
            "npm",
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
            str(PM2_DIR),
            spec,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if res.returncode != 0 or not binary.exists():
        raise BenchError(f"npm install {spec} failed: {res.stderr.strip()[-1000:]}")


def corral_snapshot(ref: str) -> tuple[Path, str]:
    """Extract ``src/`` at a git ref (``git archive``: read-only) into bench/.work; returns (src folder, full sha)."""
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if sha.returncode != 0:
        raise BenchError(f"unknown git ref {ref!r}: {sha.stderr.strip()}")
    full = sha.stdout.strip()
    dest = WORK / f"corral-{full[:12]}"
    launcher = dest / "bin" / "corral"
    if not launcher.exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", full, "src", "pyproject.toml"],
            capture_output=True,
            check=False,
        )
        if archive.returncode != 0:
            raise BenchError(
                f"git archive {full} failed: {archive.stderr.decode(errors='replace').strip()}"
            )
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
        # The `corral` console script as pip would write it for that commit's entry point.
        with open(dest / "pyproject.toml", "rb") as f:
            entry = tomllib.load(f)["project"]["scripts"]["corral"]
        module, func = entry.split(":")
        launcher.parent.mkdir(exist_ok=True)
        launcher.write_text(
            f"#!{sys.executable}\nimport sys\nfrom {module} import {func}\n"
            f"if __name__ == '__main__':\n    sys.exit({func}())\n"
        )
        launcher.chmod(0o755)
    return dest / "src", full
