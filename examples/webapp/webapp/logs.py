"""Structured logging: one JSON object per line.

Access lines (logger ``webapp.access``) go to stdout, everything else (``webapp``
and, when serve.py asks for it, ``uvicorn``) to stderr, so a process manager can keep
the request log and the error log apart. Every line carries time, level, msg,
instance and pid; extra fields are passed as ``extra={"fields": {...}}``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

ACCESS_LOGGER = "webapp.access"
APP_LOGGER = "webapp"


def utc_timestamp(epoch: float) -> str:
    """ISO 8601 in UTC with milliseconds: 2024-05-01T12:00:00.123Z."""
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


class JsonFormatter(logging.Formatter):
    def __init__(self, instance: str | None = None) -> None:
        super().__init__()
        self.instance = instance

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": utc_timestamp(record.created),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        entry.setdefault("instance", self.instance)
        entry.setdefault("pid", record.process if record.process is not None else os.getpid())
        entry["logger"] = record.name
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class StdStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler for sys.stdout or sys.stderr as they are when a record is written.

    A plain StreamHandler keeps the stream it was given at creation; this one looks
    it up each time, so output redirected later (pytest's capsys, a test harness
    swapping sys.stdout) still receives the lines.
    """

    def __init__(self, stream_name: str) -> None:
        self.stream_name = stream_name
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return getattr(sys, self.stream_name)

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler.__init__ assigns it.
        pass


def configure_logging(level: str, instance: str | None, *, uvicorn: bool = False) -> None:
    """Install the JSON handlers. Idempotent: calling it again replaces them."""
    formatter = JsonFormatter(instance)

    def install(name: str, stream_name: str) -> logging.Logger:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, StdStreamHandler):
                logger.removeHandler(handler)
        handler = StdStreamHandler(stream_name)
        handler.setFormatter(formatter)
        logger.addHandler(handler)
        logger.propagate = False
        return logger

    install(APP_LOGGER, "stderr").setLevel(level.upper())
    install(ACCESS_LOGGER, "stdout")  # level inherited from "webapp"
    if uvicorn:
        install("uvicorn", "stderr").setLevel(level.upper())
