"""An instance's CPU and memory over the last hour, kept compactly.

Two rings of plain arrays (no object per sample):

* the **fine** ring: the last ``FINE`` (120) samples as taken (every tick of
  the resource sampler: 1 s with a memory limit, else 5 s);
* the **coarse** ring: one point per ``STEP`` (10 s) of samples, the last
  ``COARSE`` (360) of them, i.e. an hour: the mean CPU over the bucket (the
  CPU actually used in it) and the peak memory (a spike must not vanish), at
  the time of the bucket's last sample.

Times are the daemon's monotonic clock.  Memory per instance once full:
120 × (8 + 4 + 4) + 360 × (8 + 4 + 4) bytes = 7.5 KiB (times as doubles, CPU
and memory as 32-bit floats: 24 bits of mantissa, i.e. 64 bytes of
resolution at 1 GiB), plus about 0.5 KiB of array headers.

:meth:`UsageHistory.since` answers the ``history`` command: the samples newer
than a time, from the fine ring where it reaches back that far, with the
coarse points before the fine ring's start otherwise.
"""

from __future__ import annotations

from array import array
from typing import Any

FINE = 120
COARSE = 360
STEP = 10.0


class Ring:
    """A fixed-size ring of (time, cpu, memory), oldest first when read."""

    __slots__ = ("size", "times", "cpu", "mem", "start")

    def __init__(self, size: int) -> None:
        self.size = size
        self.times = array("d")
        self.cpu = array("f")
        self.mem = array("f")
        self.start = 0  # index of the oldest entry once full

    def __len__(self) -> int:
        return len(self.times)

    def add(self, t: float, cpu: float, mem: float) -> None:
        if len(self.times) < self.size:
            self.times.append(t)
            self.cpu.append(cpu)
            self.mem.append(mem)
            return
        i = self.start
        self.times[i] = t
        self.cpu[i] = cpu
        self.mem[i] = mem
        self.start = (i + 1) % self.size

    def oldest(self) -> float | None:
        return self.times[self.start] if self.times else None

    def items(self, after: float | None = None, before: float | None = None) -> list[dict[str, Any]]:
        """Entries oldest first, with after < time < before."""
        n = len(self.times)
        out: list[dict[str, Any]] = []
        for k in range(n):
            i = (self.start + k) % n
            t = self.times[i]
            if after is not None and t <= after:
                continue
            if before is not None and t >= before:
                break
            out.append({"time": t, "cpu": self.cpu[i], "memory": int(self.mem[i])})
        return out


class UsageHistory:
    __slots__ = ("fine", "coarse", "bucket", "cpu_sum", "mem_max", "count", "last_time")

    def __init__(self) -> None:
        self.fine = Ring(FINE)
        self.coarse = Ring(COARSE)
        self.bucket: int | None = None  # the 10 s bucket being accumulated
        self.cpu_sum = 0.0
        self.mem_max = 0.0
        self.count = 0
        self.last_time = 0.0

    def add(self, t: float, cpu: float, memory: float) -> None:
        self.fine.add(t, cpu, memory)
        bucket = int(t // STEP)
        if self.bucket is not None and bucket != self.bucket:
            self._flush()
        self.bucket = bucket
        self.cpu_sum += cpu
        self.mem_max = max(self.mem_max, memory)
        self.count += 1
        self.last_time = t

    def _flush(self) -> None:
        if self.count:
            self.coarse.add(self.last_time, self.cpu_sum / self.count, self.mem_max)
        self.cpu_sum = 0.0
        self.mem_max = 0.0
        self.count = 0

    def __len__(self) -> int:
        return len(self.fine)

    def latest(self) -> list[dict[str, Any]]:
        """The fine ring, oldest first."""
        return self.fine.items()

    def since(self, since: float | None) -> list[dict[str, Any]]:
        """Samples newer than ``since`` (None: the fine ring). Where the fine ring starts later
        than ``since``, the coarse points from ``since`` up to the fine ring's start come first."""
        if since is None:
            return self.fine.items()
        start = self.fine.oldest()
        if start is None:
            return []
        older = self.coarse.items(after=since, before=start) if since < start else []
        return older + self.fine.items(after=since)
