"""The dashboard's web application: pages, JSON API, Server-Sent Events streams and actions."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from corral import __version__
from corral.core.errors import CorralError, NotFoundError
from corral.dashboard import auth
from corral.dashboard.guard import Guard
from corral.dashboard.hub import Hub
from corral.dashboard.link import Link
from corral.dashboard.settings import Settings
from corral.system.paths import Home

HERE = Path(__file__).parent
HEARTBEAT = 15.0
LOG_LINES = 200
RANGES = {"": None, "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400}
# dashboard action -> daemon command (starting a known, stopped app is a restart)
ACTIONS = {"restart": "restart", "reload": "reload", "stop": "stop", "start": "restart", "flush": "flush", "scale": "scale"}
COUNT = re.compile(r"^[+-]?\d{1,4}$")
# what `describe` adds to an app's configuration about the running instance: not shown as config
RUNTIME_FIELDS = {"status", "pid", "uptime", "cpu", "memory", "restarts", "unstable_restarts", "started_at", "created_at", "ready", "health", "notify_status", "exit_code", "exit_signal", "reason", "last_restart_reason", "id", "instance", "log_errors", "log_lines_dropped", "log_rotations", "env_hidden"}


def sse(kind: str, data: str) -> bytes:
    return f"event: {kind}\ndata: {data}\n\n".encode()


def create_app(settings: Settings, home: Home, token: str, link: Link | None = None) -> Any:
    link = link or Link(home)
    hub = Hub(link)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    csrf = auth.csrf_value(token)

    def page(request: Request, template: str, **context: Any) -> Response:
        context.update(csrf=csrf, read_only=settings.read_only, version=__version__, home=str(home.root))
        return templates.TemplateResponse(request, template, context)

    async def index(request: Request) -> Response:
        await _first_list(hub)
        return page(request, "index.html", initial={"procs": hub.procs, "daemon": hub.daemon})

    async def login(request: Request) -> Response:
        if not auth.same(request.query_params.get("token"), token):
            return HTMLResponse("<!doctype html><title>Corral dashboard</title><p>Wrong or missing token: open the URL that <code>corral dashboard --url</code> prints.", status_code=401)
        # a page, not a redirect: a SameSite=Strict cookie set on a link opened from a
        # terminal is then sent with the same-site navigation that follows
        resp = HTMLResponse('<!doctype html><meta charset=utf-8><meta http-equiv="refresh" content="0;url=/"><title>Corral dashboard</title><p><a href="/">Logged in: continue</a>')
        resp.set_cookie(auth.COOKIE, auth.session_value(token), max_age=30 * 86400, httponly=True, samesite="strict", path="/")
        return resp

    async def app_page(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            described = await link.call("describe", {"target": [name]}, timeout=10)
        except NotFoundError:
            return HTMLResponse(f"<!doctype html><title>Corral dashboard</title><p>No app named {_esc(name)}. <a href='/'>All apps</a>", status_code=404)
        except CorralError as e:
            return HTMLResponse(f"<!doctype html><title>Corral dashboard</title><p>{_esc(str(e))}", status_code=503)
        described = [d for d in described if d.get("name") == name]
        if not described:
            return HTMLResponse(f"<!doctype html><title>Corral dashboard</title><p>{_esc(name)} is a namespace or an id; open an app. <a href='/'>All apps</a>", status_code=404)
        await _first_list(hub)
        config = {k: json.dumps(v, ensure_ascii=False) for k, v in described[0].items() if k not in RUNTIME_FIELDS}
        ids = {d["id"] for d in described}
        initial = {
            "name": name,
            "procs": hub.procs,
            "daemon": hub.daemon,
            "history": hub.history_json(ids),
            "events": hub.app_events(name)[-200:],
            "events_source": hub.events_source,
        }
        return page(request, "app.html", name=name, config=config, initial=initial, ranges=list(RANGES))

    async def api_processes(request: Request) -> Response:
        await _first_list(hub)
        return JSONResponse({"daemon": hub.daemon, "processes": hub.procs})

    async def api_app(request: Request) -> Response:
        name = request.path_params["name"]
        ids = {p["id"] for p in hub.procs if p.get("name") == name}
        if not ids:
            return JSONResponse({"ok": False, "error": f"no app named {name!r}"}, status_code=404)
        return JSONResponse({"name": name, "history": hub.history_json(ids), "events": hub.app_events(name), "events_source": hub.events_source})

    async def stream(request: Request) -> Response:
        q = hub.attach()

        async def gen() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 1000\n\n"
                while True:
                    try:
                        msg = await asyncio.wait_for(q.get(), HEARTBEAT)
                    except TimeoutError:
                        yield b": ping\n\n"
                        continue
                    if msg is None:
                        return
                    yield sse(*msg)
            finally:
                hub.detach(q)

        return StreamingResponse(gen(), media_type="text/event-stream", headers={"x-accel-buffering": "no"})

    async def log_stream(request: Request) -> Response:
        name = request.path_params["name"]
        qp = request.query_params
        streams = [s for s in qp.get("streams", "out,err").split(",") if s in ("out", "err")] or ["out", "err"]
        rng = qp.get("range", "")
        if rng not in RANGES:
            return JSONResponse({"ok": False, "error": f"query field 'range': expected one of {', '.join(r or '(all)' for r in RANGES)}"}, status_code=400)
        seconds = RANGES[rng]
        args: dict[str, Any] = {"target": [name], "logs": True, "lines": LOG_LINES, "streams": streams, "follow": True}
        if seconds:
            args["since"] = time.time() - seconds
        search = qp.get("q", "").strip()
        if search:
            args["grep"] = re.escape(search[:500])

        async def gen() -> AsyncIterator[bytes]:
            yield b"retry: 2000\n\n"
            try:
                async for msg in link.subscribe(args):
                    kind = msg.get("stream")
                    if kind == "log":
                        yield sse("log", json.dumps({k: msg.get(k) for k in ("time", "id", "type", "message", "tail")}))
                    elif kind == "notice":
                        yield sse("notice", json.dumps({"message": msg.get("message")}))
                    elif kind == "end":
                        yield sse("end", "{}")
            except NotFoundError as e:
                yield sse("notice", json.dumps({"message": str(e)}))
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(3600)  # held open: no reconnecting to an app that is gone
            except CorralError as e:
                # closed: the page reconnects (retry above) and tails again once the daemon is back
                yield sse("notice", json.dumps({"message": f"log stream ended: {e}"}))

        return StreamingResponse(gen(), media_type="text/event-stream", headers={"x-accel-buffering": "no"})

    async def action(request: Request) -> Response:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _bad("the request body must be a JSON object")
        if not isinstance(body, dict):
            return _bad("the request body must be a JSON object")
        verb, target, count = body.get("action"), body.get("target"), body.get("count")
        if verb not in ACTIONS:
            return _bad(f"field 'action': expected one of {', '.join(ACTIONS)}, got {verb!r}")
        if not isinstance(target, str | int) or isinstance(target, bool) or not str(target).strip() or len(str(target)) > 200:
            return _bad("field 'target': expected an app name or an instance id")
        target = str(target).strip()
        if verb == "scale":
            if not isinstance(count, str | int) or isinstance(count, bool) or not COUNT.match(str(count)):
                return _bad("field 'count': expected N, +N or -N")
            args: dict[str, Any] = {"name": target, "count": str(count)}
        else:
            args = {"target": [target]}
        try:
            result = await link.call(ACTIONS[verb], args)
        except NotFoundError as e:
            return JSONResponse({"ok": False, "error": str(e)}, status_code=404)
        except CorralError as e:
            return JSONResponse({"ok": False, "error": str(e)}, status_code=409)
        finally:
            hub.kick.set()
        return JSONResponse({"ok": True, "action": verb, "result": result})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hub.start()
        try:
            yield
        finally:
            await hub.stop()

    routes = [
        Route("/", index),
        Route("/login", login),
        Route("/apps/{name}", app_page),
        Route("/apps/{name}/logs", log_stream),
        Route("/stream", stream),
        Route("/api/processes", api_processes),
        Route("/api/apps/{name}", api_app),
        Route("/api/action", action, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.hub = hub
    return Guard(app, token=token, allowed=auth.allowed_hosts(settings.host, settings.port), read_only=settings.read_only)


async def _first_list(hub: Hub) -> None:
    if not hub.ready.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(hub.ready.wait(), 5)


def _bad(message: str) -> Response:
    return JSONResponse({"ok": False, "error": message}, status_code=400)


def _esc(text: str) -> str:
    from html import escape

    return escape(text)
