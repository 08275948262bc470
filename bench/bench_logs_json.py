"""JSON log throughput: the `logs` benchmark with `log_type json`, Corral vs PM2, and Corral's JSON cost vs its plain cost.

Registered with bench/run.py (its EXTENSIONS).  Records are counted, not lines: PM2 writes one
JSON record per chunk it reads off the pipe (its ``message`` holds many lines, the first and last
of them often torn), Corral one record per line.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from harness import APPS, BenchError, Tool, median, proc_rss, proc_stat_cpu
from run import Ctx, Row, benchmark, progress


def daemon_cpu(pid: int) -> float:
    """CPU time of a process's threads in seconds, to the nanosecond (/proc/<pid>/task/*/schedstat);
    clock ticks (10 ms) from /proc/<pid>/stat are too coarse for floods of a few tenths of a second."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return proc_stat_cpu(pid)
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9 if total else proc_stat_cpu(pid)


LINE = 100  # bytes per line of bench/apps/flood.py, newline included
RECORD_KEYS = ("timestamp", "app_name", "process_id", "type", "message")


@dataclass
class Flood:
    """One run of flood.py under one tool."""

    write_seconds: float  # the app's first write -> the log file's last growth
    cpu: float  # daemon utime+stime from before `start` to the last growth
    peak_rss: int
    records: int = 0  # JSON records (or plain lines) in the out log
    lost: int = 0  # sequence numbers missing from the lines the records hold
    dup: int = 0
    bad: int = 0  # malformed: not JSON, a key missing, a line that is not flood.py's (Corral: per record)
    out_of_order: int = 0
    notes: list[str] = field(default_factory=list)


def _check_lines(lines: list[bytes], expected: int) -> tuple[int, int, int, int]:
    """(lost, duplicated, malformed, out of order) among flood.py's numbered lines."""
    seen = bytearray(expected)
    dup = bad = disorder = 0
    last = -1
    for line in lines:
        if len(line) != LINE - 1 or line[10:11] != b" " or not line[:10].isdigit():
            bad += 1
            continue
        i = int(line[:10])
        if i >= expected:
            bad += 1
        elif seen[i]:
            dup += 1
        else:
            seen[i] = 1
        if i < last:
            disorder += 1
        last = i
    return expected - sum(seen), dup, bad, disorder


def check_log(path: Path, expected: int, json_mode: bool, per_line: bool) -> tuple[int, int, int, int, int]:
    """(records, lost, duplicated, malformed, out of order) of a flood's out log.

    per_line: each JSON record must hold exactly one line (Corral); otherwise the messages of
    the records, concatenated in order, are split into lines (PM2's one record per read chunk).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0, expected, 0, 0, 0
    rows = data.split(b"\n")
    if rows and rows[-1] == b"":
        rows.pop()
    if not json_mode:
        lost, dup, bad, disorder = _check_lines(rows, expected)
        return len(rows), lost, dup, bad, disorder
    decode = msgspec.json.Decoder(dict[str, object]).decode
    messages: list[str] = []
    bad_records = 0
    for row in rows:
        try:
            rec = decode(row)
        except msgspec.DecodeError:
            bad_records += 1
            continue
        msg = rec.get("message")
        if not all(k in rec for k in RECORD_KEYS) or not isinstance(msg, str):
            bad_records += 1
            continue
        if per_line and "\n" in msg:
            bad_records += 1
            continue
        messages.append(msg)
    if per_line:
        lines = [m.encode() for m in messages]
    else:
        lines = "".join(messages).encode().split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
    lost, dup, bad, disorder = _check_lines(lines, expected)
    return len(rows), lost, dup, bad + bad_records, disorder


def flood(tool: Tool, daemon: int, name: str, python: str, lines: int, json_mode: bool) -> Flood:
    """Start flood.py (N lines, then exit) and wait until its out log stops growing after it exited."""
    assert tool.home is not None
    out_log = tool.default_out_log(name)
    marker = tool.home / f"{name}.t0"
    want = lines * LINE if not json_mode else None
    cpu0 = daemon_cpu(daemon)
    peak = proc_rss(daemon)
    t0 = time.monotonic()
    tool.cli(
        "start", str(APPS / "flood.py"), "--name", name, "--interpreter", python, "--no-autorestart",
        *(["--log-type", "json"] if json_mode else []),
        "--", str(lines), str(marker),
        stdout=subprocess.DEVNULL,
    )
    deadline = t0 + 180
    size, last_size = 0, -1
    last_change, cpu_at_change = t0, cpu0
    exited = False
    next_status = 0.0
    while True:
        t = time.monotonic()
        size = out_log.stat().st_size if out_log.exists() else 0
        if size != last_size:
            last_size, last_change = size, t
            cpu_at_change = daemon_cpu(daemon)
            peak = max(peak, proc_rss(daemon))
            if want is not None and size >= want:
                break
        # Once the file has stopped growing for a while: has the app exited? (jlist costs the
        # daemon CPU, so it is not called while the flood is on; the CPU counted stops at the
        # file's last growth anyway.)
        if not exited and t - last_change > 0.3 and t > next_status:
            next_status = t + 0.5
            exited = all(p.status != "online" for p in tool.jlist() if p.name == name)
        if exited and t - last_change > 1.0:
            break
        if t > deadline:
            raise BenchError(f"{tool.label}: the {name} log stopped at {size:,} bytes (180 s deadline)")
        time.sleep(0.002)
    try:
        first_write = float(marker.read_text())
    except (OSError, ValueError):
        first_write = t0
    result = Flood(write_seconds=last_change - first_write, cpu=cpu_at_change - cpu0, peak_rss=peak)
    result.records, result.lost, result.dup, result.bad, result.out_of_order = check_log(
        out_log, lines, json_mode, per_line=tool.label == "Corral"
    )
    tool.cli("delete", name, stdout=subprocess.DEVNULL)
    for p in out_log.parent.glob(f"{name}-*.log"):
        p.unlink()
    return result


@benchmark(
    "logs_json",
    "Log throughput, JSON format",
    "The `logs` benchmark's app (bench/apps/flood.py: N numbered 100-byte lines written as fast as the pipe "
    "takes them, then exit; `--no-autorestart`) with `--log-type json` under both tools, and the same app in "
    "the default plain format as the reference for each tool's own JSON cost. Throughput = N / (the log "
    "file's last growth − the app's first write); the file size is polled every 2 ms until it has not grown "
    "for 1 s after the app exited. Daemon CPU = utime+stime of the daemon from /proc/<pid>/stat, from just "
    "before `start` to the file's last growth. **Records are counted, not lines:** Corral writes one JSON "
    "record per line (each record must hold exactly one of the app's lines), PM2 one record per chunk it "
    "reads off the pipe (its messages, joined in order, are split into lines to count the lines lost). "
    "Malformed = a record that is not JSON or lacks one of PM2's keys, or a line that is not flood.py's. "
    "Both daemons run side by side; floods alternate between the tools and formats; the median trial by "
    "daemon CPU is shown, lost and malformed are the worst trial.",
)
def bench_logs_json(ctx: Ctx) -> list[Row]:
    lines = ctx.pick(1_000_000, 100_000)
    trials = ctx.pick(3, 1)
    runs: dict[tuple[str, bool], list[Flood]] = {}
    with ctx.both() as tools:
        daemons = {t.label: t.daemon_pid() for t in tools}
        for i in range(trials):
            progress(f"logs_json: trial {i + 1}/{trials}")
            order = [(t, j) for j in (True, False) for t in tools]
            for tool, json_mode in order if i % 2 == 0 else order[::-1]:
                runs.setdefault((tool.label, json_mode), []).append(
                    flood(tool, daemons[tool.label], f"flood{i}{'j' if json_mode else 'p'}", ctx.python, lines, json_mode)
                )
    stats: dict[tuple[str, bool], Flood] = {}
    for key, rs in runs.items():
        by_cpu = sorted(rs, key=lambda r: r.cpu)
        mid = by_cpu[len(by_cpu) // 2]
        stats[key] = Flood(
            write_seconds=median([r.write_seconds for r in rs]),
            cpu=mid.cpu,
            peak_rss=max(r.peak_rss for r in rs),
            records=mid.records,
            lost=max(r.lost for r in rs),
            dup=max(r.dup for r in rs),
            bad=max(r.bad for r in rs),
            out_of_order=max(r.out_of_order for r in rs),
        )
        label, json_mode = key
        ctx.note(
            "logs_json",
            f"{label}, {'JSON' if json_mode else 'plain'}: daemon CPU (s) {', '.join(f'{r.cpu:.2f}' for r in rs)}; "
            f"first write → last growth (s) {', '.join(f'{r.write_seconds:.3f}' for r in rs)}; records "
            f"{[r.records for r in rs]}; lost {[r.lost for r in rs]}, duplicated {[r.dup for r in rs]}, "
            f"malformed {[r.bad for r in rs]}, out of order {[r.out_of_order for r in rs]}",
        )
    cj, cp = stats[("Corral", True)], stats[("Corral", False)]
    pj, pp = stats[("PM2", True)], stats[("PM2", False)]

    def per(x: float, y: float) -> float | None:
        return x / y if y else None

    rows = [
        Row(
            "daemon CPU, JSON ÷ the same tool's plain format",
            "×",
            per(cj.cpu, cp.cpu),
            per(pj.cpu, pp.cpu),
            corral_target=2.0,
            note="Corral ≤ 2× its plain cost",
        ),
        Row(f"daemon CPU, {lines:,} lines in JSON", "s", cj.cpu, pj.cpu),
        Row(f"daemon CPU, {lines:,} lines plain (reference)", "s", cp.cpu, pp.cpu),
        Row("throughput, JSON", "lines/s", per(lines, cj.write_seconds), per(lines, pj.write_seconds), better="higher"),
        Row("throughput, plain (reference)", "lines/s", per(lines, cp.write_seconds), per(lines, pp.write_seconds), better="higher"),
        Row(
            "JSON records written (records)",
            "",
            cj.records,
            pj.records,
            better="higher",
            note="Corral: one per line; PM2: one per read chunk",
        ),
        Row("lines lost (worst trial), JSON", "lines", cj.lost, pj.lost, corral_target=0),
        Row("malformed records + duplicated lines, JSON", "", cj.bad + cj.dup, pj.bad + pj.dup, corral_target=0),
        Row("lines out of order, JSON", "lines", cj.out_of_order, pj.out_of_order, corral_target=0),
        Row("peak daemon RSS during the JSON flood", "MiB", cj.peak_rss / 2**20, pj.peak_rss / 2**20),
    ]
    ctx.note(
        "logs_json",
        f"N = {lines:,} lines per flood, {trials} trial(s) per tool and format. A PM2 record's message is whatever one read returned, so a line torn across two reads "
        "is split over two records: a reader of PM2's JSON log cannot tell one line from the next without "
        "joining them back.",
    )
    return rows
