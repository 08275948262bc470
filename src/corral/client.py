"""Talking to the daemon from the CLI: connect, start it on first use, send requests.

Standard library only, and small: it is on the path of every CLI call.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from corral import protocol
from corral.errors import DaemonError, NotFoundError
from corral.paths import Home

CONNECT_TIMEOUT = 15.0


class Client:
    def __init__(self, home: Home | None = None) -> None:
        self.home = home or Home.from_env()
        self._next_id = 1

    # ------------------------------------------------------------ connection

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self.home.socket))
        except OSError:
            sock.close()
            raise
        return sock

    def connect(self, *, autostart: bool = True) -> socket.socket:
        try:
            return self._connect()
        except (FileNotFoundError, ConnectionRefusedError):
            if not autostart:
                raise DaemonError("the daemon is not running")
        proc = self.start_daemon()
        deadline = time.monotonic() + CONNECT_TIMEOUT
        delay = 0.005
        while True:
            try:
                return self._connect()
            except (FileNotFoundError, ConnectionRefusedError):
                code = proc.poll()
                if code not in (None, 0):
                    raise DaemonError(f"the daemon failed to start (exit code {code}): {self._log_tail()}")
                if time.monotonic() > deadline:
                    raise DaemonError(f"the daemon did not start within {CONNECT_TIMEOUT:g}s; see {self.home.daemon_log}")
                time.sleep(delay)
                delay = min(delay * 2, 0.1)

    def _log_tail(self) -> str:
        try:
            lines = self.home.daemon_log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return f"see {self.home.daemon_log}"
        return lines[-1] if lines else f"see {self.home.daemon_log}"

    def start_daemon(self) -> subprocess.Popen[bytes]:
        self.home.ensure()
        log_fd = os.open(self.home.daemon_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "corral.daemon"],
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                start_new_session=True,
                close_fds=True,
                cwd="/",
            )
        finally:
            os.close(log_fd)

    def is_running(self) -> bool:
        try:
            self._connect().close()
            return True
        except OSError:
            return False

    # ------------------------------------------------------------ requests

    def call(self, cmd: str, args: dict[str, Any] | None = None, *, autostart: bool = True) -> Any:
        sock = self.connect(autostart=autostart)
        try:
            req_id = self._next_id
            self._next_id += 1
            sock.sendall(protocol.request(cmd, args, req_id))
            reply = _read_message(sock.makefile("rb"))
        finally:
            sock.close()
        if reply is None:
            raise DaemonError("the daemon closed the connection without answering")
        return unwrap(reply)

    def stream(self, cmd: str, args: dict[str, Any]) -> Iterator[dict[str, Any]]:
        sock = self.connect()
        try:
            sock.sendall(protocol.request(cmd, args, 1))
            f = sock.makefile("rb")
            first = _read_message(f)
            if first is None:
                raise DaemonError("the daemon closed the connection without answering")
            unwrap(first)
            while True:
                msg = _read_message(f)
                if msg is None:
                    return
                yield msg
        finally:
            sock.close()


def _read_message(f: Any) -> dict[str, Any] | None:
    line = f.readline()
    if not line:
        return None
    msg = json.loads(line)
    if not isinstance(msg, dict):
        raise DaemonError("the daemon sent a malformed reply")
    return msg


def unwrap(reply: dict[str, Any]) -> Any:
    if reply.get("ok"):
        return reply.get("result")
    err = reply.get("error") or {}
    code = err.get("code", "error")
    message = err.get("message", "unknown error")
    if code == "not_found":
        raise NotFoundError(message)
    if code == "bad_config":
        from corral.errors import ConfigError

        raise ConfigError(message)
    raise DaemonError(message)
