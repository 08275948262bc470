"""Corral as Node's cluster primary, against real `node` processes.

The harness plays the daemon's part: it spawns unchanged Node http apps with
NODE_UNIQUE_ID and an IPC channel, answers their listen() with one shared socket,
takes `process.send('ready')` as readiness and asks them to shut down.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from corral.core.appspec import AppSpec, from_wire
from corral.daemon import nodeipc, readypipe
from tests.conftest import ROOT, free_port

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")
SERVER_JS = ROOT / "tests" / "fixtures" / "node" / "server.js"


class Instance:
    def __init__(self, proc: subprocess.Popen[bytes], channel: nodeipc.NodeChannel) -> None:
        self.proc = proc
        self.channel = channel
        self.events: list[nodeipc.Event] = []
        self.closed: asyncio.Event = asyncio.Event()

    def saw(self, kind: type) -> bool:
        return any(isinstance(e, kind) for e in self.events)


class Primary:
    """What the daemon does for one app in cluster mode."""

    def __init__(self, script: Path, env: dict[str, str], args: tuple[str, ...] = (), cwd: Path | None = None) -> None:
        self.script = script
        self.env = env
        self.args = args
        self.cwd = cwd
        self.sockets = nodeipc.SharedSockets()
        self.instances: list[Instance] = []
        self.next_id = 0

    def spawn(self, *, node_args: tuple[str, ...] = ()) -> Instance:
        parent, fd = nodeipc.channel_pair()
        worker_id = self.next_id
        self.next_id += 1
        env = {**os.environ, **self.env, **nodeipc.child_env(fd, worker_id=worker_id)}
        env["NODE_APP_INSTANCE"] = str(worker_id)
        proc = subprocess.Popen(
            [str(NODE), *node_args, str(self.script), *self.args],
            env=env,
            cwd=self.cwd,
            pass_fds=[fd],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        os.close(fd)
        holder: list[Instance] = []
        channel = nodeipc.NodeChannel(
            parent,
            self.sockets,
            on_event=lambda e: holder[0].events.append(e),
            on_closed=lambda _r: holder[0].closed.set(),
        )
        inst = Instance(proc, channel)
        holder.append(inst)
        self.instances.append(inst)
        return inst

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"not met within {timeout}s: {predicate}")
            await asyncio.sleep(0.02)

    async def stop(self, inst: Instance, timeout: float = 5.0) -> int:
        inst.channel.send_shutdown()
        rc = await asyncio.to_thread(inst.proc.wait, timeout)
        await asyncio.wait_for(inst.closed.wait(), timeout)
        return rc

    def close(self) -> None:
        for inst in self.instances:
            if inst.proc.poll() is None:
                inst.proc.kill()
                inst.proc.wait()
            if inst.proc.stderr:
                inst.proc.stderr.close()
            inst.channel.close()
        self.sockets.close()


def get_json(port: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert resp.status == 200
        return json.loads(resp.read())  # type: ignore[no-any-return]
    finally:
        conn.close()


# ---------------------------------------------------------------- pure decisions


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"cmd": "NODE_CLUSTER", "act": "online", "seq": 0}, nodeipc.Online()),
        ("ready", nodeipc.Ready()),
        ({"type": "ready"}, nodeipc.Ready()),
        ({"cmd": "NODE_CLUSTER", "act": "listening", "port": 3000, "seq": 2}, nodeipc.Listening(3000)),
        ({"cmd": "NODE_HANDLE_ACK"}, nodeipc.HandleAck(True)),
        ({"cmd": "NODE_HANDLE_NACK"}, nodeipc.HandleAck(False)),
        ({"hello": 1}, nodeipc.UserMessage({"hello": 1})),
        ({"cmd": "NODE_CLUSTER", "act": "queryServer"}, nodeipc.Ignore("queryServer without seq or port")),
        ({"cmd": "NODE_CLUSTER", "act": "close", "key": "k", "seq": 3}, nodeipc.Ignore("cluster act 'close'")),
        ({"cmd": "NODE_REPL"}, nodeipc.Ignore("internal message NODE_REPL")),
    ],
)
def test_decide(message: Any, expected: nodeipc.Event) -> None:
    assert nodeipc.decide(message) == expected


def test_decide_query_server() -> None:
    msg = {"cmd": "NODE_CLUSTER", "act": "queryServer", "seq": 1, "index": 0, "data": None,
           "address": "127.0.0.1", "port": 3000, "addressType": 4, "fd": None, "flags": 0, "backlog": 511}
    event = nodeipc.decide(msg)
    assert event == nodeipc.Query(1, nodeipc.ServerQuery("127.0.0.1", 3000, 4, None, 0, 511))
    assert isinstance(event, nodeipc.Query)
    assert event.query.key == "127.0.0.1:3000:4:"


def test_decide_query_for_an_inherited_fd() -> None:
    # server.listen({ fd: 3 }) in a worker: no port, the fd it got from LISTEN_FDS
    msg = {"cmd": "NODE_CLUSTER", "act": "queryServer", "seq": 1, "address": None, "port": None,
           "addressType": None, "fd": 3, "flags": None, "backlog": None}
    assert nodeipc.decide(msg) == nodeipc.Query(1, nodeipc.ServerQuery(None, -1, 4, 3, 0, None))


def test_line_decoder_splits_and_bounds() -> None:
    d = nodeipc.LineDecoder()
    assert d.feed(b'{"a":1}\n"rea') == [{"a": 1}]
    assert d.feed(b'dy"\n\n') == ["ready"]
    with pytest.raises(nodeipc.ChannelError):
        d.feed(b"not json\n")
    with pytest.raises(nodeipc.ChannelError):
        nodeipc.LineDecoder().feed(b"x" * (nodeipc.MAX_MESSAGE_BYTES + 1))


def test_ready_lines() -> None:
    r = readypipe.ReadyLines()
    assert r.feed(b"STATUS=warming\nREA") == [{"STATUS": "warming"}]
    got = r.feed(b"DY=1\n")
    assert got == [{"READY": "1"}] and readypipe.is_ready(got)
    assert r.feed(b"x" * (readypipe.MAX_LINE + 10)) == [] and not r.buffer


# ---------------------------------------------------------------- real node


def test_two_unchanged_instances_share_one_port() -> None:
    port = free_port()

    async def main() -> None:
        primary = Primary(SERVER_JS, {"PORT": str(port)})
        try:
            insts = [primary.spawn(node_args=("--max-old-space-size=256",)) for _ in range(2)]
            await primary.wait_for(lambda: all(i.saw(nodeipc.Ready) for i in insts))
            assert all(i.saw(nodeipc.Online) and i.saw(nodeipc.Query) for i in insts)
            assert len(primary.sockets.sockets) == 1  # bound once, shared
            answered: set[int] = set()

            def poll() -> bool:
                answered.add(get_json(port)["pid"])
                return len(answered) == 2

            await primary.wait_for(lambda: poll(), timeout=10)
            assert answered == {i.proc.pid for i in insts}
            for inst in insts:
                assert await primary.stop(inst) == 0  # 'shutdown' message: graceful exit
        finally:
            primary.close()

    asyncio.run(main())


def shared_fd_flags(pid: int, sock: socket.socket) -> int:
    """The file status flags with which process `pid` holds `sock` (from /proc/<pid>/fdinfo)."""
    target = f"socket:[{os.fstat(sock.fileno()).st_ino}]"
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines():
                    if line.startswith("flags:"):
                        return int(line.split()[1], 8)
    raise AssertionError(f"process {pid} does not hold {target}")


def test_workers_share_a_non_blocking_socket_and_stay_responsive() -> None:
    """The shared socket is non-blocking, as one Node's own primary creates: otherwise a
    worker woken for a connection another worker accepted sits in accept() until the next
    one arrives, deaf to its IPC channel (a graceful stop is never heard)."""
    port = free_port()

    async def main() -> None:
        primary = Primary(SERVER_JS, {"PORT": str(port)})
        try:
            insts = [primary.spawn() for _ in range(2)]
            await primary.wait_for(lambda: all(i.saw(nodeipc.Ready) for i in insts))
            [sock] = primary.sockets.sockets.values()
            for inst in insts:
                assert shared_fd_flags(inst.proc.pid, sock) & os.O_NONBLOCK, "workers accept on a blocking socket"
            for _ in range(30):  # connections that wake both workers, one of them for nothing
                get_json(port)
            for inst in insts:  # each still hears its channel at once
                assert await primary.stop(inst) == 0
        finally:
            primary.close()

    asyncio.run(main())


def test_bind_error_reaches_the_app_as_eaddrinuse() -> None:
    port = free_port()
    taken = socket.socket()
    taken.bind(("0.0.0.0", port))
    taken.listen()

    async def main() -> None:
        primary = Primary(SERVER_JS, {"PORT": str(port)})
        try:
            inst = primary.spawn()
            rc = await asyncio.to_thread(inst.proc.wait, 10)
            assert rc != 0
            assert inst.proc.stderr is not None
            assert b"EADDRINUSE" in inst.proc.stderr.read()
        finally:
            primary.close()

    try:
        asyncio.run(main())
    finally:
        taken.close()


def test_rolling_replace_under_load_fails_no_request() -> None:
    port = free_port()
    failures: list[str] = []
    ok = [0]
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                get_json(port)
                ok[0] += 1
            except Exception as e:  # noqa: BLE001 - every failure is counted
                failures.append(repr(e))

    async def main() -> None:
        primary = Primary(SERVER_JS, {"PORT": str(port)})
        try:
            live = [primary.spawn() for _ in range(2)]
            await primary.wait_for(lambda: all(i.saw(nodeipc.Ready) for i in live))
            loader = threading.Thread(target=load)
            loader.start()
            try:
                await primary.wait_for(lambda: ok[0] > 20)
                for _round in range(2):
                    for index, old in enumerate(list(live)):
                        new = primary.spawn()
                        await primary.wait_for(lambda new=new: new.saw(nodeipc.Ready))
                        live[index] = new
                        assert await primary.stop(old) == 0
                seen = ok[0]
                await primary.wait_for(lambda: ok[0] > seen + 20)
            finally:
                stop.set()
                await asyncio.to_thread(loader.join, 10)
        finally:
            primary.close()

    asyncio.run(main())
    assert failures == []
    assert ok[0] > 40


def test_ready_pipe_from_plain_node_and_shell(tmp_path: Path) -> None:
    for argv in (
        [str(NODE), "-e", "require('fs').writeSync(+process.env.CORRAL_READY_FD, 'READY=1\\n'); setTimeout(()=>{}, 100)"],
        ["/bin/bash", "-c", 'echo "STATUS=up" >&"$CORRAL_READY_FD"; echo READY=1 >&"$CORRAL_READY_FD"'],
        # dash cannot name an fd above 9 in a redirection; /dev/fd works in any shell.
        ["/bin/sh", "-c", 'echo READY=1 > /dev/fd/"$CORRAL_READY_FD"'],
    ):
        read_fd, write_fd = readypipe.ready_pipe()
        proc = subprocess.Popen(argv, env={**os.environ, **readypipe.child_env(write_fd)}, pass_fds=[write_fd])
        os.close(write_fd)
        lines = readypipe.ReadyLines()
        got: list[dict[str, str]] = []
        os.set_blocking(read_fd, True)
        with os.fdopen(read_fd, "rb", buffering=0) as f:
            while chunk := f.read(4096):
                got.extend(lines.feed(chunk))
        assert proc.wait(10) == 0
        assert readypipe.is_ready(got), (argv, got)


# ---------------------------------------------------------------- the supervisor's side


def test_nodelink_prepare_attach_and_adopted_listen_socket(tmp_path: Path) -> None:
    from corral.daemon import nodelink

    port = free_port()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(16)
    def spec(**keys: Any) -> AppSpec:
        return from_wire({"name": "web", "script": str(SERVER_JS), "cwd": "/", **keys})

    cfg = spec(interpreter=str(NODE), exec_mode="cluster")
    assert nodelink.prepare(spec(interpreter="/usr/bin/python3"), 1) is None
    fork = nodelink.prepare(spec(interpreter=str(NODE), exec_mode="fork"), 1)
    assert fork is not None and "NODE_UNIQUE_ID" not in fork.env
    fork.abandon()

    async def main() -> None:
        sockets = nodelink.AppNodeSockets(adopt=[listener])
        procs: list[subprocess.Popen[bytes]] = []
        channels: list[nodeipc.NodeChannel] = []
        ready: list[int] = []
        try:
            for instance_id in (7, 8):
                pending = nodelink.prepare(cfg, instance_id)
                assert pending is not None and pending.child_fd >= nodelink.CHANNEL_FD_MIN
                assert pending.env["NODE_UNIQUE_ID"] == str(instance_id)
                env = {**os.environ, "PORT": str(port), **pending.env}
                proc = subprocess.Popen([str(NODE), str(SERVER_JS)], env=env, pass_fds=[pending.child_fd])
                procs.append(proc)
                channels.append(pending.attach(
                    sockets,
                    on_event=lambda e, i=instance_id: ready.append(i) if isinstance(e, nodeipc.Ready) else None,
                    on_closed=lambda _r: None,
                ))
            deadline = time.monotonic() + 10
            while len(ready) < 2:
                assert time.monotonic() < deadline, "instances not ready"
                await asyncio.sleep(0.02)
            assert sockets.sockets == {}  # nothing bound: the app's own listen socket was used
            pids: set[int] = set()
            while len(pids) < 2:
                assert time.monotonic() < deadline + 10
                pids.add((await asyncio.to_thread(get_json, port))["pid"])
            for ch in channels:
                ch.send_shutdown()
            for proc in procs:
                assert await asyncio.to_thread(proc.wait, 5) == 0
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            for ch in channels:
                ch.close()
            sockets.close()

    try:
        asyncio.run(main())
    finally:
        listener.close()


def test_preload_lets_a_keep_alive_client_finish_after_close(tmp_path: Path) -> None:
    """Node's server.close() drops idle keep-alive connections at once: a client sending its
    next request on one then gets no answer. With Corral's preload (given to cluster
    workers), close() stops accepting at once and drops idle connections after a grace."""
    from corral.daemon import nodelink

    assert nodelink.node_options(None).startswith('--require "') and Path(nodelink.PRELOAD).is_file()
    assert nodelink.node_options("--max-old-space-size=64").endswith(" --max-old-space-size=64")
    script = tmp_path / "close.js"
    script.write_text(
        "const http = require('http');\n"
        "const server = http.createServer((req, res) => {\n"
        "  res.end('answered');\n"
        "  setTimeout(() => server.close(), 20);\n"
        "});\n"
        "server.listen(0, '127.0.0.1', () => console.log(server.address().port));\n"
    )
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"

    def second_answer(env: dict[str, str]) -> bytes:
        proc = subprocess.Popen([str(NODE), str(script)], env={**os.environ, **env}, stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            port = int(proc.stdout.readline())
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(request)
                assert b"answered" in conn.recv(4096)
                time.sleep(0.1)  # close() has run; the keep-alive connection is idle
                try:
                    conn.sendall(request)
                    return conn.recv(4096)
                except OSError:
                    return b""
        finally:
            proc.wait(10)

    assert second_answer({}) == b""  # Node's own close: the idle connection is gone
    assert b"answered" in second_answer({"NODE_OPTIONS": nodelink.node_options(None)})
