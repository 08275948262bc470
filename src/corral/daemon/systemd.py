"""READY=1 to systemd when the daemon runs under it (``Type=notify``)."""

from __future__ import annotations

import os


class SystemdNotifier:
    """READY=1 to systemd (NOTIFY_SOCKET in the daemon's environment), once."""

    def __init__(self) -> None:
        self.sent = False

    @staticmethod
    def wanted() -> bool:
        return bool(os.environ.get("NOTIFY_SOCKET"))

    def ready(self, status: str) -> None:
        if self.sent or not self.wanted():
            return
        import corral

        corral.notify(ready=True, status=status, mainpid=str(os.getpid()))
        self.sent = True
