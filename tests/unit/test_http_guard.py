"""HTTP endpoint guards as pure logic: Host checks (DNS rebinding), accept-error throttling."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from corral.daemon.http import AcceptErrors, header, host_allowed, host_name


@pytest.mark.parametrize(
    ("value", "bound", "extra", "ok"),
    [
        (None, "127.0.0.1", (), True),
        ("127.0.0.1:9615", "127.0.0.1", (), True),
        ("localhost:9615", "127.0.0.1", (), True),
        ("LOCALHOST", "127.0.0.1", (), True),
        ("[::1]:9615", "::1", (), True),
        ("10.1.2.3:9615", "0.0.0.0", (), True),
        ("metrics.localhost", "127.0.0.1", (), True),
        ("evil.example:9615", "127.0.0.1", (), False),  # a rebound name
        ("evil.example", "0.0.0.0", (), False),
        ("127.0.0.1.evil.example", "127.0.0.1", (), False),
        ("box.internal:9615", "box.internal", (), True),  # the bound name itself
        ("prom.lan", "0.0.0.0", ("prom.lan",), True),
        ("prom.lan.", "0.0.0.0", ("prom.lan",), True),
    ],
)
def test_host_allowed(value: str | None, bound: str, extra: tuple[str, ...], ok: bool) -> None:
    assert host_allowed(value, bound, extra) is ok


def test_header_and_host_name() -> None:
    head = b"GET /metrics HTTP/1.1\r\nUser-Agent: x\r\nhOsT:  Example.COM:80 \r\n\r\n"
    assert header(head, b"host") == "Example.COM:80"
    assert header(head, b"accept") is None
    assert host_name("Example.COM:80") == "example.com"
    assert host_name("[::1]:80") == "::1"
    assert host_name("::1") == "::1"


def test_accept_errors_are_reported_once_per_interval_and_others_pass_through() -> None:
    loop = asyncio.new_event_loop()
    try:
        seen: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, ctx: seen.append(ctx))
        lines: list[str] = []
        guard = AcceptErrors(loop, lines.append, interval=3600)
        ctx = {"message": AcceptErrors.MESSAGE, "exception": OSError(24, "Too many open files")}
        for _ in range(1000):
            loop.call_exception_handler(ctx)
        assert lines == ["[daemon] cannot accept a connection: Too many open files; retrying"]
        assert guard.count == 1000 and guard.held == 999
        guard.next_at = 0  # the interval has passed
        loop.call_exception_handler(ctx)
        assert "999 more since the last report" in lines[-1]
        loop.call_exception_handler({"message": "something else"})
        assert seen == [{"message": "something else"}]
    finally:
        loop.close()
