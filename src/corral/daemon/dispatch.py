"""From one request line to one reply: parse, look up the command, check its
arguments, run its handler, and turn every failure into an error reply.

Handlers are registered in a table keyed by :class:`corral.commands.Command`
(no lookup of methods by name); :class:`Dispatcher` refuses to start with a
command left without a handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from corral import commands, protocol
from corral import listeners as listen
from corral.commands import Command
from corral.errors import ConfigError

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
StreamHandler = Callable[[dict[str, Any], Any, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RequestError(Exception):
    """A request the daemon refuses: becomes ``{"ok": false, "error": {code, message}}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def error_reply(req_id: Any, e: BaseException) -> dict[str, Any] | None:
    """The error reply for an exception a handler may raise; None for an unexpected one."""
    if isinstance(e, protocol.ProtocolError | RequestError):
        return protocol.error(req_id, e.code, e.message)
    if isinstance(e, ConfigError):
        return protocol.error(req_id, "bad_config", e.render())
    if isinstance(e, listen.ListenError):
        return protocol.error(req_id, "listen_failed", str(e))
    if isinstance(e, LookupError):
        return protocol.error(req_id, "not_found", str(e.args[0]) if e.args else "not found")
    return None


class Dispatcher:
    def __init__(
        self,
        handlers: Mapping[Command, Handler],
        streams: Mapping[Command, StreamHandler],
        log: Callable[[str], None],
        *,
        reply_timeout: float = protocol.REQUEST_TIMEOUT,
    ) -> None:
        missing = [c.name for c in commands.COMMANDS if c not in (streams if c.streaming else handlers)]
        if missing:
            raise RuntimeError(f"commands without a handler: {', '.join(missing)}")
        self.handlers = dict(handlers)
        self.streams = dict(streams)
        self.log = log
        self.reply_timeout = reply_timeout

    async def handle_line(self, line: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection is done (after a stream)."""
        req_id: Any = None
        try:
            req_id, cmd_name, raw_args = protocol.parse_request(line)
            cmd = commands.BY_NAME.get(cmd_name)
            if cmd is None:
                raise RequestError("unknown_command", f"unknown command {cmd_name!r}")
            try:
                args = commands.check_args(cmd, raw_args)
            except ValueError as e:
                raise RequestError("bad_args", str(e))
            if cmd.streaming:
                try:
                    await self.streams[cmd](args, req_id, reader, writer)
                except ConnectionError:
                    pass  # the follower went away
                return False
            reply = protocol.ok(req_id, await self.handlers[cmd](args))
        except Exception as e:
            known = error_reply(req_id, e)
            if known is None:
                self.log(f"[daemon] internal error: {e!r}")
                known = protocol.error(req_id, "internal", f"internal error: {e}")
            reply = known
        writer.write(protocol.encode(reply))
        try:
            async with asyncio.timeout(self.reply_timeout):
                await writer.drain()
        except TimeoutError:  # a client that does not read its replies loses its connection
            writer.transport.abort()
            return False
        return True
