"""The ASGI middleware in front of every route: Host and Origin checks, login, CSRF, read-only,
and the security headers of every answer."""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.dashboard import auth

PUBLIC = ("/login", "/favicon.ico")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SAFE_METHODS = ("GET", "HEAD")


class Guard:
    def __init__(self, app: ASGIApp, *, token: str, allowed: frozenset[str], read_only: bool) -> None:
        self.app = app
        self.token = token
        self.session = auth.session_value(token)
        self.csrf = auth.csrf_value(token)
        self.allowed = allowed
        self.read_only = read_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path: str = scope["path"]
        method: str = scope["method"]
        if not auth.host_ok(headers.get("host"), self.allowed):
            await _deny(send, 403, "forbidden: this Host is not the dashboard's (DNS rebinding guard)")
            return
        if not auth.origin_ok(headers.get("origin"), self.allowed):
            await _deny(send, 403, "forbidden: the request comes from another origin")
            return
        by_cookie = auth.same(_cookie(headers, auth.COOKIE), self.session)
        bearer = headers.get("authorization", "")
        by_bearer = bearer.startswith("Bearer ") and auth.same(bearer[7:].strip(), self.token)
        public = path in PUBLIC or path.startswith("/static/")
        if not public and not (by_cookie or by_bearer):
            html = "text/html" in headers.get("accept", "")
            await _deny(send, 401, "not logged in: open the URL that `corral dashboard --url` prints", html=html)
            return
        if method not in SAFE_METHODS and not public:
            if not by_bearer:  # a cookie rides along on any request: ask for proof the page sent it
                if headers.get("origin") is None:
                    await _deny(send, 403, "forbidden: a state change needs an Origin header")
                    return
                if not auth.same(headers.get(auth.CSRF_HEADER), self.csrf):
                    await _deny(send, 403, "forbidden: missing or wrong CSRF token")
                    return
            if self.read_only:
                await _deny(send, 403, "forbidden: the dashboard is read-only")
                return
        static = path.startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                raw += _security_headers(cache=static)
                message = {**message, "headers": raw}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _cookie(headers: Headers, name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _security_headers(cache: bool = False) -> list[tuple[bytes, bytes]]:
    out = [
        (b"content-security-policy", CSP.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    ]
    if not cache:
        out.append((b"cache-control", b"no-store"))
    return out


async def _deny(send: Send, status: int, message: str, *, html: bool = False) -> None:
    if html:
        from html import escape

        body = (
            "<!doctype html><meta charset=utf-8><title>Corral dashboard</title>"
            f"<body style='font-family:sans-serif;margin:3em'><h1>Corral dashboard</h1><p>{escape(message)}</p>"
        ).encode()
        ctype = b"text/html; charset=utf-8"
    else:
        body = json.dumps({"ok": False, "error": message}).encode()
        ctype = b"application/json"
    headers: list[Any] = [(b"content-type", ctype), (b"content-length", str(len(body)).encode()), *_security_headers()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
