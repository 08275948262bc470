"""One view of the daemon shared by every open page: the process list, the CPU/memory
series and the recent events, refreshed over the control socket and fanned out to the
pages' Server-Sent Events streams.

Whatever the number of pages, the daemon sees one dashboard: one ``list`` every
``LIST_EVERY`` seconds (at once after an event), one ``history`` every
``HISTORY_EVERY``, and one event subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from typing import Any

from corral.core.errors import CorralError
from corral.dashboard.link import Link
from corral.dashboard.series import Series, merge

LIST_EVERY = (2.0, 15.0)  # seconds between `list` calls: with pages open, without
HISTORY_EVERY = (5.0, 30.0)
EVENTS_KEPT = 1000
CLIENT_QUEUE = 200  # messages a page may lag behind before its stream is closed (it reconnects)

Message = tuple[str, str]  # (SSE event name, JSON data)


class Hub:
    def __init__(self, link: Link) -> None:
        self.link = link
        self.procs: list[dict[str, Any]] = []
        self.procs_json = "[]"
        self.daemon: dict[str, Any] = {"up": False, "error": "not connected yet"}
        self.series: dict[int, Series] = {}
        self.history_since = 0.0  # daemon-monotonic time of the newest sample seen (0: the whole hour)
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self.events_source = "live"  # "daemon" once the daemon answers `events`
        self.clients: set[asyncio.Queue[Message | None]] = set()
        self.kick = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()  # set after the first list attempt

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._poll_list()), loop.create_task(self._poll_history()), loop.create_task(self._follow_events())]

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(BaseException):
                await t
        for q in list(self.clients):
            self._close(q)

    # ------------------------------------------------------------ pages

    def attach(self) -> asyncio.Queue[Message | None]:
        q: asyncio.Queue[Message | None] = asyncio.Queue(CLIENT_QUEUE)
        q.put_nowait(("daemon", json.dumps(self.daemon)))
        q.put_nowait(("procs", self.procs_json))
        self.clients.add(q)
        self.kick.set()  # a fresh page gets fresh numbers
        return q

    def detach(self, q: asyncio.Queue[Message | None]) -> None:
        self.clients.discard(q)

    def _close(self, q: asyncio.Queue[Message | None]) -> None:
        self.clients.discard(q)
        while not q.empty():
            q.get_nowait()
        q.put_nowait(None)

    def publish(self, kind: str, data: Any) -> None:
        text = data if isinstance(data, str) else json.dumps(data)
        for q in list(self.clients):
            try:
                q.put_nowait((kind, text))
            except asyncio.QueueFull:
                self._close(q)  # too slow: it reconnects and starts from a snapshot

    @staticmethod
    def normalise_event(ev: dict[str, Any]) -> dict[str, Any]:
        """One shape for the page: the subscription's events say ``name``/``id``, the daemon's
        event ring (``events``) says ``app``/``instance``; both are kept."""
        out = {k: v for k, v in ev.items() if k not in ("v", "stream")}
        if out.get("name") is None and out.get("app") is not None:
            out["name"] = out["app"]
        return out

    def app_events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("name") == name]

    def history_json(self, ids: set[int]) -> dict[str, Any]:
        return {str(i): s.as_json() for i, s in self.series.items() if i in ids}

    # ------------------------------------------------------------ refreshing

    def _set_daemon(self, up: bool, error: str | None = None) -> None:
        state = {"up": up, "error": error}
        if state != self.daemon:
            self.daemon = state
            self.publish("daemon", state)

    async def refresh_list(self) -> None:
        try:
            procs = await self.link.call("list", timeout=10)
        except (TimeoutError, CorralError, OSError, ValueError) as e:
            self._set_daemon(False, str(e) or type(e).__name__)
            return
        finally:
            self.ready.set()
        self._set_daemon(True)
        text = json.dumps(procs)
        if text != self.procs_json:
            self.procs, self.procs_json = procs, text
            self.publish("procs", text)

    async def refresh_history(self) -> None:
        try:
            # the daemon keeps an hour per instance (fine samples, then one point per 10 s):
            # the first call takes it all, later ones only what is newer than the last sample seen
            hist = await self.link.call("history", {"target": ["all"], "since": self.history_since}, timeout=10)
        except (TimeoutError, CorralError, OSError, ValueError):
            return
        for samples in hist.values():
            for sample in samples:
                with contextlib.suppress(KeyError, TypeError, ValueError):
                    self.history_since = max(self.history_since, float(sample["time"]))
        now = time.time()
        offset = now - time.monotonic()  # the daemon stamps samples with CLOCK_MONOTONIC
        fresh: dict[str, Any] = {}
        for key, samples in hist.items():
            iid = int(key)
            s = self.series.setdefault(iid, Series())
            before = s.t[-1] if len(s) else 0.0
            if merge(s, samples, offset, now):
                fresh[key] = s.as_json(since=before)
        for iid in list(self.series):
            if str(iid) not in hist:
                del self.series[iid]
        if fresh:
            self.publish("history", fresh)

    async def _poll_list(self) -> None:
        while True:
            await self.refresh_list()
            wait = LIST_EVERY[0] if self.clients else LIST_EVERY[1]
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.kick.wait(), wait)
            self.kick.clear()
            await asyncio.sleep(0.02)  # let a burst of events settle into one refresh

    async def _poll_history(self) -> None:
        while True:
            await self.refresh_history()
            await asyncio.sleep(HISTORY_EVERY[0] if self.clients else HISTORY_EVERY[1])

    async def _load_events(self) -> None:
        """Past events when the daemon keeps them (the `events` command); else only live ones."""
        try:
            result = await self.link.call("events", {}, timeout=10)
        except (TimeoutError, CorralError, OSError, ValueError):
            return
        items = result.get("events") if isinstance(result, dict) else result
        if isinstance(items, list):
            self.events.clear()
            self.events.extend(self.normalise_event(e) for e in items if isinstance(e, dict))
            self.events_source = "daemon"

    async def _follow_events(self) -> None:
        while True:
            if not self.daemon["up"]:
                await self.refresh_list()  # a daemon coming back is seen within a second
            try:
                await self._load_events()
                async for msg in self.link.subscribe({"target": ["all"], "logs": False, "events": True}):
                    if msg.get("stream") != "event":
                        continue
                    ev = self.normalise_event(msg)
                    self.events.append(ev)
                    self.publish("event", ev)
                    self.kick.set()
            except (CorralError, OSError, ValueError) as e:
                self._set_daemon(False, str(e))
            await asyncio.sleep(1.0)
