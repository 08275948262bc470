"""The JSON API: notes CRUD, /api/info and /api/health.

Database work is blocking, so each handler hands it to the thread pool with
``run_in_threadpool``. Invalid input raises ``ValidationError`` (422 with one message
per field); a missing note raises ``HTTPException(404)``: the app's exception
handlers turn both into JSON.
"""

from __future__ import annotations

import json
import os
import platform
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import __version__
from ..health import DatabaseHealth
from ..logs import utc_timestamp
from ..schemas import ValidationError, validate_note
from ..store import NoteStore

NO_STORE = {"Cache-Control": "no-store"}


def _store(request: Request) -> NoteStore:
    return request.app.state.notes  # type: ignore[no-any-return]


def _query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError({name: "must be an integer"})
    if not low <= value <= high:
        raise ValidationError({name: f"must be between {low} and {high}"})
    return value


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HTTPException(400, "request body must be valid JSON")
    if not isinstance(data, dict):
        raise HTTPException(400, "request body must be a JSON object")
    return data


def _not_found(note_id: int) -> HTTPException:
    return HTTPException(404, f"note {note_id} not found")


async def list_notes(request: Request) -> Response:
    limit = _query_int(request, "limit", default=100, low=1, high=500)
    offset = _query_int(request, "offset", default=0, low=0, high=10**9)
    notes = await run_in_threadpool(_store(request).list, limit=limit, offset=offset)
    return JSONResponse(
        {"notes": [note.to_dict() for note in notes], "limit": limit, "offset": offset}
    )


async def create_note(request: Request) -> Response:
    fields = validate_note(await _json_object(request))
    note = await run_in_threadpool(_store(request).create, fields)
    return JSONResponse(
        note.to_dict(), status_code=201, headers={"Location": f"/api/notes/{note.id}"}
    )


async def get_note(request: Request) -> Response:
    note_id: int = request.path_params["note_id"]
    note = await run_in_threadpool(_store(request).get, note_id)
    if note is None:
        raise _not_found(note_id)
    return JSONResponse(note.to_dict())


async def update_note(request: Request) -> Response:
    note_id: int = request.path_params["note_id"]
    changes = validate_note(await _json_object(request), partial=True)
    note = await run_in_threadpool(_store(request).update, note_id, changes)
    if note is None:
        raise _not_found(note_id)
    return JSONResponse(note.to_dict())


async def delete_note(request: Request) -> Response:
    note_id: int = request.path_params["note_id"]
    if not await run_in_threadpool(_store(request).delete, note_id):
        raise _not_found(note_id)
    return Response(status_code=204)


async def info(request: Request) -> Response:
    state = request.app.state
    return JSONResponse(
        {
            "name": "corral-webapp",
            "version": __version__,
            "pid": os.getpid(),
            "instance": state.settings.instance,
            "uptime": round(time.monotonic() - state.started_monotonic, 3),
            "started_at": utc_timestamp(state.started_at),
            "python": platform.python_version(),
            "database": state.db.backend,
        },
        headers=NO_STORE,
    )


async def health(request: Request) -> Response:
    checker: DatabaseHealth = request.app.state.health
    result = await checker.check()
    body: dict[str, Any] = {
        "status": "ok" if result.up else "error",
        "database": "up" if result.up else "down",
        "latency_ms": result.latency_ms,
    }
    if result.error is not None:
        body["error"] = result.error
    body["instance"] = request.app.state.settings.instance
    body["pid"] = os.getpid()
    return JSONResponse(body, status_code=200 if result.up else 500, headers=NO_STORE)


routes = [
    Route("/api/notes", list_notes, methods=["GET"], name="api_list_notes"),
    Route("/api/notes", create_note, methods=["POST"], name="api_create_note"),
    Route("/api/notes/{note_id:int}", get_note, methods=["GET"], name="api_get_note"),
    Route("/api/notes/{note_id:int}", update_note, methods=["PATCH"], name="api_update_note"),
    Route("/api/notes/{note_id:int}", delete_note, methods=["DELETE"], name="api_delete_note"),
    Route("/api/info", info, methods=["GET"], name="api_info"),
    Route("/api/health", health, methods=["GET"], name="api_health"),
]
