"""``python -m corral.dashboard`` (``corral dashboard``): serve the web dashboard.

    corral dashboard                 serve on 127.0.0.1:9615 (or [dashboard] in corral.toml)
    corral dashboard --url           print the login URL (creating the token on first use)
    corral dashboard --read-only     hide and refuse every action
    corral dashboard --install       add the dashboard to the process list as an app
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

from corral.core.errors import ConfigError, CorralError

APP_NAME = "corral-dashboard"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="corral dashboard", description="Serve Corral's web dashboard (a client of the daemon).")
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1; a non-loopback one needs --allow-remote)")
    p.add_argument("--port", type=int, default=None, help="TCP port (default 9615)")
    p.add_argument("--read-only", action="store_true", default=None, help="show everything, change nothing")
    p.add_argument("--allow-remote", action="store_true", default=None, help="allow binding to a non-loopback address")
    p.add_argument("--url", action="store_true", help="print the login URL and exit")
    p.add_argument("--install", action="store_true", help="add the dashboard as a Corral app (then `corral save`)")
    return p


def login_url(settings: Any, token: str) -> str:
    return f"http://{settings.url_host}:{settings.port}/login?token={token}"


def install(settings: Any, ns: argparse.Namespace) -> int:
    from pathlib import Path

    from corral.cli.client import Client
    from corral.config.loader import load_apps

    args = ["--host", settings.host, "--port", str(settings.port)]
    if settings.read_only:
        args.append("--read-only")
    if settings.allow_remote:
        args.append("--allow-remote")
    raw = {"name": APP_NAME, "script": "corral.dashboard", "interpreter": sys.executable, "interpreter_args": ["-m"], "args": args, "kill_timeout": 3000}
    client_env = dict(os.environ)
    result = load_apps([raw], label="corral dashboard --install", base_dir=Path.home(), client_env=client_env)
    Client().call("start", {"apps": result.wire(), "client_env": client_env})
    print(f"corral: {APP_NAME} added on http://{settings.url_host}:{settings.port}/ ; `corral save` keeps it across reboots")
    return 0


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def main(argv: list[str] | None = None) -> int:
    ns = parser().parse_args(argv)
    from corral.dashboard import auth
    from corral.dashboard.settings import read_table, resolve
    from corral.system.paths import Home

    home = Home.from_env()
    try:
        table, path = read_table(str(home.root))
        settings = resolve(table, path, {"host": ns.host, "port": ns.port, "read_only": ns.read_only, "allow_remote": ns.allow_remote})
        token = auth.load_or_create_token(home.root)
    except ConfigError as e:
        sys.stderr.write(f"corral: {e.render()}\n")
        return 2
    except (OSError, ValueError) as e:
        sys.stderr.write(f"corral: dashboard token: {e}\n")
        return 1
    if ns.url:
        print(login_url(settings, token))
        return 0
    if not settings.loopback and not settings.allow_remote:
        sys.stderr.write(f"corral: refusing to serve the dashboard on {settings.host}, which other machines can reach; pass --allow-remote (or allow_remote = true in [dashboard]) if you mean it\n")
        return 2
    if ns.install:
        try:
            return install(settings, ns)
        except CorralError as e:
            sys.stderr.write(f"corral: {e}\n")
            return 1
    if not settings.loopback:
        sys.stderr.write(f"corral: WARNING: the dashboard listens on {settings.host}:{settings.port}, reachable from other machines, over plain HTTP; anyone with the token controls your apps\n")
    try:
        sock = bind(settings.host, settings.port)
    except OSError as e:
        sys.stderr.write(f"corral: cannot listen on {settings.host}:{settings.port}: {e.strerror or e} (use --port)\n")
        return 1
    return serve(settings, home, token, sock)


def serve(settings: Any, home: Any, token: str, sock: socket.socket) -> int:
    try:
        import uvicorn

        from corral.dashboard.app import create_app
    except ImportError as e:
        sock.close()
        sys.stderr.write(f"corral: the dashboard needs {e.name or 'its web stack'}: pip install 'corral[dashboard]'\n")
        return 1

    app = create_app(settings, home, token)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    print(f"corral: dashboard on http://{settings.url_host}:{settings.port}/ {'(read-only) ' if settings.read_only else ''}- log in with `corral dashboard --url`", flush=True)
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
