"""The control protocol: versioned JSON messages, one per line, over the Unix socket.

Request:  ``{"v": 1, "id": 7, "cmd": "stop", "args": {"target": ["web"]}}``
Reply:    ``{"v": 1, "id": 7, "ok": true, "result": ...}``
Error:    ``{"v": 1, "id": 7, "ok": false, "error": {"code": "not_found", "message": "..."}}``
Stream:   after an ``ok`` reply to ``subscribe``, the daemon sends
          ``{"v": 1, "stream": "log" | "event" | "notice", ...}`` lines until either side closes.

This module is imported by the CLI, so it uses only the standard library.
See docs/protocol.md for the commands (generated from ``corral.core.commands``).
"""

from __future__ import annotations

import json
from typing import Any

VERSION = 1
MAX_MESSAGE = 4 * 1024 * 1024  # bytes in one request line
MAX_CLIENTS = 64  # control connections open at once (followers included)
READ_BUDGET = 32 * 1024 * 1024  # bytes of unfinished request lines held for all clients together
REQUEST_TIMEOUT = 60.0  # seconds a connection may take to send its next complete request
FOLLOWER_MAX_BYTES = 4 * 1024 * 1024  # bytes a log follower may lag behind before it is dropped


class ProtocolError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def encode(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def request(cmd: str, args: dict[str, Any] | None = None, req_id: int = 1) -> bytes:
    return encode({"v": VERSION, "id": req_id, "cmd": cmd, "args": args or {}})


def ok(req_id: Any, result: Any) -> dict[str, Any]:
    return {"v": VERSION, "id": req_id, "ok": True, "result": result}


def error(req_id: Any, code: str, message: str) -> dict[str, Any]:
    return {"v": VERSION, "id": req_id, "ok": False, "error": {"code": code, "message": message}}


def parse_request(line: bytes) -> tuple[Any, str, dict[str, Any]]:
    """Validate one request line: returns ``(id, cmd, args)`` or raises ProtocolError."""
    if len(line) > MAX_MESSAGE:
        raise ProtocolError("too_large", f"request over {MAX_MESSAGE} bytes")
    try:
        msg = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ProtocolError("bad_json", f"request is not valid JSON: {e}")
    if not isinstance(msg, dict):
        raise ProtocolError("bad_request", "request must be a JSON object")
    version = msg.get("v")
    if version != VERSION:
        raise ProtocolError("bad_version", f"protocol version {version!r} is not supported (this daemon speaks {VERSION})")
    cmd = msg.get("cmd")
    if not isinstance(cmd, str):
        raise ProtocolError("bad_request", "field 'cmd' must be a string")
    args = msg.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ProtocolError("bad_request", "field 'args' must be an object")
    return msg.get("id"), cmd, args
