"""The per-instance usage rings on a fake clock: 120 fine samples, one coarse point per 10 s for an hour."""

from __future__ import annotations

import pytest

from corral.daemon.usage_history import COARSE, FINE, STEP, Ring, UsageHistory

MB = 1 << 20


def feed(h: UsageHistory, times: range | list[float], cpu: float = 10.0, mem: float = 100 * MB) -> None:
    for t in times:
        h.add(float(t), cpu, mem)


def test_ring_keeps_the_last_n_oldest_first() -> None:
    r = Ring(3)
    assert r.items() == [] and r.oldest() is None
    for t in range(5):
        r.add(float(t), float(t), float(t * 10))
    assert [x["time"] for x in r.items()] == [2.0, 3.0, 4.0]
    assert [x["memory"] for x in r.items()] == [20, 30, 40]
    assert r.oldest() == 2.0
    assert [x["time"] for x in r.items(after=2.0, before=4.0)] == [3.0]


@pytest.mark.parametrize(
    ("interval", "seconds", "fine_len", "fine_first", "coarse_len"),
    [
        (1.0, 60, 60, 0.0, 5),  # a minute at 1 s: 6 buckets, the 6th still open
        (1.0, 600, FINE, 480.0, 59),  # ten minutes: the fine ring holds the last 2
        (5.0, 3600, FINE, 3000.0, COARSE - 1),  # an hour at 5 s: 360 buckets, the last open
        (1.0, 7200, FINE, 7080.0, COARSE),  # two hours: only the last hour is kept
    ],
)
def test_fine_and_coarse_rings_are_bounded(interval: float, seconds: int, fine_len: int, fine_first: float, coarse_len: int) -> None:
    h = UsageHistory()
    times = [i * interval for i in range(int(seconds / interval))]
    feed(h, times)
    assert len(h.fine) == fine_len and h.fine.items()[0]["time"] == fine_first
    assert len(h.coarse) == coarse_len
    if len(h.coarse) == COARSE:
        # one point per 10 s bucket, at its last sample, the oldest an hour back
        last = h.coarse.items()[-1]["time"]
        assert h.coarse.items()[0]["time"] == last - (COARSE - 1) * STEP


def test_coarse_point_is_mean_cpu_and_peak_memory_of_its_bucket() -> None:
    h = UsageHistory()
    for t, cpu, mem in [(0, 0.0, 10), (3, 30.0, 50), (6, 60.0, 20), (9, 10.0, 10), (10, 99.0, 1)]:
        h.add(float(t), cpu, float(mem * MB))
    (point,) = h.coarse.items()
    assert point == {"time": 9.0, "cpu": pytest.approx(25.0), "memory": 50 * MB}


def test_since() -> None:
    h = UsageHistory()
    feed(h, range(0, 600))  # 1 s samples for 10 minutes: fine ring = 480..599
    assert h.since(None) == h.latest() and len(h.latest()) == FINE
    # within the fine ring: only newer samples, at full resolution
    assert [x["time"] for x in h.since(590.0)] == [float(t) for t in range(591, 600)]
    assert h.since(599.0) == []
    # older than the fine ring: coarse points up to its start, then the fine ring
    got = h.since(400.0)
    coarse = [x["time"] for x in got[: -FINE]]
    assert coarse == [409.0 + 10 * k for k in range(8)]  # buckets 40..47 end at 409..479
    assert [x["time"] for x in got[-FINE:]] == [float(t) for t in range(480, 600)]
    assert all(a["time"] < b["time"] for a, b in zip(got, got[1:], strict=False))
    # since 0: everything kept, coarse before the fine ring (buckets ending 9, 19, ..., 479)
    whole = h.since(0)
    assert [x["time"] for x in whole[:-FINE]] == [9.0 + 10 * k for k in range(48)]
