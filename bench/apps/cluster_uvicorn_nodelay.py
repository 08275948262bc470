"""``python -m corral.contrib.uvicorn`` with one change: TCP_NODELAY on every connection.

uvicorn's ``--fd`` path wraps the inherited socket as ``socket.fromfd(fd, AF_UNIX, ...)``;
asyncio then takes accepted connections for Unix sockets and leaves Nagle's algorithm on,
so every keep-alive response after the first waits ~40 ms for the client's delayed ACK
(same root cause as uvicorn's ``--workers N``, Kludex/uvicorn#3149). Here the socket is
rebuilt with ``socket.socket(fileno=fd)``, which reads family and protocol from the
descriptor, and handed to uvicorn as ``sockets=[...]``: asyncio sets TCP_NODELAY itself.

bench_reload.py runs it under Corral to show what that fix gives; same command line as
``python -m corral.contrib.uvicorn`` (``cluster_app:app --fd {fd}``).
"""

from __future__ import annotations

import socket
import sys
from typing import Any


def main() -> int:
    from uvicorn.server import Server

    from corral.contrib import uvicorn as contrib

    contrib.patch()  # drain before shutdown, READY=1 once started
    patched_startup = Server.startup

    async def startup(self: Any, sockets: Any = None) -> None:
        if sockets is None and self.config.fd is not None:
            sockets = [socket.socket(fileno=self.config.fd)]
        await patched_startup(self, sockets=sockets)

    Server.startup = startup  # type: ignore[method-assign]
    return contrib.main()


if __name__ == "__main__":
    sys.exit(main())
