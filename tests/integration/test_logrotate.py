"""Log rotation, retention, compression, external rotation, odd targets, disk full and
reading history, on real processes through the real CLI."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from corral.logs.rotate import rotated_files
from tests.conftest import Corral, wait_until, write

MiB = 1024 * 1024
ROTATED_NAME = re.compile(r"__\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}(?:_\d+)?\.log(?:\.gz)?$")

# Numbered lines of exactly 99 bytes (newline included): "<instance> <7-digit number> x...".
FLOOD = """
import os, sys, time
inst = int(os.environ.get("CORRAL_INSTANCE", "0"))
n = int(sys.argv[1])
w = sys.stdout.write
pad = "x" * 88
for i in range(n):
    w(f"{inst} {i:07d} {pad}\\n")
sys.stdout.flush()
open(f"done-{inst}", "w").close()
time.sleep(600)
"""


def flood_line(inst: int, i: int) -> bytes:
    return f"{inst} {i:07d} {'x' * 88}\n".encode()


def flood_bytes(inst: int, start: int, stop: int) -> bytes:
    pad = "x" * 88
    return "".join(f"{inst} {i:07d} {pad}\n" for i in range(start, stop)).encode()


def start_eco(corral: Corral, toml: str, name: str = "eco.toml") -> None:
    write(corral.cwd / name, toml)
    corral.run("start", name)


def describe(corral: Corral, name: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads(corral.run("describe", name, "--json").stdout)
    return sorted(out, key=lambda p: p["instance"])


def read_any(path: str) -> bytes:
    if path.endswith(".gz"):
        with gzip.open(path, "rb") as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


def uncompressed_size(path: str) -> int:
    """Size of a plain file, or of a .gz file's content (its trailer's ISIZE)."""
    if not path.endswith(".gz"):
        return os.path.getsize(path)
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        return int.from_bytes(f.read(4), "little")


def whole_log(path: Path) -> bytes:
    """Rotated files (oldest first) then the current file, as one byte string."""
    return b"".join(read_any(p) for p in [*rotated_files(str(path)), str(path)])


def settled(path: Path, expected_size: int) -> bool:
    """Every byte has reached the files and every rotated file is compressed."""
    try:
        rotated = rotated_files(str(path))
        if any(not p.endswith(".gz") for p in rotated):
            return False
        return sum(uncompressed_size(p) for p in [*rotated, str(path)]) == expected_size
    except OSError:  # a file renamed or compressed while we looked
        return False


def daemon_log(corral: Corral) -> str:
    return (corral.home / "corral.log").read_text(errors="replace")


def stays_same(get: Any, seconds: float) -> bool:
    """True when get() keeps returning the same value for `seconds` (a bounded negative check)."""
    first = get()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if get() != first:
            return False
        time.sleep(0.05)
    return True


# ---------------------------------------------------------------- size rotation under a flood


def test_flood_of_a_million_lines_rotates_compresses_and_loses_nothing(corral: Corral) -> None:
    n = 250_000
    write(corral.cwd / "flood.py", FLOOD)
    start_eco(
        corral,
        f"""
[[apps]]
name = "flood"
script = "flood.py"
args = ["{n}"]
instances = 4
autorestart = false
log_max_size = "1M"
log_compress = true
log_retain = 1000
""",
    )
    logs = corral.home / "logs"
    done = [corral.cwd / f"done-{k}" for k in range(4)]

    # compression runs while the flood goes on: a .gz appears before every instance has finished
    def gz_during_flood() -> tuple[bool, list[Any]] | None:
        if not list(logs.glob("flood-out-*__*.log.gz")):
            return None
        return all(d.exists() for d in done), [p["status"] for p in corral.jlist() if p["name"] == "flood"]

    finished_first, statuses = wait_until(gz_during_flood, timeout=60, interval=0.01, message="a compressed rotated file")
    assert not finished_first, "the flood had already ended when the first .gz appeared"
    assert statuses == ["online"] * 4

    wait_until(lambda: all(d.exists() for d in done), timeout=90, interval=0.2)
    currents = [logs / f"flood-out-{k}.log" for k in range(4)]
    for cur in currents:
        wait_until(lambda cur=cur: settled(cur, n * 99), timeout=60, interval=0.2, message=f"{cur.name} complete and compressed")

    for k, cur in enumerate(currents):
        rotated = rotated_files(str(cur))
        assert len(rotated) >= (n * 99) // MiB
        assert os.path.getsize(cur) < MiB  # a file that reaches the limit is rotated at once
        for p in rotated:
            assert ROTATED_NAME.search(os.path.basename(p)), p
            assert os.path.basename(p).startswith(f"flood-out-{k}__")
            # rotated at the line that would pass 1M, never in the middle of a line:
            # each rotated file is within one line of the limit, and not over it
            assert MiB - 99 < uncompressed_size(p) <= MiB
        data = whole_log(cur)
        # every line exactly once, in order, whole
        assert data == flood_bytes(k, 0, n), f"instance {k}: content differs"
        assert not rotated_files(str(logs / f"flood-error-{k}.log"))

    procs = describe(corral, "flood")
    assert len(procs) == 4
    for p in procs:
        assert p["status"] == "online"
        assert p["log_rotations"] == len(rotated_files(str(logs / f"flood-out-{p['instance']}.log")))
        assert p["log_lines_dropped"] == 0
        assert p["log_errors"] == []
    assert "log-error" not in daemon_log(corral)


def test_retention_keeps_at_most_retain_rotated_files_per_log(corral: Corral) -> None:
    n = 40_000  # ~4M per instance: about 35 rotations at 100K
    write(corral.cwd / "flood.py", FLOOD)
    start_eco(
        corral,
        f"""
[[apps]]
name = "keep"
script = "flood.py"
args = ["{n}"]
instances = 2
autorestart = false
log_max_size = "100K"
log_compress = true
log_retain = 3
""",
    )
    logs = corral.home / "logs"
    wait_until(lambda: all((corral.cwd / f"done-{k}").exists() for k in range(2)), timeout=60, interval=0.1)
    for k in range(2):
        cur = logs / f"keep-out-{k}.log"

        def newest_kept(cur: Path = cur, last: bytes = flood_line(k, n - 1)) -> bool:
            rotated = rotated_files(str(cur))
            return len(rotated) <= 3 and all(p.endswith(".gz") for p in rotated) and whole_log(cur).endswith(last)

        wait_until(newest_kept, timeout=30, interval=0.1, message=f"{cur.name}: retention applied")
        rotated = rotated_files(str(cur))
        assert len(rotated) == 3
        # what is kept is the newest part of the log: contiguous, ending with the last line
        data = whole_log(cur)
        first = int(data[: data.index(b"\n")].split()[1])
        assert first > 0
        assert data == flood_bytes(k, first, n)
    assert describe(corral, "keep")[0]["log_rotations"] > 3  # more rotations than files kept
    # neither the other instance's files nor the error logs were touched
    assert sorted(p.name for p in logs.glob("keep-error*")) == ["keep-error-0.log", "keep-error-1.log"]


# ---------------------------------------------------------------- scheduled rotation

SLOW = """
import itertools, sys, time
for i in itertools.count():
    print(f"slow {i}", flush=True)
    time.sleep(float(sys.argv[1]))
"""


def numbers(data: bytes, word: str = "slow") -> list[int]:
    return [int(line.split()[1]) for line in data.decode().splitlines() if line.startswith(word + " ")]


def test_scheduled_rotation_every_second(corral: Corral) -> None:
    # croniter 7 reads a 6th field as seconds: "* * * * * *" fires every second
    write(corral.cwd / "slow.py", SLOW)
    start_eco(
        corral,
        """
[[apps]]
name = "sched"
script = "slow.py"
args = ["0.1"]
log_rotate_interval = "* * * * * *"
""",
    )
    cur = corral.home / "logs" / "sched-out.log"
    wait_until(lambda: len(rotated_files(str(cur))) >= 3, timeout=15, interval=0.1, message="three scheduled rotations")
    assert describe(corral, "sched")[0]["log_rotations"] >= 3
    corral.run("stop", "sched")
    rotated = rotated_files(str(cur))
    for p in rotated:
        assert ROTATED_NAME.search(os.path.basename(p)), p
        assert os.path.getsize(p) > 0  # an empty file is never rotated
    got = numbers(whole_log(cur))
    assert got == list(range(len(got)))
    # the empty error log was not rotated
    assert rotated_files(str(corral.home / "logs" / "sched-error.log")) == []


# ---------------------------------------------------------------- external rotation


def start_slow(corral: Corral, name: str = "ext") -> Path:
    write(corral.cwd / "slow.py", SLOW)
    corral.run("start", "slow.py", "--name", name, "--", "0.05")
    log = corral.home / "logs" / f"{name}-out.log"
    wait_until(lambda: log.exists() and log.stat().st_size > 0)
    return log


def assert_switched(log: Path, moved: Path) -> None:
    """The fresh file receives the next lines, the moved one stops growing, nothing is lost."""
    wait_until(lambda: log.exists() and len(numbers(log.read_bytes())) >= 3, timeout=5, message="lines in the new file")
    assert stays_same(lambda: moved.stat().st_size, 1.0), "the moved file still grows"
    got = numbers(moved.read_bytes()) + numbers(log.read_bytes())
    assert got == list(range(got[0], got[0] + len(got)))  # contiguous: no line lost or doubled


def test_external_rotation_then_reload_logs(corral: Corral) -> None:
    log = start_slow(corral)
    moved = log.with_name("ext-out.log.1")
    os.rename(log, moved)
    result = corral.run("reloadLogs")
    assert re.search(r"reopened \d+ log files", result.stderr)
    assert_switched(log, moved)
    assert numbers(moved.read_bytes())[0] == 0
    assert "reopened" in daemon_log(corral)


def test_external_rotation_then_sigusr2(corral: Corral) -> None:
    log = start_slow(corral)
    moved = log.with_name("ext-out.log.1")
    os.rename(log, moved)
    pid = corral.daemon_pid()
    assert pid
    os.kill(pid, signal.SIGUSR2)
    assert_switched(log, moved)
    wait_until(lambda: re.search(r"reopened \d+ log files", daemon_log(corral)), timeout=5)
    assert corral.proc("ext")["status"] == "online"


def test_deleted_log_is_recreated_without_a_signal(corral: Corral) -> None:
    log = start_slow(corral)
    os.unlink(log)
    # the daemon checks every second whether its files were moved or deleted
    wait_until(lambda: log.exists() and len(numbers(log.read_bytes())) >= 2, timeout=3, message="the log recreated")
    got = numbers(log.read_bytes())
    assert got == list(range(got[0], got[0] + len(got)))
    assert "was moved or deleted" in daemon_log(corral)


# ---------------------------------------------------------------- non-regular targets


def test_fifo_target_is_written_and_never_rotated(corral: Corral) -> None:
    fifo = corral.cwd / "pipe.log"
    os.mkfifo(fifo)
    received: list[str] = []

    def reader() -> None:
        with open(fifo, "rb") as f:  # blocks until the daemon opens it for writing
            for line in f:
                received.append(line.decode().rstrip("\n"))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    app = "import time\nfor i in range(300):\n    print(f'fifo {i:04d} ' + 'y' * 40, flush=True)\nprint('all sent', flush=True)\ntime.sleep(600)\n"
    write(corral.cwd / "f.py", app)
    try:
        start_eco(
            corral,
            f"""
[[apps]]
name = "fifo"
script = "f.py"
out_file = "{fifo}"
log_max_size = "1K"
""",
        )
        wait_until(lambda: received and received[-1] == "all sent", timeout=10, message="lines through the FIFO")
        assert received[:-1] == [f"fifo {i:04d} " + "y" * 40 for i in range(300)]
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)
        assert [p.name for p in corral.cwd.iterdir() if p.name.startswith("pipe")] == ["pipe.log"]
        p = describe(corral, "fifo")[0]
        assert (p["log_rotations"], p["log_errors"], p["log_lines_dropped"]) == (0, [], 0)
        assert "log-error" not in daemon_log(corral)
        assert "rotating" not in daemon_log(corral)
        corral.run("delete", "fifo")  # the daemon closes its end: the reader sees EOF
        thread.join(10)
        assert not thread.is_alive()
    finally:
        if thread.is_alive():  # unblock a reader still waiting in open()
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            corral.shutdown()
            thread.join(10)


def test_fifo_target_without_a_reader_does_not_freeze_the_daemon(corral: Corral) -> None:
    fifo = corral.cwd / "nobody.log"
    os.mkfifo(fifo)
    write(corral.cwd / "f.py", "import time\nprint('hello', flush=True)\ntime.sleep(600)\n")
    write(corral.cwd / "eco.toml", f'[[apps]]\nname = "lonely"\nscript = "f.py"\nout_file = "{fifo}"\n')
    corral.run("ping")
    try:
        try:
            corral.run("start", "eco.toml", timeout=5)
            assert corral.proc("lonely")["status"] == "online"
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"the daemon stopped answering: {e}")
    finally:
        # a reader lets a blocked open() return, so the daemon can be ended normally
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            wait_until(lambda: corral.run("ping", check=False, timeout=10).returncode == 0, timeout=20)
        finally:
            os.close(fd)


def run_runtime_with_dev_stdout(tmp_path: Path) -> tuple[list[str], list[str], list[str]]:
    """corral runtime with out_file = /dev/stdout (a pipe read by the test): (expected, stdout lines, /dev before)."""
    app = "import time\nfor i in range(200):\n    print(f'rt {i:04d} ' + 'z' * 40, flush=True)\ntime.sleep(600)\n"
    write(tmp_path / "a.py", app)
    eco = write(
        tmp_path / "eco.toml",
        """
[[apps]]
name = "rt"
script = "a.py"
out_file = "/dev/stdout"
log_max_size = "1K"
""",
    )
    env = dict(os.environ, CORRAL_HOME=str(tmp_path / "rt-home"))
    before = sorted(os.listdir("/dev"))
    proc = subprocess.Popen([sys.executable, "-m", "corral", "runtime", str(eco)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.append(raw.decode().rstrip("\n"))

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    expected = [f"rt {i:04d} " + "z" * 40 for i in range(200)]
    try:
        wait_until(lambda: expected[-1] in lines, timeout=15, message="lines on stdout")
        # the last line may still be on its way through the second path: wait until stdout is quiet
        stays_same(lambda: len(lines), 0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            thread.join(10)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.returncode == 0, stderr
    assert "log-error" not in stderr
    return expected, [ln for ln in lines if ln.startswith("rt ")], before


def test_dev_stdout_target_under_runtime(tmp_path: Path) -> None:
    expected, written, before = run_runtime_with_dev_stdout(tmp_path)
    assert set(written) == set(expected)  # every line whole, none missing
    assert list(dict.fromkeys(written)) == expected  # in order
    # a pipe is not rotated: nothing renamed or created next to /dev/stdout
    assert sorted(os.listdir("/dev")) == before
    assert os.path.islink("/dev/stdout")


def test_dev_stdout_target_under_runtime_prints_each_line_once(tmp_path: Path) -> None:
    expected, written, _ = run_runtime_with_dev_stdout(tmp_path)
    assert written == expected


# ---------------------------------------------------------------- disk full

DISKFULL = """
import itertools, sys, time
pad = "d" * 90
for i in itertools.count():
    sys.stdout.write(f"{i:08d} {pad}\\n")  # 100 bytes: a 256K disk fills in the middle of a line
    sys.stdout.flush()
    time.sleep(0.0005)
"""
WHOLE = re.compile(rb"^\d{8} d{90}$")


def disk_full_scenario(corral: Corral) -> dict[str, Any]:
    """Fill a 256K tmpfs holding the app's log, then make room; returns what was seen."""
    full = corral.cwd / "full"
    full.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(full)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    seen: dict[str, Any] = {}
    try:
        log = full / "disk-out.log"
        write(corral.cwd / "disk.py", DISKFULL)
        start_eco(corral, f'[[apps]]\nname = "disk"\nscript = "disk.py"\nout_file = "{log}"\n')
        # the disk fills; lines keep coming and are counted as dropped, the failure reported once
        failing = wait_until(lambda: (p := describe(corral, "disk")[0])["log_lines_dropped"] > 50 and p, timeout=30, interval=0.1, message="lines dropped")
        seen["failing"] = failing
        seen["size_full"] = log.stat().st_size
        seen["daemon_log_full"] = daemon_log(corral)
        seen["pid"] = corral.proc("disk")["pid"]
        subprocess.run(["mount", "-o", "remount,size=4M", str(full)], check=True)
        # writing resumes: whole new lines after the ones written before the disk filled
        wait_until(lambda: log.stat().st_size > seen["size_full"] + 2000, timeout=10, message="writing resumed")
        recovered = wait_until(lambda: re.search(r"\[disk:\d+\] log-recovered: writing to (\S+) again; (\d+) lines could not be written", daemon_log(corral)), timeout=5)
        seen["recovered"] = (recovered.group(1), int(recovered.group(2)))
        seen["after"] = describe(corral, "disk")[0]
        seen["proc_after"] = corral.proc("disk")
        seen["daemon_log"] = daemon_log(corral)
        corral.run("stop", "disk")
        seen["data"] = log.read_bytes()
        seen["log"] = str(log)
    finally:
        corral.shutdown()  # the daemon holds the file open: end it before unmounting
        if subprocess.run(["umount", str(full)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(full)], capture_output=True)
    return seen


def test_disk_full_app_keeps_running_losses_counted_and_reported_once(corral: Corral) -> None:
    seen = disk_full_scenario(corral)
    failing = seen["failing"]
    assert failing["status"] == "online"
    assert len(failing["log_errors"]) == 1 and "No space left on device" in failing["log_errors"][0]
    assert seen["size_full"] <= 256 * 1024
    # reported once, not once per dropped line
    assert seen["daemon_log_full"].count("log-error") == 1
    assert seen["daemon_log"].count("log-error") == 1
    assert seen["daemon_log"].count("log-recovered") == 1
    assert re.search(r"\[disk:\d+\] log-error: cannot write .*disk-out\.log: No space left on device", seen["daemon_log"])
    # the app never noticed: same process, still online
    proc = seen["proc_after"]
    assert (proc["status"], proc["pid"], proc["restarts"]) == ("online", seen["pid"], 0)
    after = seen["after"]
    assert after["log_errors"] == []
    path, dropped = seen["recovered"]
    assert path == seen["log"]
    assert dropped == after["log_lines_dropped"] >= failing["log_lines_dropped"] > 50
    # lines before the disk filled are all there; new numbered lines came after the recovery
    lines = seen["data"].split(b"\n")
    assert lines.pop() == b""
    before = [ln for ln in lines[: seen["size_full"] // 100] if WHOLE.match(ln)]
    assert [int(ln[:8]) for ln in before] == list(range(len(before))) and len(before) > 2500
    later = [int(ln[:8]) for ln in lines[len(before) :] if WHOLE.match(ln)]
    assert len(later) > 20 and later == sorted(later) and later[0] > len(before) + 50


def test_disk_full_leaves_only_whole_lines(corral: Corral) -> None:
    seen = disk_full_scenario(corral)
    lines = seen["data"].split(b"\n")
    assert lines.pop() == b""
    broken = [ln for ln in lines if not WHOLE.match(ln)]
    assert broken == []
    got = [int(ln[:8]) for ln in lines]
    missing = got[-1] + 1 - len(got)
    assert missing == seen["after"]["log_lines_dropped"]


# ---------------------------------------------------------------- reading history

# Numbered 99-byte lines in ~10K batches (so size rotation happens every ~100K), then
# "done-<instance>"; waits for a "go" file, prints "after go", and sleeps (or exits).
CHUNKED = """
import os, sys, time
inst = int(os.environ.get("CORRAL_INSTANCE", "0"))
n = int(sys.argv[1])
pad = "x" * 88
for start in range(0, n, 100):
    sys.stdout.write("".join(f"{inst} {i:07d} {pad}\\n" for i in range(start, min(n, start + 100))))
    sys.stdout.flush()
    time.sleep(0.002)
open(f"done-{inst}", "w").close()
if sys.argv[2:] == ["exit"]:
    sys.exit(0)
while not os.path.exists("go"):
    time.sleep(0.02)
print("after go", flush=True)
time.sleep(600)
"""

ROTATING = """
[[apps]]
name = "{name}"
script = "chunked.py"
args = ["{n}"{extra}]
autorestart = false
log_max_size = "100K"
log_compress = true
"""


def start_chunked(corral: Corral, name: str, n: int, exit_after: bool = False) -> Path:
    write(corral.cwd / "chunked.py", CHUNKED)
    start_eco(corral, ROTATING.format(name=name, n=n, extra=', "exit"' if exit_after else ""))
    cur = corral.home / "logs" / f"{name}-out.log"
    wait_until(lambda: settled(cur, n * 99), timeout=30, interval=0.1, message=f"{cur.name} complete and compressed")
    return cur


def logs_raw(corral: Corral, *args: str) -> list[str]:
    return corral.run("logs", *args, "--nostream", "--raw", "--out").stdout.splitlines()


def test_logs_lines_reach_into_rotated_and_compressed_files(corral: Corral) -> None:
    n = 3000
    cur = start_chunked(corral, "hist", n)
    rotated = rotated_files(str(cur))
    assert rotated and all(p.endswith(".gz") for p in rotated)
    in_current = len(cur.read_bytes().splitlines())
    want = in_current + 500  # more than the current file holds
    assert want < n
    expected = [f"0 {i:07d} {'x' * 88}" for i in range(n)]
    assert logs_raw(corral, "hist", "--lines", str(want)) == expected[-want:]
    assert logs_raw(corral, "hist", "--lines", str(n + 1000)) == expected
    assert logs_raw(corral, "hist", "--lines", "3") == expected[-3:]


def test_logs_grep_searches_current_and_rotated_files(corral: Corral) -> None:
    n = 3000
    start_chunked(corral, "grep", n)
    every_tenth = [f"0 {i:07d} {'x' * 88}" for i in range(0, n, 10)]
    assert logs_raw(corral, "grep", "--lines", "1000", "--grep", r"^0 \d{6}0 ") == every_tenth
    assert logs_raw(corral, "grep", "--lines", "5", "--grep", r"^0 \d{6}0 ") == every_tenth[-5:]


JSON_PHASES = """
import os, time
for i in range(20):
    print(f"old {i}", flush=True)
while not os.path.exists("go"):
    time.sleep(0.01)
for i in range(20):
    print(f"new {i}", flush=True)
time.sleep(600)
"""


def test_logs_since_with_json_logs(corral: Corral) -> None:
    write(corral.cwd / "phases.py", JSON_PHASES)
    corral.run("start", "phases.py", "--log-type", "json")
    log = corral.home / "logs" / "phases-out.log"
    wait_until(lambda: log.read_text().count('"old ') == 20)
    boundary = time.time()
    wait_until(lambda: time.time() > boundary + 0.01)  # the next record is stamped after the boundary
    (corral.cwd / "go").touch()
    wait_until(lambda: log.read_text().count('"new ') == 20)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["message"] for r in records] == [f"old {i}" for i in range(20)] + [f"new {i}" for i in range(20)]
    assert logs_raw(corral, "phases", "--lines", "100", "--since", f"{boundary:.3f}") == [f"new {i}" for i in range(20)]


# Once "go" holds a start time, instance k writes line j at start + j*0.2 + k*0.1:
# the two logs interleave in time.
PACED = """
import os, sys, time
k = int(os.environ["CORRAL_INSTANCE"])
while not os.path.exists("go"):
    time.sleep(0.01)
start = float(open("go").read())
for j in range(6):
    time.sleep(max(0.0, start + j * 0.2 + k * 0.1 - time.time()))
    print(f"i{k} line {j}", flush=True)
open(f"done-{k}", "w").close()
time.sleep(600)
"""


def test_logs_interleave_two_instances_json_logs_in_time_order(corral: Corral) -> None:
    write(corral.cwd / "paced.py", PACED)
    start_eco(corral, '[[apps]]\nname = "paced"\nscript = "paced.py"\ninstances = 2\nlog_type = "json"\n')
    wait_until(lambda: [p["status"] for p in corral.jlist()] == ["online", "online"])
    tmp = corral.cwd / "go.tmp"
    tmp.write_text(str(time.time() + 0.2))
    tmp.rename(corral.cwd / "go")
    wait_until(lambda: all((corral.cwd / f"done-{k}").exists() for k in range(2)), timeout=15)
    logs = corral.home / "logs"
    wait_until(lambda: all(len((logs / f"paced-out-{k}.log").read_text().splitlines()) == 6 for k in range(2)))
    out = [json.loads(line) for line in corral.run("logs", "paced", "--lines", "20", "--nostream", "--json", "--out").stdout.splitlines()]
    assert len(out) == 12
    times = [r["timestamp"] for r in out]
    assert times == sorted(times)
    assert [r["message"] for r in out] == [f"i{k} line {j}" for j in range(6) for k in range(2)]
    assert {(r["app_name"], r["process_id"]) for r in out} == {("paced", 0), ("paced", 1)}
    # like PM2, --lines counts per log file: the last 2 of each, interleaved
    assert logs_raw(corral, "paced", "--lines", "2") == ["i0 line 4", "i1 line 4", "i0 line 5", "i1 line 5"]


# ---------------------------------------------------------------- flush


def test_flush_deletes_rotated_files_and_empties_current_ones(corral: Corral) -> None:
    cur = start_chunked(corral, "fl", 3000)
    rotated = rotated_files(str(cur))
    assert rotated
    result = corral.run("flush", "fl")
    for p in rotated:
        assert f"flushed {p}" in result.stderr
    assert rotated_files(str(cur)) == []
    assert cur.stat().st_size == 0
    assert (corral.home / "logs" / "fl-error.log").stat().st_size == 0
    assert logs_raw(corral, "fl", "--lines", "10") == []
    # the emptied file is still the one written to
    (corral.cwd / "go").touch()
    wait_until(lambda: cur.read_text() == "after go\n")
    assert corral.proc("fl")["status"] == "online"


# ---------------------------------------------------------------- daemon-wide defaults


def test_logs_defaults_in_corral_toml_with_pm2_logrotate_names(corral: Corral) -> None:
    n = 6000  # ~600K each
    write(corral.home / "corral.toml", '[logs]\nmax_size = "100K"\nretain = 2\ncompress = true\n')
    write(corral.cwd / "chunked.py", CHUNKED)
    (corral.cwd / "own").mkdir()  # its own folder: its done-0 marker apart
    start_eco(
        corral,
        f"""
[[apps]]
name = "dflt"
script = "chunked.py"
args = ["{n}"]

[[apps]]
name = "own"
script = "../chunked.py"
args = ["{n}"]
cwd = "own"
log_max_size = "1M"
""",
    )
    logs = corral.home / "logs"
    dflt, own = logs / "dflt-out.log", logs / "own-out.log"

    def dflt_done() -> bool:
        rotated = rotated_files(str(dflt))
        return len(rotated) <= 2 and all(p.endswith(".gz") for p in rotated) and whole_log(dflt).endswith(flood_line(0, n - 1))

    wait_until(dflt_done, timeout=30, interval=0.1, message="dflt rotated, compressed, pruned to 2")
    assert len(rotated_files(str(dflt))) == 2
    data = whole_log(dflt)
    first = int(data[: data.index(b"\n")].split()[1])
    assert first > 0 and data == flood_bytes(0, first, n)
    assert describe(corral, "dflt")[0]["log_rotations"] >= 4
    # the app's own log_max_size wins over the daemon's default
    wait_until(lambda: own.stat().st_size == n * 99, timeout=30, interval=0.1)
    assert rotated_files(str(own)) == []
    assert describe(corral, "own")[0]["log_rotations"] == 0


# ---------------------------------------------------------------- counters


def test_describe_keeps_log_counters_after_the_app_exits(corral: Corral) -> None:
    cur = start_chunked(corral, "gone", 3000, exit_after=True)
    wait_until(lambda: corral.proc("gone")["status"] == "stopped")
    assert describe(corral, "gone")[0]["log_rotations"] == len(rotated_files(str(cur))) > 0
