"""``python -m corral.contrib.uvicorn``: the ``uvicorn`` command, made reload-safe.

Same command line as ``uvicorn`` (``app:app --fd {fd}``), with two additions:

* **Drain before shutdown.** Stock uvicorn's ``Server.shutdown()`` stops listening
  and, in the same event-loop turn, closes every connection without a parsed
  request, including one it accepted a moment earlier whose request it has not
  read yet: that client gets a reset (uvicorn issue #2757; the fix proposed
  upstream in #3124). On a shared socket during a rolling reload, that is the one
  way a request can fail. Here, shutdown stops listening first, gives such
  connections ``CORRAL_DRAIN_SECONDS`` (default 0.1 s) to be read and served, then
  shuts down as uvicorn does.
* **Keep-alive clients are told to reconnect.** While it drains (up to
  ``CORRAL_KEEPALIVE_DRAIN`` seconds, default 0.5, or until no connection is left), it
  keeps serving the connections it has, with ``Connection: close`` on every response,
  so a keep-alive client reconnects (to a live instance, through the shared socket)
  instead of sending its next request into a closing connection.
* **TCP_NODELAY.** uvicorn's ``--fd`` wraps the inherited socket as a Unix socket, so
  asyncio leaves Nagle's algorithm on and each keep-alive response after the first
  waits ~40 ms for the client's delayed ACK (the cause of uvicorn #3149 too). Here the
  socket is rebuilt with ``socket.socket(fileno=fd)``, which reads its real family.
* **Readiness.** Once uvicorn has started, ``READY=1`` goes to ``NOTIFY_SOCKET``,
  so ``wait_ready = true`` works.

Imported only when used: ``import corral`` never loads uvicorn.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

CLOSE = (b"connection", b"close")


def patch() -> None:
    import socket

    from uvicorn.server import Server

    if getattr(Server, "_corral_patched", False):
        return
    original_shutdown = Server.shutdown
    original_startup = Server.startup
    drain = float(os.environ.get("CORRAL_DRAIN_SECONDS", "0.1"))
    keepalive_drain = float(os.environ.get("CORRAL_KEEPALIVE_DRAIN", "0.5"))
    state = {"draining": False}
    _patch_responses(state)

    async def shutdown(self: Any, sockets: Any = None) -> None:
        for server in getattr(self, "servers", []):
            server.close()
        state["draining"] = True
        loop = asyncio.get_running_loop()
        await asyncio.sleep(drain)  # just-accepted connections get read and served
        deadline = loop.time() + max(0.0, keepalive_drain - drain)
        connections = getattr(getattr(self, "server_state", None), "connections", ())
        while connections and loop.time() < deadline:
            await asyncio.sleep(0.01)
        await original_shutdown(self, sockets=sockets)

    async def startup(self: Any, sockets: Any = None) -> None:
        fd = getattr(self.config, "fd", None)
        if sockets is None and fd is not None:
            sockets = [socket.socket(fileno=fd)]  # its real family: TCP_NODELAY gets set
        await original_startup(self, sockets=sockets)
        if not getattr(self, "should_exit", False):
            import corral

            corral.notify(ready=True, status="uvicorn started")

    Server.shutdown = shutdown  # type: ignore[method-assign]
    Server.startup = startup  # type: ignore[method-assign]
    Server._corral_patched = True  # type: ignore[attr-defined]


def _patch_responses(state: dict[str, bool]) -> None:
    """While draining, every response says ``Connection: close``."""
    import importlib

    for module_name in ("uvicorn.protocols.http.h11_impl", "uvicorn.protocols.http.httptools_impl"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        cycle = getattr(module, "RequestResponseCycle", None)
        if cycle is None:
            continue
        original_send = cycle.send

        def make(original: Any) -> Any:
            async def send(self: Any, message: Any) -> None:
                if state["draining"] and message.get("type") == "http.response.start" and not getattr(self, "response_started", False):
                    headers = list(message.get("headers", []))
                    if CLOSE not in headers:
                        message = dict(message, headers=[*headers, CLOSE])
                await original(self, message)

            return send

        cycle.send = make(original_send)


def main() -> int:
    import uvicorn

    patch()
    result = uvicorn.main()  # click command: parses sys.argv, exits
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
