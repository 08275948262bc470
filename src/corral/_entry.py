"""The ``corral`` command's entry point, kept tiny.

``corral ls`` / ``jlist`` / ``ping`` with a running daemon take a fast path
that imports only ``os``, ``sys``, ``json`` and ``socket`` (plus the table
renderer): no argparse, no dataclasses, no subprocess.  Everything else, and
these verbs when the daemon is not running yet, goes through ``corral.cli``.
"""

import json
import os
import socket
import stat
import sys

FAST_LIST = {"ls", "list", "status", "l", "ps"}


class _Fallback(Exception):
    pass


def _call(cmd: str) -> object:
    root = os.environ.get("CORRAL_HOME") or os.path.join(os.path.expanduser("~"), ".corral")
    try:
        st = os.lstat(root)
    except OSError:
        raise _Fallback()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise _Fallback()  # a symlinked or foreign home: the full CLI refuses it with the reason
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(os.path.join(os.path.abspath(root), "corral.sock"))
    except OSError:
        sock.close()
        raise _Fallback()
    try:
        sock.sendall(json.dumps({"v": 1, "id": 1, "cmd": cmd, "args": {}}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise _Fallback()
            buf += chunk
        reply = json.loads(buf)
    except (OSError, ValueError):
        raise _Fallback()  # a lost connection or a bad reply: the full CLI reports it
    finally:
        sock.close()
    if not isinstance(reply, dict) or not reply.get("ok") or "result" not in reply:
        raise _Fallback()  # let the full CLI report it
    return reply["result"]


def _fast(argv: list[str]) -> int:
    verb = argv[0]
    flags = argv[1:]
    if verb in FAST_LIST and flags in ([], ["--json"]):
        processes = _call("list")
        if not isinstance(processes, list):
            raise _Fallback()
        if flags:
            sys.stdout.write(json.dumps(processes, indent=2) + "\n")
            return 0
        from corral.cli import render

        render.write(render.table(processes, colour=render.use_colour(sys.stdout)))
        return 0
    if verb == "jlist" and not flags:
        sys.stdout.write(json.dumps(_call("list")) + "\n")
        return 0
    if verb == "ping" and not flags:
        result = _call("ping")
        if not isinstance(result, dict):
            raise _Fallback()
        sys.stdout.write(json.dumps({"msg": "pong", **result}) + "\n")
        return 0
    raise _Fallback()


def main() -> int:
    argv = sys.argv[1:]
    if argv:
        try:
            return _fast(argv)
        except _Fallback:
            pass
        except BrokenPipeError:
            from corral.cli.common import quiet_stdout

            return quiet_stdout()
        except KeyboardInterrupt:
            return 130
    from corral.cli import main as full

    return full()
