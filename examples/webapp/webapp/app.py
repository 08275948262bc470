"""The ASGI application: ``app`` for uvicorn, ``create_app(settings)`` for tests.

    uvicorn webapp.app:app --port 8000          # listen on a port
    uvicorn webapp.app:app --fd 3               # or on an inherited socket
    python serve.py                             # or let serve.py choose (see there)

Nothing here knows or cares how the server got its socket.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import anyio.to_thread
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from . import __version__
from .db import Database, short_error
from .health import DatabaseHealth
from .logs import configure_logging
from .middleware import RequestContextMiddleware
from .routes import all_routes
from .schemas import ValidationError
from .settings import Settings
from .store import NoteStore

PACKAGE_DIR = Path(__file__).resolve().parent

log = logging.getLogger("webapp")


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _error_page(request: Request, status_code: int, message: str) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request,
        "error.html",
        {"status_code": status_code, "message": message},
        status_code=status_code,
    )


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if _is_api(request):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    return _error_page(request, exc.status_code, exc.detail)


async def validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ValidationError)
    return JSONResponse({"error": "validation failed", "fields": exc.errors}, status_code=422)


async def database_unavailable(request: Request, exc: Exception) -> Response:
    # The outage is logged once, by the health tracker; the access log has the 503s.
    request.app.state.health.mark_down(short_error(exc), during="request")
    headers = {"Retry-After": "5"}
    if _is_api(request):
        return JSONResponse({"error": "database unavailable"}, status_code=503, headers=headers)
    response = _error_page(request, 503, "The database is not available. Try again shortly.")
    response.headers.update(headers)
    return response


def create_app(settings: Settings | None = None) -> Starlette:
    settings = Settings.from_env() if settings is None else settings
    configure_logging(settings.log_level, settings.instance)
    # The middleware writes the access log: silence uvicorn's own (this is what
    # `uvicorn --no-access-log` does), so `uvicorn webapp.app:app` logs each request once.
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers.clear()
    uvicorn_access.propagate = False

    db = Database(settings)
    health = DatabaseHealth(db, timeout=settings.health_db_timeout)
    templates = Jinja2Templates(directory=PACKAGE_DIR / "templates")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.info(
            "starting",
            extra={"fields": {"version": __version__, "backend": db.backend}},
        )
        await health.prepare()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(db.dispose)
            log.info("stopped")

    app = Starlette(
        routes=[
            *all_routes(),
            Mount("/static", StaticFiles(directory=PACKAGE_DIR / "static"), name="static"),
        ],
        middleware=[Middleware(RequestContextMiddleware)],
        exception_handlers={
            HTTPException: http_error,
            ValidationError: validation_error,
            OperationalError: database_unavailable,
            PoolTimeoutError: database_unavailable,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.health = health
    app.state.notes = NoteStore(db)
    app.state.templates = templates
    app.state.started_at = time.time()
    app.state.started_monotonic = time.monotonic()

    # Root-relative links (no scheme or host), right behind any proxy.
    templates.env.globals["path_for"] = app.url_path_for
    templates.env.globals["version"] = __version__
    templates.env.globals["instance"] = settings.instance
    templates.env.filters["when"] = _format_when
    return app


def _format_when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


app = create_app()
