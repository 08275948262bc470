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
* **Readiness.** Once uvicorn has started, ``READY=1`` goes to ``NOTIFY_SOCKET``,
  so ``wait_ready = true`` works.

Imported only when used: ``import corral`` never loads uvicorn.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any


def patch() -> None:
    from uvicorn.server import Server

    if getattr(Server, "_corral_patched", False):
        return
    original_shutdown = Server.shutdown
    original_startup = Server.startup
    drain = float(os.environ.get("CORRAL_DRAIN_SECONDS", "0.1"))

    async def shutdown(self: Any, sockets: Any = None) -> None:
        for server in getattr(self, "servers", []):
            server.close()
        await asyncio.sleep(drain)
        await original_shutdown(self, sockets=sockets)

    async def startup(self: Any, sockets: Any = None) -> None:
        await original_startup(self, sockets=sockets)
        if not getattr(self, "should_exit", False):
            import corral

            corral.notify(ready=True, status="uvicorn started")

    Server.shutdown = shutdown  # type: ignore[method-assign]
    Server.startup = startup  # type: ignore[method-assign]
    Server._corral_patched = True  # type: ignore[attr-defined]


def main() -> int:
    import uvicorn

    patch()
    result = uvicorn.main()  # click command: parses sys.argv, exits
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
