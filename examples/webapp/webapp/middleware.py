"""Request id and access log, as a plain ASGI middleware.

A pure ASGI middleware (rather than Starlette's ``BaseHTTPMiddleware``) sees the
response status as it is sent, streams bodies through untouched and adds no task
per request.

* Request id: an incoming ``X-Request-ID`` is kept if it looks sane, otherwise a new
  one is made. Handlers read it as ``request.state.request_id``; the response carries
  it back in ``X-Request-ID``.
* Access log: one JSON line per request on stdout (logger ``webapp.access``), with
  time, level, request_id, method, path, status, duration_ms, instance and pid.
* An exception that escapes the app is logged (stderr, with the traceback and the
  request id) and answered with a JSON 500 that still carries the request id.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .logs import ACCESS_LOGGER

REQUEST_ID_HEADER = "X-Request-ID"
# Ids travel into logs and response headers: accept only short, plain tokens.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")

access_log = logging.getLogger(ACCESS_LOGGER)
error_log = logging.getLogger("webapp.errors")


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        incoming = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        request_id = incoming if _VALID_REQUEST_ID.fullmatch(incoming) else new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id

        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception:
            status = 500
            error_log.exception(
                "unhandled error",
                extra={
                    "fields": {
                        "request_id": request_id,
                        "method": scope["method"],
                        "path": scope["path"],
                    }
                },
            )
            if response_started:
                raise  # too late for a clean 500: let the server drop the connection
            response = JSONResponse(
                {"error": "internal server error", "request_id": request_id},
                status_code=500,
                headers={REQUEST_ID_HEADER: request_id},
            )
            await response(scope, receive, send)
        finally:
            access_log.info(
                "request",
                extra={
                    "fields": {
                        "request_id": request_id,
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    }
                },
            )
