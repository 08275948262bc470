"""The database layer: one SQLAlchemy engine and session factory per process.

SQLite (the default) and PostgreSQL (through psycopg 3) are both first-class. The
engine is lazy: nothing connects until the first query, so the app starts (and its
health endpoint can say "database down") even when the database is not there yet.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from .models import Base
from .settings import Settings

log = logging.getLogger("webapp.db")

#: Key of the PostgreSQL advisory lock held while creating tables, so that several
#: instances starting at once do not race on CREATE TABLE.
SCHEMA_LOCK_KEY = 0x636F7272616C  # "corral"


def normalize_url(url: str) -> str:
    """Route PostgreSQL URLs to psycopg 3.

    Hosting platforms hand out ``postgres://`` and ``postgresql://`` URLs; bare, those
    would make SQLAlchemy look for psycopg2. ``postgresql+psycopg://`` is psycopg 3.
    """
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def create_db_engine(settings: Settings) -> Engine:
    url = make_url(normalize_url(settings.database_url))
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url)
    if backend == "postgresql":
        return _postgresql_engine(url, settings)
    return create_engine(url, pool_pre_ping=True)


def _sqlite_engine(url: URL) -> Engine:
    kwargs: dict[str, Any] = {
        # Sessions run in a thread pool: a connection may be used by a thread other
        # than the one that opened it (never by two at once: the pool sees to that).
        "connect_args": {"check_same_thread": False, "timeout": 5.0},
    }
    if url.database in (None, "", ":memory:"):
        # One shared connection, or every connection would see its own empty database.
        kwargs["poolclass"] = StaticPool
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            # WAL lets readers run while one process writes: several instances of the
            # app can share one database file.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    return engine


def _postgresql_engine(url: URL, settings: Settings) -> Engine:
    application_name = "corral-webapp"
    if settings.instance is not None:
        application_name += f"-{settings.instance}"
    return create_engine(
        url,
        pool_size=settings.db_pool_size,
        pool_pre_ping=True,  # drop connections the server closed while idle
        pool_timeout=max(settings.db_connect_timeout, 1.0) * 2,
        connect_args={
            # libpq counts whole seconds (and treats anything below 2 as 2).
            "connect_timeout": max(2, math.ceil(settings.db_connect_timeout)),
            "application_name": application_name,
        },
    )


class Database:
    """The engine, the session factory and the schema's state for one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = create_db_engine(settings)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in a transaction, committed on success, rolled back on error.

        Creates the tables first if that has not been done yet: if the database was
        down at startup, the first request after it comes back does it.
        """
        self.ensure_schema()
        with self.sessions.begin() as session:
            yield session

    def ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                self.create_all()
                self._schema_ready = True

    def create_all(self) -> None:
        if self.settings.data_dir is not None:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        for attempt in (1, 2):
            try:
                with self.engine.begin() as conn:
                    if self.backend == "postgresql":
                        conn.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY}
                        )
                    Base.metadata.create_all(conn)
                return
            except DBAPIError as exc:
                # SQLite has no such lock: if another process created the table
                # between our check and our CREATE, checking again finds it.
                if attempt == 1 and "already exists" in str(exc.orig).lower():
                    continue
                raise

    def ping(self, timeout: float) -> None:
        """Run ``SELECT 1``; raise if the database does not answer."""
        with self.engine.connect() as conn:
            if self.backend == "postgresql":
                # Bound the query on the server too (SET LOCAL: this transaction only),
                # so a stuck server cannot hold the connection past the health timeout.
                conn.execute(
                    text("SELECT set_config('statement_timeout', :ms, true)"),
                    {"ms": str(max(1, int(timeout * 1000)))},
                )
            conn.execute(text("SELECT 1")).scalar_one()

    def dispose(self) -> None:
        self.engine.dispose()


def short_error(exc: BaseException, limit: int = 200) -> str:
    """A one-line description of a database error, without SQL or doc links."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = [line.strip() for line in str(cause).strip().splitlines() if line.strip()]
    message = lines[0] if lines else ""
    message = f"{type(cause).__name__}: {message}" if message else type(cause).__name__
    return message if len(message) <= limit else message[: limit - 1] + "…"
