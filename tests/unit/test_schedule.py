"""The pure due-time schedule (corral.core.schedule), on a fake clock.

Table tests: each case is a list of operations on one Schedule; ``("wake",)``
moves the fake clock to ``next_wake()`` and fires what is due there, as the
daemon's one timer does. Property tests drive random operations against a
plain model and check the rules after every step: nothing fires early,
nothing is lost, a cancelled item never fires, periodic items keep their grid,
and the next wake is never in the past after ``due`` ran (no busy loop).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.core.schedule import Schedule, align

T0 = 1000.0


def run(ops: list[tuple[Any, ...]], slack: float = 0.05) -> list[tuple[float, list[str]]]:
    """Apply the operations; returns each wake as (time - T0 rounded, keys fired)."""
    s: Schedule[str] = Schedule(slack)
    now = T0
    wakes: list[tuple[float, list[str]]] = []
    for op in ops:
        if op[0] == "add":
            _, key, at, *every = op
            s.add(key, T0 + at, every[0] if every else None)
        elif op[0] == "cancel":
            s.cancel(op[1])
        elif op[0] == "wake":
            w = s.next_wake()
            assert w is not None, "nothing to wake for"
            assert w >= now or math.isclose(w, now), "wake in the past"
            now = max(now, w)
            wakes.append((round(now - T0, 6), s.due(now)))
        elif op[0] == "at":  # a late or early wake at a given time
            now = T0 + op[1]
            wakes.append((round(now - T0, 6), s.due(now)))
    return wakes


CASES: dict[str, tuple[list[tuple[Any, ...]], list[tuple[float, list[str]]]]] = {
    "one-off fires once at its time": (
        [("add", "a", 2.0), ("wake",), ("at", 10.0)],
        [(2.0, ["a"]), (10.0, [])],
    ),
    "earliest first": (
        [("add", "b", 3.0), ("add", "a", 1.0), ("wake",), ("wake",)],
        [(1.0, ["a"]), (3.0, ["b"])],
    ),
    "items within the slack share one wake, at the latest of them": (
        [("add", "sample", 1.0, 1.0), ("add", "probe", 1.03, 5.0), ("add", "logs", 1.049, 1.0), ("wake",)],
        [(1.049, ["sample", "probe", "logs"])],
    ),
    "an item just past the slack gets its own wake": (
        [("add", "a", 1.0), ("add", "b", 1.06), ("wake",), ("wake",)],
        [(1.0, ["a"]), (1.06, ["b"])],
    ),
    "the window is measured from the earliest item, not chained": (
        [("add", "a", 1.0), ("add", "b", 1.04), ("add", "c", 1.08), ("wake",), ("wake",)],
        [(1.04, ["a", "b"]), (1.08, ["c"])],
    ),
    "periodic: no drift from late wakes": (
        [("add", "s", 1.0, 1.0), ("at", 1.3), ("at", 2.2), ("wake",)],
        [(1.3, ["s"]), (2.2, ["s"]), (3.0, ["s"])],
    ),
    "periodic: a long stall skips missed periods, no burst": (
        [("add", "s", 1.0, 1.0), ("at", 5.5), ("at", 5.9), ("wake",)],
        [(5.5, ["s"]), (5.9, []), (6.0, ["s"])],
    ),
    "a wake before the due time fires nothing": (
        [("add", "a", 2.0), ("at", 1.99), ("at", 2.0)],
        [(1.99, []), (2.0, ["a"])],
    ),
    "cancelled never fires": (
        [("add", "a", 1.0), ("add", "b", 2.0), ("cancel", "a"), ("wake",)],
        [(2.0, ["b"])],
    ),
    "cancelled periodic stops": (
        [("add", "s", 1.0, 1.0), ("wake",), ("cancel", "s"), ("add", "x", 5.0), ("wake",)],
        [(1.0, ["s"]), (5.0, ["x"])],
    ),
    "adding a key again replaces it": (
        [("add", "a", 1.0), ("add", "a", 3.0), ("wake",), ("at", 10.0)],
        [(3.0, ["a"]), (10.0, [])],
    ),
    "a periodic item turned one-off": (
        [("add", "a", 1.0, 1.0), ("wake",), ("add", "a", 4.0), ("wake",), ("at", 10.0)],
        [(1.0, ["a"]), (4.0, ["a"]), (10.0, [])],
    ),
    "aligned periods share wakes (1 s sample, 5 s probe)": (
        [("add", "sample", 1.0, 1.0), ("add", "probe", 5.0, 5.0)] + [("wake",)] * 5,
        [(1.0, ["sample"]), (2.0, ["sample"]), (3.0, ["sample"]), (4.0, ["sample"]), (5.0, ["probe", "sample"])],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_table(name: str) -> None:
    ops, expected = CASES[name]
    assert run(ops) == expected


def test_empty_schedule_never_wakes() -> None:
    s: Schedule[str] = Schedule()
    assert s.next_wake() is None and s.next_due() is None and s.due(T0) == []
    s.add("a", T0)
    s.cancel("a")
    assert s.next_wake() is None and len(s) == 0


def test_zero_slack_wakes_at_the_earliest() -> None:
    s: Schedule[str] = Schedule(0.0)
    s.add("a", T0 + 1)
    s.add("b", T0 + 1.001)
    assert s.next_wake() == T0 + 1
    assert s.due(T0 + 1) == ["a"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"due": math.nan}, "finite"),
        ({"due": math.inf}, "finite"),
        ({"due": T0, "every": 0.0}, "more than 0"),
        ({"due": T0, "every": -1.0}, "more than 0"),
        ({"due": T0, "every": math.inf}, "more than 0"),
    ],
)
def test_bad_items_are_refused(kwargs: dict[str, float], message: str) -> None:
    s: Schedule[str] = Schedule()
    with pytest.raises(ValueError, match=message):
        s.add("a", **kwargs)
    assert len(s) == 0


@pytest.mark.parametrize(
    "t, period, expected",
    [(1000.0, 1.0, 1000.0), (1000.2, 1.0, 1001.0), (1000.2, 5.0, 1005.0), (0.1, 0.5, 0.5), (1001.0000001, 1.0, 1002.0)],
)
def test_align(t: float, period: float, expected: float) -> None:
    assert align(t, period) == pytest.approx(expected)
    assert align(t, period) >= t


def test_heap_stays_bounded_under_churn() -> None:
    s: Schedule[int] = Schedule()
    for i in range(10_000):
        s.add(i % 7, T0 + i)
        s.cancel((i + 3) % 7)
    assert len(s._heap) <= 2 * len(s) + 33


# ---------------------------------------------------------------- properties

keys = st.sampled_from(list("abcdef"))
ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), keys, st.floats(0, 20), st.none() | st.floats(0.01, 7)),
        st.tuples(st.just("cancel"), keys),
        st.tuples(st.just("wake")),
        st.tuples(st.just("advance"), st.floats(0, 6)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops, st.floats(0, 0.3))
def test_rules_hold_against_a_model(steps: list[tuple[Any, ...]], slack: float) -> None:
    s: Schedule[str] = Schedule(slack)
    model: dict[str, tuple[float, float | None]] = {}  # key -> (due, every)
    now = T0
    for op in steps:
        if op[0] == "add":
            _, key, at, every = op
            s.add(key, now + at, every)
            model[key] = (now + at, every)
        elif op[0] == "cancel":
            s.cancel(op[1])
            model.pop(op[1], None)
        else:
            if op[0] == "wake":
                wake = s.next_wake()
                if wake is None:
                    assert not model
                    continue
                first = min(d for d, _ in model.values())
                assert first <= wake <= first + slack, "the wake covers the earliest item, within the slack"
                now = max(now, wake)
            else:
                now += op[1]
            fired = s.due(now)
            expected = sorted((k for k, (d, _) in model.items() if d <= now), key=lambda k: model[k][0])
            assert sorted(fired) == sorted(expected), "fired exactly the due items: none early, none lost"
            assert len(set(fired)) == len(fired)
            for key in fired:
                due, every = model[key]
                if every is None:
                    del model[key]
                else:
                    nxt = s.when(key)
                    assert nxt is not None and now < nxt <= now + every + 1e-9
                    k = (nxt - due) / every
                    assert abs(k - round(k)) < 1e-6, "periodic items stay on their grid"
                    model[key] = (nxt, every)
            nd = s.next_due()
            assert nd is None or nd > now, "no busy loop: nothing is still due after due() ran"
        assert set(s) == set(model)
        for key, (due, _) in model.items():
            assert s.when(key) == pytest.approx(due)
