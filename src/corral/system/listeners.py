"""Listening sockets the daemon binds once and shares with every instance of an app.

The daemon keeps each socket open across reloads, restarts and scaling, so
connections wait in the backlog instead of being refused; deleting the app
closes it.  Instances receive them the systemd socket-activation way: fds
from 3, ``LISTEN_FDS``, ``LISTEN_FDNAMES`` and ``LISTEN_PID`` (set by a tiny
exec shim to the child's own pid, since the environment is built before fork).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from dataclasses import dataclass

SD_LISTEN_FDS_START = 3
DEFAULT_BACKLOG = 2048
SHIM = "/bin/bash"
HIGH_FD = 64


class ListenError(Exception):
    pass


@dataclass
class Listener:
    name: str
    address: str  # as configured: "127.0.0.1:3000", "[::]:8080", "unix:/run/app.sock"
    sock: socket.socket
    port: int | None

    @property
    def fd(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        path = self.address[5:] if self.address.startswith("unix:") else None
        with contextlib.suppress(OSError):
            self.sock.close()
        if path:
            with contextlib.suppress(OSError):
                os.unlink(path)


def parse_address(address: str) -> tuple[int, object]:
    """(family, sockaddr) of ``HOST:PORT``, ``[v6]:PORT``, ``:PORT`` or ``unix:/path``."""
    if address.startswith("unix:"):
        return socket.AF_UNIX, address[5:]
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ListenError(f"expected HOST:PORT or unix:/path, got {address!r}")
    port = int(port_text)
    if host.startswith("[") and host.endswith("]"):
        return socket.AF_INET6, (host[1:-1], port, 0, 0)
    if not host or host == "*":
        host = "0.0.0.0"
    if ":" in host:
        return socket.AF_INET6, (host, port, 0, 0)
    return socket.AF_INET, (host, port)


def listener_name(address: str, index: int, names: list[str] | None = None) -> str:
    if names and index < len(names):
        return names[index]
    return "http" if index == 0 else f"sock{index}"


def bind(address: str, name: str, *, backlog: int = DEFAULT_BACKLOG, reuse_port: bool = False) -> Listener:
    family, sockaddr = parse_address(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_UNIX:
            path = str(sockaddr)
            with contextlib.suppress(FileNotFoundError):
                if os.path.exists(path) and not _unix_in_use(path):
                    os.unlink(path)
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(sockaddr)  # type: ignore[arg-type]
        sock.listen(backlog)
        # children get a blocking socket, whatever the daemon's own use would be
        sock.setblocking(True)
        sock = _move_high(sock)
    except OSError as e:
        sock.close()
        raise ListenError(f"cannot listen on {address}: {e.strerror or e}")
    port = sock.getsockname()[1] if family != socket.AF_UNIX else None
    return Listener(name=name, address=address, sock=sock, port=port)


def _move_high(sock: socket.socket) -> socket.socket:
    """Keep listener fds clear of 3..N, where the shim puts them in the child."""
    import fcntl

    if sock.fileno() >= HIGH_FD:
        return sock
    high = fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, HIGH_FD)
    moved = socket.socket(sock.family, sock.type, sock.proto, fileno=high)
    sock.close()
    return moved


def _unix_in_use(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


_PLACEHOLDER = re.compile(r"\{(fd|port)(?::([A-Za-z0-9_.-]+))?\}")


def expand_placeholders(args: list[str], listeners: list[Listener]) -> list[str]:
    """``{fd}``, ``{fd:NAME}``, ``{port}``, ``{port:NAME}`` in args, as seen by the child."""
    if not listeners:
        return args
    by_name = {ls.name: (SD_LISTEN_FDS_START + i, ls) for i, ls in enumerate(listeners)}
    first = (SD_LISTEN_FDS_START, listeners[0])

    def sub(m: re.Match[str]) -> str:
        kind, name = m.group(1), m.group(2)
        fd, ls = by_name.get(name, first) if name else first
        if name and name not in by_name:
            raise ListenError(f"no listen socket named {name!r} (have: {', '.join(by_name)})")
        if kind == "fd":
            return str(fd)
        return str(ls.port or "")

    return [_PLACEHOLDER.sub(sub, a) for a in args]


def child_env(listeners: list[Listener]) -> dict[str, str]:
    if not listeners:
        return {}
    env = {
        "LISTEN_FDS": str(len(listeners)),
        "LISTEN_FDNAMES": ":".join(ls.name for ls in listeners),
    }
    for i, ls in enumerate(listeners):
        env[f"CORRAL_FD_{re.sub(r'[^A-Za-z0-9]', '_', ls.name).upper()}"] = str(SD_LISTEN_FDS_START + i)
    if listeners[0].port:
        env["PORT"] = str(listeners[0].port)
    return env


def shim_argv(argv: list[str], fds: list[int]) -> list[str]:
    """Wrap argv so the child sees the sockets at fds 3.. and LISTEN_PID = its own pid."""
    moves = []
    for i, fd in enumerate(fds):
        target = SD_LISTEN_FDS_START + i
        moves.append(f"{target}<&{fd}")
    closes = [f"{fd}<&-" for fd in fds if fd >= SD_LISTEN_FDS_START + len(fds)]
    script = ""
    if moves:
        script += "exec " + " ".join(moves + closes) + "; "
    script += 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"'
    return [SHIM, "-c", script, "corral-exec", *argv]
