"""Pure parts of the daemon: the follower queue's byte bound, the instance ceiling."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from corral.daemon.dispatch import RequestError
from corral.daemon.logstream import BATCH_BYTES, DROPPED, FollowerQueue
from corral.daemon.registry import Registry


def queue(limit: int) -> FollowerQueue:
    async def make() -> FollowerQueue:
        return FollowerQueue(limit)

    return asyncio.run(make())


@pytest.mark.parametrize(
    ("limit", "sizes", "dropped", "held"),
    [
        (100, [10, 20, 30], False, 60),
        (100, [50, 50], False, 100),  # exactly at the bound
        (100, [50, 51], True, len(DROPPED)),  # one byte over: dropped, only the notice held
        (100, [101], True, len(DROPPED)),
        (100, [60, 60, 10], True, len(DROPPED)),  # nothing queued after the drop
    ],
)
def test_follower_queue_is_bounded_in_bytes(limit: int, sizes: list[int], dropped: bool, held: int) -> None:
    q = queue(limit)
    drops: list[bool] = []
    q.on_drop = lambda: drops.append(True)
    for n in sizes:
        q.push(b"x" * n)
    assert q.dropped is dropped
    assert q.size == held == sum(len(i) for i in q.items)
    assert drops == ([True] if dropped else [])
    if dropped:
        assert list(q.items) == [DROPPED]


def test_follower_queue_takes_batches_in_order() -> None:
    q = queue(10 * BATCH_BYTES)
    parts = [bytes([65 + i % 26]) * 1000 for i in range(200)]
    for p in parts:
        q.push(p)
    out = []
    while q.items:
        batch = q.take()
        assert len(batch) <= BATCH_BYTES
        out.append(batch)
    assert b"".join(out) == b"".join(parts) and q.size == 0
    q.push(b"y" * (BATCH_BYTES + 1))  # a message bigger than a batch still goes out whole
    assert q.take() == b"y" * (BATCH_BYTES + 1)


def fake_sup(counts: dict[str, int]) -> Any:
    apps = {name: SimpleNamespace(instances=[object()] * n) for name, n in counts.items()}
    return SimpleNamespace(apps=apps, cpu_count=2, log=lambda message: None)


@pytest.mark.parametrize(
    ("running", "wanted", "ceiling", "refused"),
    [
        ({}, {"a": 3}, 3, False),
        ({}, {"a": 4}, 3, True),
        ({"a": 2}, {"b": 1}, 3, False),
        ({"a": 2}, {"b": 2}, 3, True),
        ({"a": 3}, {"a": 3}, 3, False),  # a redefinition replaces the app's count
        ({"a": 3}, {"a": 2, "b": 1}, 3, False),
        ({"a": 1}, {"b": 10**20}, 3, True),
    ],
)
def test_instance_ceiling(running: dict[str, int], wanted: dict[str, int], ceiling: int, refused: bool) -> None:
    registry = Registry(fake_sup(running), lambda: ceiling)
    if not refused:
        registry.check_ceiling(wanted)
        return
    with pytest.raises(RequestError) as e:
        registry.check_ceiling(wanted)
    assert e.value.code == "bad_config" and "key 'instances'" in e.value.message and f"ceiling of {ceiling}" in e.value.message
    with pytest.raises(RequestError) as e:
        registry.check_ceiling(wanted, field="args.count")
    assert e.value.code == "bad_args" and "field 'args.count'" in e.value.message
