"""Server-rendered pages: the note list with its form, and one note.

HTML forms can only GET and POST, so the page routes use POST for create, toggle
and delete, and answer each with a 303 redirect (post/redirect/get: reloading the
page does not resubmit the form).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..schemas import ValidationError, validate_note
from ..store import NoteStore

PAGE_SIZE = 100


def _store(request: Request) -> NoteStore:
    return request.app.state.notes  # type: ignore[no-any-return]


def _render(
    request: Request, name: str, context: dict[str, object], status_code: int = 200
) -> Response:
    return request.app.state.templates.TemplateResponse(  # type: ignore[no-any-return]
        request, name, context, status_code=status_code
    )


async def _index(
    request: Request,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    store = _store(request)
    notes = await run_in_threadpool(store.list, limit=PAGE_SIZE)
    total = await run_in_threadpool(store.count)
    context = {
        "notes": notes,
        "total": total,
        "errors": errors or {},
        "form": form or {"title": "", "body": ""},
    }
    return _render(request, "index.html", context, status_code=status_code)


async def index(request: Request) -> Response:
    return await _index(request)


async def create(request: Request) -> Response:
    async with request.form() as form_data:
        form = {
            "title": str(form_data.get("title", "")),
            "body": str(form_data.get("body", "")),
        }
    try:
        fields = validate_note(form)
    except ValidationError as exc:
        # Show the list again, with the messages and what the user typed.
        return await _index(request, errors=exc.errors, form=form, status_code=422)
    await run_in_threadpool(_store(request).create, fields)
    return RedirectResponse(request.app.url_path_for("index"), status_code=303)


async def show(request: Request) -> Response:
    note_id: int = request.path_params["note_id"]
    note = await run_in_threadpool(_store(request).get, note_id)
    if note is None:
        raise HTTPException(404, f"There is no note {note_id}.")
    return _render(request, "note.html", {"note": note})


async def toggle(request: Request) -> Response:
    note_id: int = request.path_params["note_id"]
    if await run_in_threadpool(_store(request).toggle, note_id) is None:
        raise HTTPException(404, f"There is no note {note_id}.")
    return RedirectResponse(request.app.url_path_for("show_note", note_id=note_id), status_code=303)


async def delete(request: Request) -> Response:
    note_id: int = request.path_params["note_id"]
    if not await run_in_threadpool(_store(request).delete, note_id):
        raise HTTPException(404, f"There is no note {note_id}.")
    return RedirectResponse(request.app.url_path_for("index"), status_code=303)


routes = [
    Route("/", index, methods=["GET"], name="index"),
    Route("/notes", create, methods=["POST"], name="create_note"),
    Route("/notes/{note_id:int}", show, methods=["GET"], name="show_note"),
    Route("/notes/{note_id:int}/toggle", toggle, methods=["POST"], name="toggle_note"),
    Route("/notes/{note_id:int}/delete", delete, methods=["POST"], name="delete_note"),
]
