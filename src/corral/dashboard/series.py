"""Compact CPU/memory series per instance, kept for the last hour: pure, with the clock passed in.

The daemon keeps a short ring of samples per instance (``history``) stamped with its
monotonic clock; the dashboard merges them here, on the wall clock, at most one point
per ``STEP`` seconds, in three ``array('d')`` columns (24 bytes a point).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

KEEP = 3600.0  # seconds of history
STEP = 2.0  # at most one point every STEP seconds


@dataclass
class Series:
    t: array[float] = field(default_factory=lambda: array("d"))
    cpu: array[float] = field(default_factory=lambda: array("d"))
    mem: array[float] = field(default_factory=lambda: array("d"))

    def __len__(self) -> int:
        return len(self.t)

    def as_json(self, since: float = 0.0) -> dict[str, list[float]]:
        i = 0
        while i < len(self.t) and self.t[i] <= since:
            i += 1
        return {"t": list(self.t[i:]), "cpu": list(self.cpu[i:]), "mem": list(self.mem[i:])}


def merge(series: Series, samples: Iterable[dict[str, Any]], offset: float, now: float, keep: float = KEEP, step: float = STEP) -> int:
    """Append the samples newer than the series' last point (monotonic time + offset =
    wall time), one per ``step`` seconds; drop points older than ``keep``. Returns how many
    points were added."""
    added = 0
    last = series.t[-1] if series.t else float("-inf")
    for s in samples:
        try:
            t = float(s["time"]) + offset
            cpu = float(s["cpu"] or 0.0)
            mem = float(s["memory"] or 0.0)
        except (KeyError, TypeError, ValueError):
            continue
        if t < last + step or t > now + step:
            continue
        series.t.append(t)
        series.cpu.append(round(cpu, 2))
        series.mem.append(mem)
        last = t
        added += 1
    cut = 0
    while cut < len(series.t) and series.t[cut] < now - keep:
        cut += 1
    if cut:
        del series.t[:cut], series.cpu[:cut], series.mem[:cut]
    return added
