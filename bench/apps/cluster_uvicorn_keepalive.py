"""``python -m corral.contrib.uvicorn`` with two changes, to measure what they would give.

1. TCP_NODELAY on every connection (as ``cluster_uvicorn_nodelay.py``): the inherited
   socket is rebuilt with ``socket.socket(fileno=fd)`` instead of uvicorn's
   ``socket.fromfd(fd, AF_UNIX, ...)``, so asyncio sees a TCP socket.
2. A keep-alive-aware drain. On shutdown, stock uvicorn closes every keep-alive
   connection between two requests, and ends the ones in flight after their response
   without saying so (no ``Connection: close`` header): a client that reuses the
   connection sends its next request into a closing socket and gets a reset or an
   empty reply (wrk counts a read error). Here shutdown stops listening, then for up to
   ``CORRAL_KEEPALIVE_DRAIN`` seconds (default 0.5) keeps serving, with
   ``Connection: close`` on every response, so each client learns that it must
   reconnect (to a live instance, through the shared socket) before the connection
   closes; then it shuts down as ``corral.contrib.uvicorn`` does.

bench_reload.py's ``reload`` runs it under Corral when ``BENCH_CLUSTER_UVICORN=keepalive``.
Same command line as ``python -m corral.contrib.uvicorn`` (``cluster_app:app --fd {fd}``).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from typing import Any

CLOSE = (b"connection", b"close")


def main() -> int:
    from uvicorn.protocols.http import h11_impl
    from uvicorn.server import Server

    from corral.contrib import uvicorn as contrib

    contrib.patch()  # drain before shutdown, READY=1 once started
    drain = float(os.environ.get("CORRAL_KEEPALIVE_DRAIN", "0.5"))
    draining = False

    cycle_send = h11_impl.RequestResponseCycle.send

    async def send(self: Any, message: Any) -> None:
        if draining and message["type"] == "http.response.start" and not self.response_started:
            headers = list(message.get("headers", []))
            if CLOSE not in headers:
                message = dict(message, headers=[*headers, CLOSE])
        await cycle_send(self, message)

    h11_impl.RequestResponseCycle.send = send  # type: ignore[method-assign]

    patched_startup = Server.startup
    patched_shutdown = Server.shutdown

    async def startup(self: Any, sockets: Any = None) -> None:
        if sockets is None and self.config.fd is not None:
            sockets = [socket.socket(fileno=self.config.fd)]
        await patched_startup(self, sockets=sockets)

    async def shutdown(self: Any, sockets: Any = None) -> None:
        nonlocal draining
        for server in self.servers:
            server.close()
        draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain
        while self.server_state.connections and loop.time() < deadline:
            await asyncio.sleep(0.01)
        await patched_shutdown(self, sockets=sockets)

    Server.startup = startup  # type: ignore[method-assign]
    Server.shutdown = shutdown  # type: ignore[method-assign]
    return contrib.main()


if __name__ == "__main__":
    sys.exit(main())
