"""Corral as Node's cluster primary: the IPC channel Node opens from ``NODE_CHANNEL_FD``.

PM2 runs a Node app in cluster mode by forking it from its God process with
``cluster.fork()``: the worker's own ``net`` code then asks the primary for every
socket it listens on, and the primary binds it once and hands the same socket to each
worker.  Corral does the same without running any JavaScript: the daemon spawns
``node`` with ``NODE_UNIQUE_ID`` (which makes Node's ``cluster.isWorker`` true) and
one end of a ``socketpair`` as ``NODE_CHANNEL_FD``, and speaks Node's wire format on
the other end (Node 20, ``lib/internal/child_process.js`` and
``lib/internal/cluster/{child,utils}.js``):

* the serialisation is ``json``: one ``JSON.stringify(message) + "\\n"`` per message;
* a message whose ``cmd`` starts with ``NODE_`` is internal; cluster messages are
  ``{"cmd": "NODE_CLUSTER", "act": ..., "seq": n}``; a reply carries ``"ack": n``;
* a handle travels with ``SCM_RIGHTS`` on the bytes of a wrapper message
  ``{"cmd": "NODE_HANDLE", "type": "net.Native", "msg": <the message>}``; the receiver
  answers ``NODE_HANDLE_ACK`` (or ``NODE_HANDLE_NACK`` when the fd was lost);
* ``listen()`` in a worker sends ``act: "queryServer"`` with ``address``, ``port``,
  ``addressType`` (4, 6, or -1 for a pipe), ``fd`` and ``flags``; the primary replies
  ``{"errno": 0, "key": ..., "ack": seq, "data": null}`` with the listening socket
  (the worker then listens on that shared handle), or a negative errno and no handle;
* ``process.send('ready')`` arrives as the plain (non-internal) message ``"ready"``.

The decisions are pure (:func:`decide`); :class:`NodeChannel` does the I/O on an
asyncio loop and :class:`SharedSockets` binds each address once per app.
"""

from __future__ import annotations

import array
import asyncio
import errno as errno_mod
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Node's internal messages (lib/internal/child_process.js: INTERNAL_PREFIX).
INTERNAL_PREFIX = "NODE_"
CLUSTER_CMD = "NODE_CLUSTER"
HANDLE_CMD = "NODE_HANDLE"
HANDLE_ACK = "NODE_HANDLE_ACK"
HANDLE_NACK = "NODE_HANDLE_NACK"

# A line longer than this is a broken or hostile app: the channel is closed.
MAX_MESSAGE_BYTES = 1 << 20


class ChannelError(Exception):
    """The app wrote something that is not Node's IPC format."""


@dataclass
class LineDecoder:
    """Splits the channel's byte stream into JSON messages (one per line)."""

    buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[Any]:
        self.buffer.extend(data)
        out: list[Any] = []
        while True:
            end = self.buffer.find(b"\n")
            if end < 0:
                if len(self.buffer) > MAX_MESSAGE_BYTES:
                    raise ChannelError(f"a message longer than {MAX_MESSAGE_BYTES} bytes")
                return out
            line = bytes(self.buffer[:end])
            del self.buffer[: end + 1]
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError as e:
                raise ChannelError(f"a message that is not JSON: {e}") from None


def encode(message: Any) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def is_internal(message: Any) -> bool:
    return (
        isinstance(message, dict)
        and isinstance(message.get("cmd"), str)
        and message["cmd"].startswith(INTERNAL_PREFIX)
    )


# ------------------------------------------------------------------ decisions


@dataclass(frozen=True)
class ServerQuery:
    """What a worker's listen() asks for."""

    address: str | None
    port: int
    address_type: int  # 4, 6, or -1 for a unix socket path
    fd: int | None
    flags: int
    backlog: int | None

    @property
    def key(self) -> str:
        # Node's primary keys handles by `${address}:${port}:${addressType}:${fd}`.
        parts = [
            "" if self.address is None else self.address,
            str(self.port),
            str(self.address_type),
            "" if self.fd is None else str(self.fd),
        ]
        return ":".join(parts)


@dataclass(frozen=True)
class Online:
    pass


@dataclass(frozen=True)
class Ready:
    """The app called ``process.send('ready')`` (PM2's wait_ready)."""


@dataclass(frozen=True)
class Listening:
    port: int | None


@dataclass(frozen=True)
class Query:
    seq: int
    query: ServerQuery


@dataclass(frozen=True)
class UserMessage:
    message: Any


@dataclass(frozen=True)
class HandleAck:
    ok: bool


@dataclass(frozen=True)
class Ignore:
    why: str


Event = Online | Ready | Listening | Query | UserMessage | HandleAck | Ignore


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def decide(message: Any) -> Event:
    """What one message from the app means (pure)."""
    if not is_internal(message):
        if message == "ready" or (isinstance(message, dict) and message.get("type") == "ready"):
            return Ready()
        return UserMessage(message)
    cmd = message["cmd"]
    if cmd in (HANDLE_ACK, HANDLE_NACK):
        return HandleAck(cmd == HANDLE_ACK)
    if cmd != CLUSTER_CMD:
        return Ignore(f"internal message {cmd}")
    act = message.get("act")
    if act == "online":
        return Online()
    if act == "listening":
        return Listening(_int_or_none(message.get("port")))
    if act == "queryServer":
        seq = _int_or_none(message.get("seq"))
        port = _int_or_none(message.get("port"))
        fd = _int_or_none(message.get("fd"))
        if port is None and fd is not None:
            port = -1  # listen({fd}): no port, an inherited socket
        if seq is None or port is None:
            return Ignore("queryServer without seq or port")
        address = message.get("address")
        address_type = _int_or_none(message.get("addressType"))
        return Query(
            seq,
            ServerQuery(
                address=address if isinstance(address, str) else None,
                port=port,
                address_type=4 if address_type is None else address_type,
                fd=fd,
                flags=_int_or_none(message.get("flags")) or 0,
                backlog=_int_or_none(message.get("backlog")),
            ),
        )
    return Ignore(f"cluster act {act!r}")


def query_reply(seq: int, key: str, errno: int, reply_seq: int) -> dict[str, Any]:
    """The primary's answer to a queryServer (lib/internal/cluster/primary.js)."""
    return {"cmd": CLUSTER_CMD, "errno": errno, "key": key, "ack": seq, "data": None, "seq": reply_seq}


def handle_wrapper(message: dict[str, Any]) -> dict[str, Any]:
    """How child_process wraps a message that carries a raw handle (`net.Native`)."""
    return {"cmd": HANDLE_CMD, "type": "net.Native", "msg": message}


def uv_errno(e: OSError) -> int:
    """libuv's errno for a failed bind: the negative system errno."""
    return -(e.errno or errno_mod.EINVAL)


# ------------------------------------------------------------------ sockets


class SharedSockets:
    """Listening sockets bound once per address for one app, shared by its instances.

    Kept across reloads and restarts, so connections wait in the backlog while an
    instance is replaced; :meth:`close` when the app is deleted.
    """

    def __init__(self, *, backlog: int = 2048) -> None:
        self.backlog = backlog
        self.sockets: dict[str, socket.socket] = {}

    def get(self, query: ServerQuery) -> socket.socket:
        """The socket for a query, bound on first use; raises OSError."""
        sock = self.sockets.get(query.key)
        if sock is None:
            sock = self._bind(query)
            self.sockets[query.key] = sock
        return sock

    def _bind(self, q: ServerQuery) -> socket.socket:
        if q.fd is not None and q.fd >= 0:
            raise OSError(errno_mod.EINVAL, "listening on an inherited fd is not shared")
        if q.address_type == -1:
            if not q.address:
                raise OSError(errno_mod.EINVAL, "no socket path")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(q.address)
            except OSError:
                sock.close()
                raise
        elif q.address is None:
            # Node binds '::' (dual stack) first, then '0.0.0.0'.
            try:
                sock = _inet(socket.AF_INET6, "::", q.port, v6only=False)
            except OSError:
                sock = _inet(socket.AF_INET, "0.0.0.0", q.port)
        else:
            family = socket.AF_INET6 if q.address_type == 6 else socket.AF_INET
            sock = _inet(family, q.address, q.port, v6only=bool(q.flags & 1))
        try:
            sock.listen(self.backlog)
        except OSError:
            sock.close()
            raise
        # Non-blocking, as a socket Node's own primary creates (libuv opens every socket
        # with O_NONBLOCK): the flag belongs to the open file every worker shares, and libuv
        # does not set it on a handle it receives. On a blocking socket, every idle worker
        # woken for a connection another one took would sit in accept() until the next
        # connection: no timers, no IPC (a graceful stop never heard) meanwhile.
        sock.setblocking(False)
        return sock

    def close(self) -> None:
        for sock in self.sockets.values():
            if sock.family == socket.AF_UNIX:
                try:
                    path = sock.getsockname()
                    if isinstance(path, str) and path:
                        os.unlink(path)
                except OSError:
                    pass
            sock.close()
        self.sockets.clear()


def _inet(family: socket.AddressFamily, host: str, port: int, *, v6only: bool = False) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if v6only else 0)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


# ------------------------------------------------------------------ spawning


def channel_pair() -> tuple[socket.socket, int]:
    """(the daemon's end, the fd to pass to the child as NODE_CHANNEL_FD)."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    parent.setblocking(False)
    fd = child.detach()
    os.set_inheritable(fd, True)
    return parent, fd


def child_env(channel_fd: int, *, worker_id: int | None) -> dict[str, str]:
    """Environment that makes node open the channel (and be a cluster worker with an id)."""
    env = {"NODE_CHANNEL_FD": str(channel_fd), "NODE_CHANNEL_SERIALIZATION_MODE": "json"}
    if worker_id is not None:
        env["NODE_UNIQUE_ID"] = str(worker_id)
    return env


# ------------------------------------------------------------------ the channel


@dataclass
class _Outgoing:
    data: bytes
    fds: list[int]


class NodeChannel:
    """The daemon's end of one node instance's IPC channel, on an asyncio loop.

    ``on_event`` receives every decided event (Online, Ready, Listening,
    UserMessage...); queryServer is answered here with ``sockets``.  When the app
    closes the channel or breaks the protocol, ``on_closed(reason)`` is called once.
    """

    def __init__(
        self,
        sock: socket.socket,
        sockets: SharedSockets | None,
        *,
        on_event: Callable[[Event], None] = lambda _e: None,
        on_closed: Callable[[str | None], None] = lambda _r: None,
    ) -> None:
        self.sock = sock
        self.sockets = sockets
        self.on_event = on_event
        self.on_closed = on_closed
        self.decoder = LineDecoder()
        self.seq = 0
        self.closed = False
        self._out: list[_Outgoing] = []
        # Handles wait for the previous one's ACK, as Node's sender does.
        self._handles: list[tuple[dict[str, Any], int]] = []
        self._awaiting_ack: tuple[dict[str, Any], int] | None = None
        self._then: list[Callable[[], None]] = []
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)

    # ---- reading

    def _readable(self) -> None:
        try:
            data, ancdata, _flags, _addr = self.sock.recvmsg(65536, socket.CMSG_SPACE(4 * 16))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self.close(f"channel error: {e.strerror}")
            return
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
                for fd in fds:  # handles sent by the app are not used: close them
                    os.close(fd)
        if not data:
            self.close(None)
            return
        try:
            messages = self.decoder.feed(data)
        except ChannelError as e:
            self.close(str(e))
            return
        for message in messages:
            self._dispatch(decide(message))

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, Query):
            self._answer(event)
        elif isinstance(event, HandleAck):
            pending, self._awaiting_ack = self._awaiting_ack, None
            if not event.ok and pending is not None:
                self._handles.insert(0, pending)  # NACK: the fd was lost, send again
            self._next_handle()
        if not isinstance(event, HandleAck):
            self.on_event(event)

    def _answer(self, event: Query) -> None:
        self.seq += 1
        if self.sockets is None:
            self._write(query_reply(event.seq, event.query.key, -errno_mod.ENOTSUP, self.seq), [])
            return
        try:
            sock = self.sockets.get(event.query)
        except OSError as e:
            self._write(query_reply(event.seq, event.query.key, uv_errno(e), self.seq), [])
            return
        self._handles.append((query_reply(event.seq, event.query.key, 0, self.seq), sock.fileno()))
        self._next_handle()

    def _next_handle(self) -> None:
        if self._awaiting_ack is not None or not self._handles:
            return
        message, fd = self._handles.pop(0)
        self._awaiting_ack = (message, fd)
        self._write(handle_wrapper(message), [fd])

    # ---- writing

    def send(self, message: Any) -> None:
        """Send a message the app receives with ``process.on('message')``."""
        self._write(message, [])

    def send_shutdown(self) -> None:
        """PM2's graceful-stop message (``shutdown_with_message``)."""
        self.send("shutdown")

    def disconnect(self, then: Callable[[], None]) -> None:
        """A cluster worker's graceful stop, as ``worker.disconnect()`` in Node's primary:
        the worker closes its listening handles, lets its open connections finish
        (``server.close``), then closes the channel; ``then`` runs once it has (or at
        once if the channel is already closed)."""
        if self.closed:
            then()
            return
        self._then.append(then)
        self.seq += 1
        self._write({"cmd": CLUSTER_CMD, "act": "disconnect", "seq": self.seq}, [])

    def _write(self, message: Any, fds: list[int]) -> None:
        if self.closed:
            return
        self._out.append(_Outgoing(encode(message), fds))
        self._flush()

    def _flush(self) -> None:
        while self._out:
            item = self._out[0]
            try:
                if item.fds:
                    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", item.fds).tobytes())]
                    sent = self.sock.sendmsg([item.data], anc)
                else:
                    sent = self.sock.send(item.data)
            except (BlockingIOError, InterruptedError):
                self._loop.add_writer(self.sock.fileno(), self._writable)
                return
            except OSError as e:
                self.close(f"channel error: {e.strerror}")
                return
            # The fds went with the first byte; the rest of the bytes follow plainly.
            item.fds = []
            item.data = item.data[sent:]
            if not item.data:
                self._out.pop(0)
        self._loop.remove_writer(self.sock.fileno())

    def _writable(self) -> None:
        self._flush()

    def close(self, reason: str | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._loop.remove_reader(self.sock.fileno())
            self._loop.remove_writer(self.sock.fileno())
        except (ValueError, OSError):
            pass
        self.sock.close()
        self.on_closed(reason)
        then, self._then = self._then, []
        for callback in then:
            callback()
