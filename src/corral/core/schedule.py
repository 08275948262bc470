"""When the daemon's timed jobs are next due: a pure due-time schedule.

The daemon's periodic work (health probes, resource samples, log-file checks)
and its one-off times (the next cron restart) are items of one
:class:`Schedule`; the runtime (``corral.daemon.scheduler``) keeps a single
timer armed at :meth:`Schedule.next_wake` and calls :meth:`Schedule.due` when
it fires, so the daemon sleeps until something is due and never polls.

The rules (tested with a fake clock, table-driven and as properties):

* nothing fires early: ``due(now)`` returns only items due at or before ``now``;
* nothing is lost: after ``due(now)``, no item is due at or before ``now``
  (so the next wake is after ``now``: no busy loop);
* a cancelled item never fires; adding a key again replaces its entry;
* wakeups are coalesced: ``next_wake()`` is the latest due time within
  ``slack`` of the earliest one, so items due within that window are handled
  by one wake, each at most ``slack`` late and none early;
* a periodic item is rescheduled from its own due time (``due + k * every``,
  the first such time after ``now``): no drift, and a late wake skips the
  missed periods instead of firing them in a burst.

:func:`align` puts a periodic item on the grid of its period, so items of
the same (or a dividing) period share their wakeups whenever they were added.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

DEFAULT_SLACK = 0.05  # seconds: items due this close together are handled by one wakeup


def align(t: float, period: float) -> float:
    """The first multiple of ``period`` at or after ``t``."""
    if not period > 0:
        raise ValueError(f"period must be more than 0, got {period!r}")
    out = math.ceil(t / period) * period
    return out + period if out < t else out  # float rounding


@dataclass(frozen=True)
class Entry(Generic[K]):
    """One scheduled item: when it is next due and, when periodic, its period."""

    key: K
    due: float
    every: float | None
    seq: int  # heap nodes with another seq are stale (the key was cancelled or added again)


class Schedule(Generic[K]):
    """Items keyed by ``K``, each due at a time (one-off) or every ``every`` seconds."""

    def __init__(self, slack: float = DEFAULT_SLACK) -> None:
        if not slack >= 0:
            raise ValueError(f"slack must be 0 or more, got {slack!r}")
        self.slack = slack
        self._items: dict[K, Entry[K]] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._items))

    def entry(self, key: K) -> Entry[K] | None:
        return self._items.get(key)

    def when(self, key: K) -> float | None:
        """When the key is next due (None: not scheduled)."""
        e = self._items.get(key)
        return None if e is None else e.due

    def add(self, key: K, due: float, every: float | None = None) -> None:
        """Schedule ``key`` at ``due``, then every ``every`` seconds if given; replaces an entry for the key."""
        if math.isnan(due) or math.isinf(due):
            raise ValueError(f"due must be a finite time, got {due!r}")
        if every is not None and not (every > 0 and math.isfinite(every)):
            raise ValueError(f"every must be more than 0, got {every!r}")
        self._seq += 1
        self._items[key] = Entry(key, due, every, self._seq)
        heapq.heappush(self._heap, (due, self._seq, key))
        if len(self._heap) > 2 * len(self._items) + 32:
            self._compact()

    def cancel(self, key: K) -> bool:
        """Remove the key; False when it was not scheduled."""
        return self._items.pop(key, None) is not None

    def next_due(self) -> float | None:
        """The earliest due time (None: nothing scheduled)."""
        self._prune()
        return self._heap[0][0] if self._heap else None

    def next_wake(self) -> float | None:
        """When to wake: the latest due time within ``slack`` of the earliest (None: never)."""
        first = self.next_due()
        if first is None:
            return None
        limit = first + self.slack
        best = first
        heap = self._heap
        stack = [0]
        while stack:  # only the nodes due by the limit: their children are due no earlier
            i = stack.pop()
            due, seq, key = heap[i]
            if due > limit:
                continue
            if due > best and self._live(heap[i]):
                best = due
            stack.extend(c for c in (2 * i + 1, 2 * i + 2) if c < len(heap))
        return best

    def due(self, now: float) -> list[K]:
        """The items due at or before ``now``, earliest first (ties: in the order they were
        scheduled); one-off items leave the
        schedule, periodic ones move to their first due time after ``now``."""
        fired: list[K] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            node = heapq.heappop(heap)
            if not self._live(node):
                continue
            due, _, key = node
            entry = self._items[key]
            fired.append(key)
            if entry.every is None:
                del self._items[key]
                continue
            nxt = due + entry.every * (math.floor((now - due) / entry.every) + 1)
            while nxt <= now:  # float rounding
                nxt += entry.every
            self._seq += 1
            self._items[key] = Entry(key, nxt, entry.every, self._seq)
            heapq.heappush(heap, (nxt, self._seq, key))
        return fired

    def _live(self, node: tuple[float, int, K]) -> bool:
        e = self._items.get(node[2])
        return e is not None and e.seq == node[1]

    def _prune(self) -> None:
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)

    def _compact(self) -> None:
        self._heap = [(e.due, e.seq, e.key) for e in self._items.values()]
        heapq.heapify(self._heap)
