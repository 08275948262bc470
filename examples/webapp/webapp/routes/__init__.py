"""HTTP routes: the JSON API under /api and the server-rendered pages."""

from __future__ import annotations

from starlette.routing import BaseRoute

from . import api, pages


def all_routes() -> list[BaseRoute]:
    return [*api.routes, *pages.routes]
