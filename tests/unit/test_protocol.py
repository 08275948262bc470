"""The control protocol's framing and validation, and the command registry's arg checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from corral.core import commands, protocol
from corral.tools.protocol_docs import render

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"nope", "bad_json"),
        (b"\xff\xfe", "bad_json"),
        (b"42", "bad_request"),
        (b'{"v": 2, "cmd": "ping"}', "bad_version"),
        (b'{"cmd": "ping"}', "bad_version"),
        (b'{"v": 1}', "bad_request"),
        (b'{"v": 1, "cmd": "ping", "args": []}', "bad_request"),
        (b"x" * (protocol.MAX_MESSAGE + 1), "too_large"),
    ],
)
def test_parse_request_rejects(line: bytes, code: str) -> None:
    with pytest.raises(protocol.ProtocolError) as e:
        protocol.parse_request(line)
    assert e.value.code == code


def test_request_round_trip() -> None:
    raw = protocol.request("stop", {"target": ["web"]}, 9)
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    assert protocol.parse_request(raw) == (9, "stop", {"target": ["web"]})


def test_check_args_fills_defaults_and_names_fields() -> None:
    stop = commands.BY_NAME["stop"]
    assert commands.check_args(stop, {"target": "web"}) == {"target": ["web"]}
    assert commands.check_args(stop, {"target": [3]}) == {"target": ["3"]}
    with pytest.raises(ValueError, match="'args.target' is required"):
        commands.check_args(stop, {})
    with pytest.raises(ValueError, match="unknown field 'args.force'"):
        commands.check_args(stop, {"target": ["a"], "force": True})
    sub = commands.BY_NAME["subscribe"]
    filled = commands.check_args(sub, {})
    assert filled["target"] == ["all"] and filled["lines"] == 0 and filled["follow"] is True
    with pytest.raises(ValueError, match="'args.lines' must be int"):
        commands.check_args(sub, {"lines": True})


def test_every_command_has_a_handler_and_docs_are_current() -> None:
    import asyncio

    from corral.daemon.handlers import handler_tables
    from corral.daemon.server import Daemon
    from corral.system.paths import Home

    async def tables() -> tuple[dict[Any, Any], dict[Any, Any]]:
        return handler_tables(Daemon(Home(ROOT / "no-such-home")))

    handlers, streams = asyncio.run(tables())
    for cmd in commands.COMMANDS:
        assert cmd in (streams if cmd.streaming else handlers), cmd.name
    assert set(handlers) | set(streams) == set(commands.COMMANDS)
    assert (ROOT / "docs" / "protocol.md").read_text() == render(), "run: make docs"


def test_error_shape() -> None:
    err = protocol.error(3, "not_found", "no process named 'x'")
    assert json.loads(protocol.encode(err)) == {"v": 1, "id": 3, "ok": False, "error": {"code": "not_found", "message": "no process named 'x'"}}
