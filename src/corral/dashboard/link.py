"""The dashboard's connection to the daemon: the control protocol over the Unix socket, on asyncio.

Connecting goes through :class:`corral.cli.client.Client` (never starting a daemon: the
dashboard shows that it is down instead); each call is its own connection, as for the CLI.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from corral.cli.client import Client, unwrap
from corral.core import protocol
from corral.core.errors import DaemonError
from corral.system.paths import Home

CALL_TIMEOUT = 120.0  # restart/scale wait for the instances to settle


class Link:
    def __init__(self, home: Home) -> None:
        self.client = Client(home)

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            sock = self.client.connect(autostart=False)
        except OSError as e:
            raise DaemonError(f"the daemon is not reachable: {e.strerror or e}")
        sock.setblocking(False)
        return await asyncio.open_unix_connection(sock=sock, limit=protocol.MAX_MESSAGE)

    async def call(self, cmd: str, args: dict[str, Any] | None = None, timeout: float = CALL_TIMEOUT) -> Any:
        reader, writer = await self._open()
        try:
            writer.write(protocol.request(cmd, args))
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), timeout)
        finally:
            writer.close()
        if not line:
            raise DaemonError("the daemon closed the connection without answering")
        return unwrap(json.loads(line))

    async def subscribe(self, args: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Messages of a ``subscribe`` stream, until the daemon ends it or the caller stops."""
        reader, writer = await self._open()
        try:
            writer.write(protocol.request("subscribe", args))
            await writer.drain()
            first = await reader.readline()
            if not first:
                raise DaemonError("the daemon closed the connection without answering")
            unwrap(json.loads(first))
            while True:
                line = await reader.readline()
                if not line:
                    return
                msg = json.loads(line)
                if isinstance(msg, dict):
                    yield msg
        finally:
            writer.close()
