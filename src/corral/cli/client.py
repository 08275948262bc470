"""Talking to the daemon from the CLI: connect, start it on first use, send requests.

Standard library only, and small: it is on the path of every CLI call.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from corral.core import protocol
from corral.core.errors import DaemonError, NotFoundError
from corral.system.paths import Home, UnsafeHomeError, check_home

CONNECT_TIMEOUT = 15.0


class Client:
    def __init__(self, home: Home | None = None) -> None:
        self.home = home or Home.from_env()

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
            check_home(self.home.root)  # a planted or symlinked home could hold a socket impersonating the daemon
        except UnsafeHomeError as e:
            raise DaemonError(str(e))
        try:
            return self._connect()
        except (FileNotFoundError, ConnectionRefusedError):
            if not autostart:
                raise DaemonError("the daemon is not running")
        except OSError as e:
            raise DaemonError(f"cannot reach the daemon at {self.home.socket} ({_why(e)})")
        proc = self.start_daemon()
        deadline = time.monotonic() + CONNECT_TIMEOUT
        delay = 0.005
        while True:
            try:
                return self._connect()
            except OSError as e:
                if not isinstance(e, FileNotFoundError | ConnectionRefusedError):
                    raise DaemonError(f"cannot reach the daemon at {self.home.socket} ({_why(e)})")
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
        with self.session(autostart=autostart) as s:
            return s.call(cmd, args)

    def session(self, *, autostart: bool = True) -> Session:
        """One connection for several requests (the daemon answers them in order)."""
        return Session(self.connect(autostart=autostart))

    def stream(self, cmd: str, args: dict[str, Any]) -> Iterator[dict[str, Any]]:
        with self.session() as s:
            s.call(cmd, args)
            while True:
                msg = s.read()
                if msg is None:
                    return
                yield msg


class Session:
    """Requests over one open connection; a lost connection is a DaemonError, never an OSError."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")
        self._next_id = 1

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            self.sock.close()

    def call(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        req_id = self._next_id
        self._next_id += 1
        try:
            self.sock.sendall(protocol.request(cmd, args, req_id))
        except OSError as e:
            raise DaemonError(f"lost the connection to the daemon ({_why(e)})")
        reply = self.read()
        if reply is None:
            raise DaemonError("the daemon closed the connection without answering")
        return unwrap(reply)

    def read(self) -> dict[str, Any] | None:
        """The next message, or None at a clean end of the connection."""
        try:
            line = self.file.readline()
        except OSError as e:
            raise DaemonError(f"lost the connection to the daemon ({_why(e)})")
        if not line:
            return None
        if not line.endswith(b"\n"):
            raise DaemonError("the daemon closed the connection in the middle of a reply")
        try:
            msg = json.loads(line)
        except ValueError:
            raise DaemonError("the daemon sent a malformed reply")
        if not isinstance(msg, dict):
            raise DaemonError("the daemon sent a malformed reply")
        return msg


def _why(e: OSError) -> str:
    return e.strerror or type(e).__name__


def unwrap(reply: dict[str, Any]) -> Any:
    if reply.get("ok"):
        return reply.get("result")
    err = reply.get("error") or {}
    code = err.get("code", "error")
    message = err.get("message", "unknown error")
    if code == "not_found":
        raise NotFoundError(message)
    if code == "bad_config":
        from corral.core.errors import ConfigError

        raise ConfigError(message)
    raise DaemonError(message)
