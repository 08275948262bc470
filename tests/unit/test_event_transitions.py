"""The events one state-machine step means (corral.events.transition_events), driven
through the real pure state machine on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from corral.events import transition_events
from corral.statemachine import (
    Exited,
    Policy,
    ProcState,
    Ready,
    Restart,
    Spawned,
    Start,
    Stop,
    Timeout,
    step,
)


def drive(policy: Policy, events: list[tuple[float, Any]]) -> list[str]:
    state, now, out = ProcState(policy=policy), 1000.0, []
    token = 0
    for advance, ev in events:
        now += advance
        if ev == "fire":
            ev = Timeout(token)
        new, effects = step(state, ev, now)
        for e in effects:
            if type(e).__name__ == "StartTimer":
                token = e.token  # type: ignore[union-attr]
        for c in transition_events(state, new, ev):
            out.append(c.kind + (f"({c.reason})" if c.reason and c.kind == "restarting" else "") + (f"[{c.code}]" if c.code is not None else ""))
        state = new
    return out


CASES: dict[str, tuple[Policy, list[tuple[float, Any]], list[str]]] = {
    "start and run": (Policy(), [(0, Start()), (0.1, Spawned(10))], ["started", "online"]),
    "wait_ready": (Policy(wait_ready=True), [(0, Start()), (0.1, Spawned(10)), (0.5, Ready())], ["started", "online", "ready"]),
    "a crash restarts": (
        Policy(), [(0, Start()), (0, Spawned(10)), (5, Exited(1)), (0, Spawned(11))],
        ["started", "online", "exited[1]", "restarting(crash)", "started", "online"],
    ),
    "a crash with a delay": (
        Policy(restart_delay=500), [(0, Start()), (0, Spawned(10)), (5, Exited(None, "SIGKILL")), (0.5, "fire"), (0, Spawned(11))],
        ["started", "online", "exited", "restarting(crash)", "started", "online"],
    ),
    "a manual restart": (
        Policy(), [(0, Start()), (0, Spawned(10)), (5, Restart("restart requested")), (0.1, Exited(0)), (0, Spawned(11))],
        ["started", "online", "restarting(manual)", "started", "online"],
    ),
    "a memory restart": (
        Policy(), [(0, Start()), (0, Spawned(10)), (5, Restart("memory limit (2G > 1G)")), (0.1, Exited(0))],
        ["started", "online", "restarting(memory limit)"],
    ),
    "stop": (Policy(), [(0, Start()), (0, Spawned(10)), (5, Stop()), (0.1, Exited(0))], ["started", "online", "stopped"]),
    "restarts used up": (
        Policy(max_restarts=1), [(0, Start()), (0, Spawned(10)), (0.1, Exited(1)), (0, Spawned(11)), (0.1, Exited(1))],
        ["started", "online", "exited[1]", "restarting(crash)", "started", "online", "exited[1]", "errored"],
    ),
    "a one-shot ends": (Policy(autorestart=False), [(0, Start()), (0, Spawned(10)), (2, Exited(0))], ["started", "online", "exited[0]"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_transitions(case: str) -> None:
    policy, events, expected = CASES[case]
    assert drive(policy, events) == expected
