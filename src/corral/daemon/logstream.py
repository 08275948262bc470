"""``subscribe``: the tail of the log files, then live log lines and process events.

Each follower gets its own queue of encoded messages, bounded in bytes
(``protocol.FOLLOWER_MAX_BYTES``): a follower that falls that far behind (a
paused pager, a stalled client) gets a notice and is dropped, so a slow reader
never slows the apps nor grows the daemon.  What it held is released at once.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from corral.core import protocol
from corral.daemon.dispatch import RequestError
from corral.logs import read as logread

if TYPE_CHECKING:
    from corral.daemon.instance import Instance
    from corral.daemon.supervisor import Supervisor

BATCH_BYTES = 64 * 1024  # bytes handed to the socket per write
DROP_GRACE = 120.0  # seconds a dropped follower has to read its notice before it is cut off
DROPPED = protocol.encode({"v": protocol.VERSION, "stream": "notice", "message": "follower too slow: dropped"})
END = protocol.encode({"v": protocol.VERSION, "stream": "end"})


class FollowerQueue:
    """Encoded messages waiting for one follower, at most ``limit`` bytes of them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: deque[bytes] = deque()
        self.size = 0
        self.dropped = False
        self.wake = asyncio.Event()
        self.on_drop: Callable[[], None] | None = None

    def push(self, data: bytes) -> None:
        if self.dropped:
            return
        if self.size + len(data) > self.limit:
            self.dropped = True
            self.items.clear()
            self.items.append(DROPPED)
            self.size = len(DROPPED)
            if self.on_drop is not None:
                self.on_drop()
        else:
            self.items.append(data)
            self.size += len(data)
        self.wake.set()

    def take(self) -> bytes:
        """Up to BATCH_BYTES of queued data (at least one message)."""
        parts = [self.items.popleft()]
        n = len(parts[0])
        while self.items and n + len(self.items[0]) <= BATCH_BYTES:
            part = self.items.popleft()
            parts.append(part)
            n += len(part)
        self.size -= n
        return b"".join(parts)


def compile_grep(pattern: str | None) -> re.Pattern[str] | None:
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as e:
        raise RequestError("bad_args", f"field 'args.grep': not a regular expression: {e}")


class LogStream:
    def __init__(self, sup: Supervisor, stopping: asyncio.Event, limit: int = protocol.FOLLOWER_MAX_BYTES) -> None:
        self.sup = sup
        self.stopping = stopping
        self.limit = limit

    async def subscribe(self, args: dict[str, Any], req_id: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        targets = args["target"]
        instances = self.sup.select(targets)
        ids = {i.id for i in instances}
        names = {i.name for i in instances}
        whole = "all" in targets
        streams = set(args["streams"])
        grep = compile_grep(args.get("grep"))
        queue = FollowerQueue(self.limit)

        def wanted(inst: Instance) -> bool:
            return whole or inst.id in ids or inst.name in names

        def on_lines(inst: Instance, stream: str, lines: list[bytes], ts: float) -> None:
            if queue.dropped or stream not in streams or not wanted(inst):
                return
            for line in lines:
                text = line.decode("utf-8", "replace")
                if grep is not None and not grep.search(text):
                    continue
                queue.push(protocol.encode({"v": 1, "stream": "log", "time": ts, "name": inst.name, "id": inst.id, "type": stream, "message": text}))

        def on_event(ev: dict[str, Any]) -> None:
            if ev.get("id") is None or whole or ev.get("id") in ids or ev.get("name") in names:
                queue.push(protocol.encode({"v": 1, **ev}))

        # Snapshot the logs (rotated files, the live files held open with their sizes), then
        # register, in the same loop turn: no line lost or doubled. The history is then read
        # in a thread (a big rotated .gz never stalls the loop); lines that arrive meanwhile
        # wait in the follower's queue.
        writer.write(protocol.encode(protocol.ok(req_id, {"subscribed": sorted(ids), "names": sorted(names)})))
        want_history = args["lines"] > 0 and args["logs"]
        snaps = snapshot_logs(instances, streams) if want_history else []
        follow = args["follow"] and args.get("until") is None
        if follow and args["logs"]:
            self.sup.log_listeners.append(on_lines)
        if follow and args["events"]:
            self.sup.event_listeners.append(on_event)
        loop = asyncio.get_running_loop()
        try:
            history = await loop.run_in_executor(None, tail_of, snaps, args["lines"], args.get("since"), args.get("until"), grep) if snaps else []
        except BaseException:
            self._unregister(on_lines, on_event)
            raise
        finally:
            for _, _, _, snap in snaps:
                snap.close()
        if not follow:
            await self._send(history, writer)
            writer.write(END)
            await writer.drain()
            return
        cut: list[asyncio.TimerHandle] = []
        # a dropped follower has DROP_GRACE seconds to read its notice, then is cut off
        queue.on_drop = lambda: cut.append(loop.call_later(DROP_GRACE, writer.transport.abort))
        closed = loop.create_task(reader.read())
        try:
            await self._send(history, writer)
            await writer.drain()
            await self._pump(queue, writer, closed)
        finally:
            closed.cancel()
            for handle in cut:
                handle.cancel()
            self._unregister(on_lines, on_event)
            queue.items.clear()

    def _unregister(self, on_lines: Any, on_event: Any) -> None:
        if on_lines in self.sup.log_listeners:
            self.sup.log_listeners.remove(on_lines)
        if on_event in self.sup.event_listeners:
            self.sup.event_listeners.remove(on_event)

    @staticmethod
    async def _send(messages: list[dict[str, Any]], writer: asyncio.StreamWriter) -> None:
        """Write messages, waiting for the socket whenever a batch is buffered."""
        buffered = 0
        for msg in messages:
            data = protocol.encode(msg)
            writer.write(data)
            buffered += len(data)
            if buffered >= BATCH_BYTES:
                await writer.drain()
                buffered = 0

    async def _pump(self, queue: FollowerQueue, writer: asyncio.StreamWriter, closed: asyncio.Task[bytes]) -> None:
        while not closed.done() and not self.stopping.is_set():
            queue.wake.clear()
            while queue.items:
                writer.write(queue.take())
                await writer.drain()
                if queue.dropped and not queue.items:
                    return  # the notice is read
            waiter = asyncio.get_running_loop().create_task(queue.wake.wait())
            await asyncio.wait({waiter, closed}, return_when=asyncio.FIRST_COMPLETED, timeout=1.0)
            waiter.cancel()


def snapshot_logs(instances: list[Instance], streams: set[str]) -> list[tuple[str, int, str, logread.Snapshot]]:
    """(name, id, stream, snapshot) of each matched log file, once per path (on the loop: cheap)."""
    seen: set[str] = set()
    out: list[tuple[str, int, str, logread.Snapshot]] = []
    for inst in instances:
        paths = inst.log_paths()
        for stream, key in (("out", "out_file"), ("err", "error_file")):
            path = paths[key]
            if stream not in streams or not path or path in seen:
                continue
            seen.add(path)
            out.append((inst.name, inst.id, stream, logread.snapshot(path)))
    return out


def tail_of(snaps: list[tuple[str, int, str, logread.Snapshot]], n: int, since: float | None = None, until: float | None = None, grep: Any = None) -> list[dict[str, Any]]:
    """The last ``n`` lines of each snapshot, interleaved by time (runs in a thread)."""
    groups = [
        logread.history(snap.path, lines=n, name=name, id=iid, type=stream, since=since, until=until, grep=grep, snap=snap)
        for name, iid, stream, snap in snaps
    ]
    return [
        {"v": 1, "stream": "log", "tail": True, "time": ln.time, "name": ln.name, "id": ln.id, "type": ln.type, "message": ln.message}
        for ln in logread.interleave(groups)
    ]
