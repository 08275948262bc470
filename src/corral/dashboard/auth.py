"""The dashboard's secrets and request checks: pure functions over headers, no framework.

One random token per home, in ``$CORRAL_HOME/dashboard.token`` (mode 0600), created on
first use.  The login cookie and the CSRF token are derived from it with HMAC, so the
token itself never sits in a cookie, and deleting the file logs every browser out.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

TOKEN_FILE = "dashboard.token"
COOKIE = "corral_dashboard"
CSRF_HEADER = "x-csrf-token"


def token_path(home_root: Path) -> Path:
    return home_root / TOKEN_FILE


def load_or_create_token(home_root: Path) -> str:
    """The home's dashboard token; created (0600, never following a symlink) when missing."""
    home_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = token_path(home_root)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        fd = os.open(path, flags)
        try:
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)
            token = os.read(fd, 4096).decode("ascii", "replace").strip()
        finally:
            os.close(fd)
        if len(token) < 32:
            raise ValueError(f"{path}: the dashboard token is too short or damaged; delete the file to make a new one")
        return token
    token = secrets.token_urlsafe(32)
    try:
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)
    return token


def _derive(token: str, purpose: bytes) -> str:
    return hmac.new(token.encode(), purpose, hashlib.sha256).hexdigest()


def session_value(token: str) -> str:
    return _derive(token, b"corral-dashboard-session")


def csrf_value(token: str) -> str:
    return _derive(token, b"corral-dashboard-csrf")


def same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """The Host header values this server answers to: its loopback names, and the bound
    address itself (DNS rebinding sends the attacker's name, which is never in here)."""
    names = {"127.0.0.1", "localhost", "[::1]"}
    if host not in ("0.0.0.0", "::", ""):
        names.add(f"[{host}]" if ":" in host else host)
    return frozenset(f"{n}:{port}" for n in names) | (frozenset(names) if port == 80 else frozenset())


def host_ok(host_header: str | None, allowed: frozenset[str]) -> bool:
    return host_header is not None and host_header.lower() in allowed


def origin_ok(origin: str | None, allowed: frozenset[str]) -> bool:
    """An Origin header, when sent, must be this very server."""
    if origin is None:
        return True
    scheme, _, rest = origin.partition("://")
    return scheme == "http" and rest.lower() in allowed
