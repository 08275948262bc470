"""The database health check behind /api/health, and the up/down state it tracks.

The check runs ``SELECT 1`` in a worker thread (the driver blocks) under a deadline.
The deadline must be able to abandon the thread: ``anyio.to_thread.run_sync`` (and
Starlette's ``run_in_threadpool``, which wraps it) otherwise shields the wait from
cancellation, and ``fail_after`` would fire only once the driver gave up by itself.
The abandoned thread finishes on its own, bounded by the driver's timeouts.

State changes are logged once each (error on up -> down, info on down -> up), not on
every failing probe: a process manager polling the endpoint every few seconds
during an outage would otherwise bury everything else in the log.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import anyio
import anyio.to_thread

from .db import Database, short_error

log = logging.getLogger("webapp.health")


@dataclass(frozen=True)
class HealthResult:
    up: bool
    latency_ms: float
    error: str | None = None


class DatabaseHealth:
    def __init__(self, db: Database, timeout: float) -> None:
        self.db = db
        self.timeout = timeout
        #: None until the first observation, then "up" or "down".
        self.state: str | None = None

    async def check(self) -> HealthResult:
        started = time.perf_counter()
        error: str | None = None
        try:
            with anyio.fail_after(self.timeout):
                await anyio.to_thread.run_sync(self.db.ping, self.timeout, abandon_on_cancel=True)
        except TimeoutError:
            error = f"no answer within {self.timeout:g}s"
        except Exception as exc:
            error = short_error(exc)
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        if error is None:
            self.mark_up()
        else:
            self.mark_down(error)
        return HealthResult(up=error is None, latency_ms=latency_ms, error=error)

    async def prepare(self) -> None:
        """At startup: create the tables, or record (and log) that the database is down.

        A database that is down at startup does not stop the app: it starts, reports
        itself unhealthy, and creates the tables when the database comes back.
        """
        try:
            with anyio.fail_after(self.db.settings.db_connect_timeout + self.timeout):
                await anyio.to_thread.run_sync(self.db.ensure_schema, abandon_on_cancel=True)
        except TimeoutError:
            self.mark_down("no answer while creating tables", during="startup")
        except Exception as exc:
            self.mark_down(short_error(exc), during="startup")
        else:
            self.mark_up(during="startup")

    def mark_up(self, *, during: str = "health check") -> None:
        previous, self.state = self.state, "up"
        if previous == "down":
            log.info(
                "database is up again",
                extra={"fields": {"database": "up", "backend": self.db.backend, "during": during}},
            )

    def mark_down(self, error: str, *, during: str = "health check") -> None:
        previous, self.state = self.state, "down"
        if previous != "down":
            log.error(
                "database is down",
                extra={
                    "fields": {
                        "database": "down",
                        "backend": self.db.backend,
                        "error": error,
                        "during": during,
                    }
                },
            )
