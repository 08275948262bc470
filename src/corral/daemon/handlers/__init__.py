"""The command handlers, registered by :class:`corral.commands.Command`.

To add a command: declare it in :mod:`corral.commands`, write its handler
(``async def handler(self, args) -> result``) in the module of its kind, and
add it to the table below; the daemon refuses to start with a command left
without a handler (tests/unit/test_protocol.py checks it too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from corral import commands as c
from corral.commands import Command
from corral.daemon.dispatch import Handler, StreamHandler
from corral.daemon.handlers.info import InfoCommands
from corral.daemon.handlers.processes import ProcessCommands
from corral.daemon.handlers.upkeep import UpkeepCommands

if TYPE_CHECKING:
    from corral.daemon.context import DaemonContext


def handler_tables(daemon: DaemonContext) -> tuple[dict[Command, Handler], dict[Command, StreamHandler]]:
    """(request handlers, streaming handlers) of the daemon, keyed by command."""
    proc = ProcessCommands(daemon)
    info = InfoCommands(daemon)
    upkeep = UpkeepCommands(daemon)
    handlers: dict[Command, Handler] = {
        c.PING: info.ping,
        c.LIST: info.list,
        c.DESCRIBE: info.describe,
        c.ENV: info.env,
        c.HEALTH: info.health,
        c.HISTORY: info.history,
        c.START: proc.start,
        c.STOP: proc.stop,
        c.RESTART: proc.restart,
        c.DELETE: proc.delete,
        c.RESET: proc.reset,
        c.SIGNAL: proc.signal,
        c.SCALE: proc.scale,
        c.RELOAD: proc.reload,
        c.FLUSH: upkeep.flush,
        c.RELOAD_LOGS: upkeep.reload_logs,
        c.SAVE: upkeep.save,
        c.RESURRECT: upkeep.resurrect,
        c.KILL: upkeep.kill,
    }
    streams: dict[Command, StreamHandler] = {c.SUBSCRIBE: daemon.logstream.subscribe, c.EVENTS: daemon.events.stream}
    return handlers, streams
