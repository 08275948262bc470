"""HookRunner against real receivers: a local HTTP server (payloads, retries after 5xx,
a hanging server), and real commands (stdin JSON, env, a hanging command killed)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from corral import hooks
from corral.events import EventRing


class Receiver:
    """Records POSTed JSON; answers the statuses in ``plan`` in turn (then 200); ``hang`` seconds of silence first."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.times: list[float] = []
        self.plan: list[int] = []
        self.hang = 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(n))
                if outer.hang:
                    time.sleep(outer.hang)
                outer.bodies.append(body)
                outer.times.append(time.monotonic())
                status = outer.plan.pop(0) if outer.plan else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/SECRET123"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def make(table: dict[str, Any]) -> hooks.HookSpec:
    return hooks.spec_of(hooks.parse_hook(table))


async def until(pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


def test_webhook_payload_retries_and_masking(receiver: Receiver) -> None:
    logs: list[str] = []
    receiver.plan = [500, 503]

    async def main() -> None:
        runner = hooks.HookRunner([make({"url": receiver.url, "events": ["exited"], "backoff": "100ms", "retries": 2})], log=logs.append, host="box")
        ring = EventRing()
        runner.emit(ring.add("exited", "web", time.time(), code=3, instance=1))
        await until(lambda: runner.states[0].delivered == 1)
        await runner.close()

    asyncio.run(main())
    assert len(receiver.bodies) == 3  # two 5xx, then delivered
    assert receiver.times[1] - receiver.times[0] >= 0.09 and receiver.times[2] - receiver.times[1] >= 0.19
    body = receiver.bodies[-1]
    assert body["event"]["kind"] == "exited" and body["event"]["code"] == 3 and body["event"]["instance"] == 1
    assert body["host"] == "box" and body["text"] == "web#1 exited (code 3)"


def test_giving_up_is_logged_with_the_url_masked(receiver: Receiver) -> None:
    logs: list[str] = []
    receiver.plan = [500] * 10

    async def main() -> None:
        runner = hooks.HookRunner([make({"url": receiver.url, "events": ["errored"], "backoff": "50ms", "retries": 1})], log=logs.append)
        runner.emit(EventRing().add("errored", "api", time.time()))
        await until(lambda: runner.states[0].failed == 1)
        await runner.close()

    asyncio.run(main())
    assert len(receiver.bodies) == 2
    assert len(logs) == 1 and "not delivered after 2 attempt(s): HTTP 500" in logs[0]
    assert "SECRET123" not in logs[0] and "127.0.0.1" in logs[0]


def test_a_hanging_webhook_never_blocks_the_caller(receiver: Receiver) -> None:
    receiver.hang = 3.0

    async def main() -> tuple[int, int, int]:
        runner = hooks.HookRunner([make({"url": receiver.url, "events": ["restarting"], "timeout": "1s", "retries": 0})])
        ring = EventRing()
        for _ in range(5):
            runner.emit(ring.add("restarting", "web", time.time(), reason="crash"))
        # emit returned with every delivery still pending: nothing waited for the receiver
        pending_after_emit = len(runner.states[0].inflight)
        # and the loop stays free while they hang: a timer set now fires before they end
        await asyncio.sleep(0.05)
        pending_after_timer = len(runner.states[0].inflight)
        await until(lambda: runner.states[0].failed == 5, timeout=10)
        await runner.close()
        return pending_after_emit, pending_after_timer, runner.states[0].failed

    assert asyncio.run(main()) == (5, 5, 5)


def test_rate_limit_against_a_receiver(receiver: Receiver) -> None:
    async def main() -> None:
        runner = hooks.HookRunner([make({"url": receiver.url, "events": ["exited"], "rate_limit": 2, "rate_period": "300ms"})])
        ring = EventRing()
        for _ in range(50):
            runner.emit(ring.add("exited", "web", time.time(), code=1))
        await until(lambda: runner.states[0].delivered == 2)
        await asyncio.sleep(0.35)
        runner.emit(ring.add("exited", "web", time.time(), code=1))
        await until(lambda: runner.states[0].delivered == 3)
        await runner.close()

    asyncio.run(main())
    assert len(receiver.bodies) == 3
    assert receiver.bodies[2]["suppressed"] == 48


def test_command_hook_gets_json_on_stdin_and_env(tmp_path: Path) -> None:
    out = tmp_path / "got"
    script = f'cat > {out}.json; echo "$CORRAL_EVENT_KIND $CORRAL_EVENT_APP $CORRAL_EVENT_CODE" > {out}.env'

    async def main() -> None:
        runner = hooks.HookRunner([make({"command": script, "events": ["exited"]})])
        runner.emit(EventRing().add("exited", "worker", time.time(), code=7))
        await until(lambda: runner.states[0].delivered == 1)
        await runner.close()

    asyncio.run(main())
    assert json.loads((tmp_path / "got.json").read_text())["event"]["code"] == 7
    assert (tmp_path / "got.env").read_text().split() == ["exited", "worker", "7"]


def test_a_hanging_command_is_killed_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    logs: list[str] = []

    async def main() -> None:
        runner = hooks.HookRunner([make({"command": f"sleep 30 & echo $! > {pidfile}; wait", "events": ["errored"], "timeout": "300ms", "retries": 0})], log=logs.append)
        runner.emit(EventRing().add("errored", "web", time.time()))
        await until(lambda: runner.states[0].failed == 1)
        await runner.close()

    asyncio.run(main())
    assert "killed after 0.3s" in logs[0]
    child = int(pidfile.read_text())
    from tests.conftest import pid_alive, wait_until

    wait_until(lambda: not pid_alive(child), timeout=5, message="the hook's child was killed")
