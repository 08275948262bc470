"""The control socket: serving, framing and per-client limits.

The socket is mode 0600 inside the 0700 home folder, and every connection's
peer uid is checked (SO_PEERCRED).  Requests are JSON lines (see
:mod:`corral.protocol`); this module cuts them out of the byte stream and
hands each to a line handler (:class:`corral.daemon.dispatch.Dispatcher`).

Limits, so that no client can stall, crash or grow the daemon:

* a request line is at most ``protocol.MAX_MESSAGE`` bytes (``too_large``);
* at most ``protocol.MAX_CLIENTS`` connections at once (``busy``);
* partial request lines of every client together stay under ``protocol.READ_BUDGET``
  bytes (``busy``), so many clients sending huge lines slowly cannot add up;
* a connection that sends no complete request within
  ``protocol.REQUEST_TIMEOUT`` seconds is closed (and one that does not read
  its reply for as long: see :class:`corral.daemon.dispatch.Dispatcher`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import Awaitable, Callable

from corral import protocol

CHUNK = 64 * 1024

LineHandler = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


def peer_uid(sock: socket.socket) -> int | None:
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class ClientRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ControlServer:
    def __init__(
        self,
        path: str,
        handle_line: LineHandler,
        log: Callable[[str], None],
        *,
        max_clients: int = protocol.MAX_CLIENTS,
        request_timeout: float = protocol.REQUEST_TIMEOUT,
        max_line: int = protocol.MAX_MESSAGE,
        read_budget: int = protocol.READ_BUDGET,
    ) -> None:
        self.path = path
        self.handle_line = handle_line
        self.log = log
        self.max_clients = max_clients
        self.request_timeout = request_timeout
        self.max_line = max_line
        self.read_budget = read_budget
        self.server: asyncio.AbstractServer | None = None
        self.connections = 0  # accepted since start (each CLI command is one)
        self.active = 0
        self.buffered = 0  # bytes of unfinished request lines held for every client

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        old_umask = os.umask(0o177)
        try:
            self.server = await asyncio.start_unix_server(self._on_client, path=self.path, limit=CHUNK)
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _refuse(self, writer: asyncio.StreamWriter, code: str, message: str) -> None:
        with contextlib.suppress(Exception):
            writer.write(protocol.encode(protocol.error(None, code, message)))
            await asyncio.wait_for(writer.drain(), 1.0)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        sock = writer.get_extra_info("socket")
        uid = peer_uid(sock) if sock is not None else None
        try:
            if uid is None or uid != os.getuid():
                self.log(f"[daemon] refused a connection from uid {uid}")
                await self._refuse(writer, "forbidden", "peer uid does not match the daemon's")
                return
            if self.active >= self.max_clients:
                await self._refuse(writer, "busy", f"too many clients at once ({self.max_clients}); try again")
                return
            self.active += 1
            try:
                await self._serve(reader, writer)
            finally:
                self.active -= 1
        except (ConnectionError, BrokenPipeError):
            pass
        except Exception as e:  # never let a connection take the daemon down
            self.log(f"[daemon] connection error: {e!r}")
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pending = bytearray()
        try:
            while True:
                try:
                    async with asyncio.timeout(self.request_timeout):
                        line = await self._next_line(reader, pending)
                except TimeoutError:
                    return  # idle or too slow: the slot goes to someone else
                except ClientRefused as e:
                    await self._refuse(writer, e.code, e.message)
                    return
                if line is None:
                    return
                if line.strip() and not await self.handle_line(line, reader, writer):
                    return
        finally:
            self.buffered -= len(pending)

    async def _next_line(self, reader: asyncio.StreamReader, pending: bytearray) -> bytes | None:
        """The next request line (without the cap's worth of garbage): None at the end."""
        while True:
            end = pending.find(b"\n")
            if end >= 0:
                line = bytes(pending[: end + 1])
                del pending[: end + 1]
                self.buffered -= end + 1
                return line
            if len(pending) > self.max_line:
                raise ClientRefused("too_large", f"request over {self.max_line} bytes")
            chunk = await reader.read(CHUNK)
            if not chunk:
                if pending.strip():  # a last request without its newline
                    line = bytes(pending)
                    self.buffered -= len(pending)
                    pending.clear()
                    return line
                return None
            if self.buffered + len(chunk) > self.read_budget:
                raise ClientRefused("busy", "the daemon holds too many unfinished requests; try again")
            pending += chunk
            self.buffered += len(chunk)
