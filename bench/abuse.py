"""Daemon CPU, memory and log growth under abuse: this tree vs another commit (default main).

Not a Corral-vs-PM2 benchmark (PM2 has no sd_notify sockets, no gz history
reader): it compares Corral before and after the hardening of issue #12, each
run in a fresh temporary CORRAL_HOME from its own source tree, and prints a
markdown table for docs/benchmarks.md.

    .venv/bin/python bench/abuse.py [--ref main]

Needs root for the foreign-uid flood (sent as nobody).  Every process started
here is ended by its pid (`corral kill`, then SIGKILL of the daemon pid).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / ".work"
CLK = os.sysconf("SC_CLK_TCK")
FLOOD = 20_000

SENDER = """
import os, socket, sys
if os.getuid() == 0:
    os.setgid(65534); os.setuid(65534)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.settimeout(5)
for i in range(int(sys.argv[2])):
    try:
        s.sendto(b"READY=1\\nSTATUS=forged", "\\0" + sys.argv[1])
    except OSError:
        pass
"""


def cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def source_tree(ref: str | None) -> Path:
    if ref is None:
        return REPO / "src"
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", ref], capture_output=True, text=True, check=True).stdout.strip()
    dest = WORK / f"corral-{sha[:12]}"
    if not (dest / "src" / "corral").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", sha, "src"], capture_output=True, check=True).stdout
        tmp = dest / "src.tar"
        tmp.write_bytes(archive)
        with tarfile.open(tmp) as t:
            t.extractall(dest, filter="data")
        tmp.unlink()
    return dest / "src"


class Session:
    def __init__(self, src: Path) -> None:
        self.top = Path(tempfile.mkdtemp(prefix="bench-abuse-"))
        self.home = self.top / "home"
        self.env = {**os.environ, "CORRAL_HOME": str(self.home), "PYTHONPATH": str(src)}

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "corral", *args], env=self.env, cwd=self.top, capture_output=True, text=True, timeout=120)

    def daemon(self) -> int:
        return int((self.home / "corral.pid").read_text())

    def close(self) -> None:
        try:
            pid = self.daemon()
        except (OSError, ValueError):
            pid = None
        self.cli("kill")
        if pid:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.top, ignore_errors=True)


def wait(pred, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise RuntimeError("deadline passed")


def start_idle(s: Session) -> int:
    (s.top / "idle.py").write_text("import time\nwhile True:\n    time.sleep(1)\n")
    (s.top / "ecosystem.toml").write_text('[[apps]]\nname = "idle"\nscript = "idle.py"\n')
    out = s.cli("start", "ecosystem.toml")
    assert out.returncode == 0, out.stderr
    procs = json.loads(s.cli("jlist").stdout)
    return int(procs[0]["pid"])


def notify_flood(src: Path) -> dict[str, float]:
    s = Session(src)
    try:
        app_pid = start_idle(s)
        env = dict(item.decode().split("=", 1) for item in Path(f"/proc/{app_pid}/environ").read_bytes().split(b"\0") if b"=" in item)
        address = env["NOTIFY_SOCKET"].lstrip("@")
        d = s.daemon()
        log = s.home / "corral.log"
        size0, cpu0 = log.stat().st_size, cpu(d)
        sender = subprocess.Popen([sys.executable, "-c", SENDER, address, str(FLOOD)])
        lat = []
        while sender.poll() is None:
            t = time.perf_counter()
            s.cli("jlist")
            lat.append(time.perf_counter() - t)
        sender.wait()
        t = time.perf_counter()
        s.cli("ping")
        lat.append(time.perf_counter() - t)
        time.sleep(1.0)  # let the daemon drain what is queued
        return {"cpu": cpu(d) - cpu0, "log": log.stat().st_size - size0, "jlist": max(lat), "rss": status_kb(d, "VmRSS") / 1024}
    finally:
        s.close()


def gz_bomb(src: Path) -> dict[str, float]:
    s = Session(src)
    try:
        start_idle(s)
        logs = s.home / "logs"
        bomb = logs / "idle-out__2026-11-28_10-30-00.log.gz"
        with gzip.open(bomb, "wb", compresslevel=9) as f:
            line = b"x" * 99 + b"\n"
            for _ in range(150):
                f.write(line * 10_000)  # 150 MB uncompressed
        os.utime(bomb, (time.time() - 60, time.time() - 60))
        d = s.daemon()
        rss0 = status_kb(d, "VmRSS")
        # VmHWM: the peak since the daemon started (reset not possible: read before and after)
        hwm0 = status_kb(d, "VmHWM")
        t = time.perf_counter()
        out = s.cli("logs", "idle", "--lines", "15", "--nostream", "--raw")
        took = time.perf_counter() - t
        assert out.returncode == 0, out.stderr
        return {"time": took, "peak_growth": (status_kb(d, "VmHWM") - hwm0) / 1024, "rss_after": (status_kb(d, "VmRSS") - rss0) / 1024, "gz_kb": bomb.stat().st_size / 1024}
    finally:
        s.close()


def http_idle(src: Path) -> dict[str, float]:
    s = Session(src)
    port_sock = socket.socket()
    port_sock.bind(("127.0.0.1", 0))
    port = port_sock.getsockname()[1]
    port_sock.close()
    s.env["CORRAL_HTTP"] = f"127.0.0.1:{port}"
    held: list[socket.socket] = []
    try:
        s.cli("ping")
        d = s.daemon()
        wait(lambda: socket.create_connection(("127.0.0.1", port), timeout=1))
        fds0 = len(os.listdir(f"/proc/{d}/fd"))
        for _ in range(256):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(0.5)
        fds = len(os.listdir(f"/proc/{d}/fd")) - fds0
        req = b"GET /metrics HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
        for c in held:
            c.close()
        held.clear()
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(req)
            status = c.recv(100).split(b" ")[1].decode()
        return {"fds": fds, "rebinding_status": float(status)}
    finally:
        for c in held:
            c.close()
        s.close()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ref", default="main", help="the commit to compare with (default main)")
    ns = p.parse_args()
    trees = {"before": source_tree(ns.ref), "after": source_tree(None)}
    results: dict[str, dict[str, dict[str, float]]] = {}
    for label, src in trees.items():
        results[label] = {"notify": notify_flood(src), "gz": gz_bomb(src), "http": http_idle(src)}
        print(label, json.dumps(results[label]), file=sys.stderr)
    b, a = results["before"], results["after"]
    rows = [
        (f"daemon CPU for {FLOOD:,} foreign notify datagrams (as nobody)", f"{b['notify']['cpu']:.2f} s", f"{a['notify']['cpu']:.2f} s"),
        ("corral.log growth during that flood", f"{b['notify']['log']:,.0f} B", f"{a['notify']['log']:,.0f} B"),
        ("slowest `corral jlist` during that flood", f"{b['notify']['jlist']:.2f} s", f"{a['notify']['jlist']:.2f} s"),
        (f"`corral logs --lines 15` over a {b['gz']['gz_kb']:.0f} KiB .gz that expands to 150 MB: time", f"{b['gz']['time']:.2f} s", f"{a['gz']['time']:.2f} s"),
        ("… daemon peak RSS growth (VmHWM)", f"{b['gz']['peak_growth']:.0f} MiB", f"{a['gz']['peak_growth']:.0f} MiB"),
        ("… daemon RSS growth after it", f"{b['gz']['rss_after']:.0f} MiB", f"{a['gz']['rss_after']:.0f} MiB"),
        ("daemon fds held by 256 idle HTTP connections", f"{b['http']['fds']:.0f}", f"{a['http']['fds']:.0f}"),
        ("HTTP status for `Host: evil.example` (DNS rebinding)", f"{b['http']['rebinding_status']:.0f}", f"{a['http']['rebinding_status']:.0f}"),
    ]
    print(f"| measure | before ({ns.ref}) | after (this tree) |")
    print("|---|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
