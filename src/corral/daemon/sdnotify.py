"""sd_notify for instances: one datagram endpoint per instance, messages turned into events.

What a message means is decided here as plain data (:func:`read_message`):
``READY=1``, ``WATCHDOG=1`` and ``WATCHDOG=trigger`` become state machine
events (the readiness and the watchdog deadline are decided in
:func:`corral.core.statemachine.step`), ``STATUS=`` a status text, ``STOPPING=1``
a notice.  :class:`NotifyEndpoint` owns the socket on the event loop.
"""

from __future__ import annotations

import asyncio
import os
import pwd
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from corral.core.statemachine import Event, Ready, WatchdogPing, WatchdogTrigger
from corral.system.notify import NotifySocket


@dataclass(frozen=True)
class NotifyMessage:
    events: list[Event] = field(default_factory=list)
    status_text: str | None = None
    stopping: bool = False


def read_message(msg: dict[str, str]) -> NotifyMessage:
    events: list[Event] = []
    if msg.get("READY") == "1":
        events.append(Ready())
    if msg.get("WATCHDOG") == "1":
        events.append(WatchdogPing())
    if msg.get("WATCHDOG") == "trigger":
        events.append(WatchdogTrigger())
    return NotifyMessage(events, msg.get("STATUS"), msg.get("STOPPING") == "1")


def endpoint_address(owner: int) -> str:
    """An abstract address unique to this daemon and owner."""
    return f"@corral/{os.getpid()}/{owner:x}"


def notify_uids(app_uid: str | int | None) -> frozenset[int] | None:
    """Who may send to an instance's notify socket: the daemon's own uid and the app's.

    Datagrams from any other uid are dropped before any /proc work. None (no filter
    but the parent-chain check) when the app's user cannot be resolved here.
    """
    me = os.geteuid()
    if app_uid is None:
        return frozenset({me})
    if isinstance(app_uid, int) or str(app_uid).isdigit():
        return frozenset({me, int(app_uid)})
    try:
        return frozenset({me, pwd.getpwnam(str(app_uid)).pw_uid})
    except KeyError:
        return None


class NotifyEndpoint:
    """One instance's NOTIFY_SOCKET, read on the event loop; on_message(sender pid, fields)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        address: str,
        on_message: Callable[[int, dict[str, str]], None],
        *,
        uids: Collection[int] | None = None,
        on_ignored: Callable[[str], None] | None = None,
    ) -> None:
        """uids: who may send (the app's own uid and the daemon's; None: notify.default_uids);
        on_ignored: where the rate-limited reports of rejected datagrams go (the daemon log)."""
        self.loop = loop
        if on_ignored is None:
            self.sock = NotifySocket(address, on_message, uids=uids)
        else:
            self.sock = NotifySocket(address, on_message, uids=uids, on_ignored=on_ignored)
        loop.add_reader(self.sock.fileno(), self.sock.on_readable)

    @property
    def address(self) -> str:
        return self.sock.address

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
