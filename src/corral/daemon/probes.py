"""Running health probes on the event loop: HTTP GET, TCP connect, or a command.

Every probe has a strict timeout and all probes share a concurrency bound,
so a hung target never delays other probes or the control socket.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from corral.core.healthspec import HealthSpec

# A bound on open sockets and processes, not a queue: each target has at most one probe in
# flight (HealthManager), so a hung target holds one slot and delays no one else.
MAX_CONCURRENT = 1024
_semaphore: asyncio.Semaphore | None = None


def _sem() -> asyncio.Semaphore:
    global _semaphore
    if _semaphore is None:
        _semaphore = asyncio.Semaphore(MAX_CONCURRENT)
    return _semaphore


async def http_probe(url: str, spec: HealthSpec, unix_path: str | None = None) -> tuple[bool, str | None]:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if unix_path:
        reader, writer = await asyncio.open_unix_connection(unix_path)
    else:
        reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: corral-probe\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        try:
            status = int(status_line.split()[1])
        except (IndexError, ValueError):
            return False, f"bad HTTP response {status_line[:60]!r}"
        body = b""
        if spec.expect_body is not None:
            # the body may come in several segments: read to the end (Connection: close)
            while len(body) < 65536:
                chunk = await reader.read(65536 - len(body))
                if not chunk:
                    break
                body += chunk
        if not spec.status_min <= status <= spec.status_max:
            return False, f"HTTP {status}"
        if spec.expect_body is not None and spec.expect_body.encode() not in body:
            return False, f"HTTP {status} without {spec.expect_body!r} in the body"
        return True, None
    finally:
        writer.close()


async def tcp_probe(address: str) -> tuple[bool, str | None]:
    if address.startswith("unix:"):
        _, writer = await asyncio.open_unix_connection(address[5:])
    else:
        host, _, port = address.rpartition(":")
        _, writer = await asyncio.open_connection(host.strip("[]") or "127.0.0.1", int(port))
    writer.close()
    return True, None


async def exec_probe(argv: list[str], cwd: str, env: dict[str, str], watch: Callable[[int, asyncio.Future[int]], None]) -> tuple[bool, str | None]:
    import tempfile

    # stderr goes to a file, not a pipe: a chatty check must not block on a full pipe
    with tempfile.TemporaryFile() as errfile:
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errfile, process_group=0, close_fds=True)
        except OSError as e:
            return False, f"cannot run {argv[0]}: {e.strerror or e}"
        return await _wait_exec(proc, errfile, watch)


async def _wait_exec(proc: subprocess.Popen[bytes], errfile: Any, watch: Callable[[int, asyncio.Future[int]], None]) -> tuple[bool, str | None]:
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    watch(proc.pid, done)
    try:
        status = await done
    except asyncio.CancelledError:
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass
        raise
    finally:
        proc.returncode = 0  # reaped by the daemon's watcher, not by Popen
    errfile.seek(0, os.SEEK_END)
    size = errfile.tell()
    errfile.seek(max(0, size - 1000))
    err = errfile.read()
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return True, None
    tail = err.decode("utf-8", "replace").strip().splitlines()
    return False, f"exit code {code}" + (f": {tail[-1][:120]}" if tail else "")


async def run_probe(coro_factory: Callable[[], Awaitable[tuple[bool, str | None]]], timeout: float) -> tuple[bool, str | None, float]:
    """(ok, error, latency ms), never raising."""
    async with _sem():
        t0 = time.monotonic()
        ok: bool
        err: str | None
        try:
            ok, err = await asyncio.wait_for(coro_factory(), timeout)
        except TimeoutError:
            ok, err = False, f"timed out after {timeout:g}s"
        except ConnectionRefusedError:
            ok, err = False, "connection refused"
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
            ok, err = False, f"{type(e).__name__}: {e}"
        except (ValueError, TypeError) as e:  # e.g. a target with an empty {port}
            ok, err = False, f"bad probe target: {e}"
        return ok, err, (time.monotonic() - t0) * 1000.0
