"""The control socket's framing and per-client limits, on a real Unix socket in-process
(small limits so each one is reached quickly)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from corral import protocol
from corral.daemon.control import ControlServer


async def echo(line: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    writer.write(protocol.encode(protocol.ok(None, {"len": len(line)})))
    await writer.drain()
    return True


def run(path: Path, test: Callable[[ControlServer], Awaitable[None]], **limits: Any) -> ControlServer:
    async def main() -> ControlServer:
        server = ControlServer(str(path / "c.sock"), echo, lambda message: None, **limits)
        await server.start()
        try:
            await asyncio.wait_for(test(server), 10)
        finally:
            server.close()
        return server

    return asyncio.run(main())


async def connect(server: ControlServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_unix_connection(server.path)


async def reply(reader: asyncio.StreamReader) -> dict[str, Any]:
    line = await reader.readline()
    assert line, "closed without a reply"
    msg: dict[str, Any] = json.loads(line)
    return msg


def test_lines_are_cut_out_of_the_stream(tmp_path: Path) -> None:
    async def test(server: ControlServer) -> None:
        r, w = await connect(server)
        w.write(b"one\n\ntw")  # an empty line is skipped; a line may come in pieces
        await w.drain()
        assert (await reply(r))["result"] == {"len": 4}
        w.write(b"o\nlast")
        w.write_eof()  # a last request without its newline still counts
        assert (await reply(r))["result"] == {"len": 4}
        assert (await reply(r))["result"] == {"len": 4}
        assert await r.read() == b""
        w.close()

    server = run(tmp_path, test)
    assert server.connections == 1 and server.buffered == 0


def test_a_line_over_the_cap_is_refused(tmp_path: Path) -> None:
    async def test(server: ControlServer) -> None:
        r, w = await connect(server)
        w.write(b"x" * 5000)
        await w.drain()
        err = await reply(r)
        assert err["ok"] is False and err["error"]["code"] == "too_large"
        assert await r.read() == b""
        w.close()

    server = run(tmp_path, test, max_line=1000)
    assert server.buffered == 0


def test_idle_connections_are_closed(tmp_path: Path) -> None:
    async def test(server: ControlServer) -> None:
        r, w = await connect(server)
        w.write(b"half a req")
        await w.drain()
        assert await asyncio.wait_for(r.read(), 5) == b""  # closed after the timeout
        w.close()

    server = run(tmp_path, test, request_timeout=0.3)
    assert server.buffered == 0 and server.active == 0


def test_client_cap_and_read_budget(tmp_path: Path) -> None:
    async def test(server: ControlServer) -> None:
        held = [await connect(server) for _ in range(2)]
        for r, w in held:
            w.write(b"ping\n")
            await w.drain()
            assert (await reply(r))["ok"]
        r3, w3 = await connect(server)
        err = await reply(r3)
        assert err["error"]["code"] == "busy" and "too many clients" in err["error"]["message"]
        w3.close()
        # unfinished lines of all clients together: the one past the budget is refused
        (r1, w1), (r2, w2) = held
        w1.write(b"a" * 600)
        await w1.drain()
        await asyncio.sleep(0.1)
        w2.write(b"b" * 600)
        await w2.drain()
        err = await reply(r2)
        assert err["error"]["code"] == "busy" and "unfinished" in err["error"]["message"]
        w1.write(b"\n")
        await w1.drain()
        assert (await reply(r1))["result"] == {"len": 601}
        for _, w in held:
            w.close()
        await asyncio.sleep(0.1)
        assert server.active == 0 and server.buffered == 0

    run(tmp_path, test, max_clients=2, read_budget=1000)


def test_a_client_that_never_reads_its_replies_is_cut_off(tmp_path: Path) -> None:
    from corral import commands
    from corral.daemon.dispatch import Dispatcher

    async def big(args: dict[str, Any]) -> Any:
        return "x" * 200_000

    handlers = {c: big for c in commands.COMMANDS if not c.streaming}
    streams: dict[Any, Any] = {c: None for c in commands.COMMANDS if c.streaming}
    dispatcher = Dispatcher(handlers, streams, lambda message: None, reply_timeout=0.3)

    async def main() -> None:
        server = ControlServer(str(tmp_path / "c.sock"), dispatcher.handle_line, lambda message: None)
        await server.start()
        try:
            r, w = await connect(server)
            for _ in range(100):  # 20 MB of replies asked for, none read
                w.write(protocol.request("list"))
            await w.drain()
            await asyncio.sleep(1.0)
            assert server.active == 0  # dropped: its slot is free again
            w.close()
        finally:
            server.close()

    asyncio.run(asyncio.wait_for(main(), 10))
