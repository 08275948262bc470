"""A throwaway PostgreSQL cluster for the end-to-end tests.

The binaries are Debian's (``/usr/lib/postgresql/<version>/bin``, from the
``postgresql`` package), or ``initdb``/``pg_ctl`` on PATH. The server refuses to
run as root: as root, every PostgreSQL program runs as the ``postgres`` user
(``runuser -u postgres``) in a temporary folder owned by that user. The cluster
listens on a free loopback port only, with its unix socket in the same folder,
trust authentication, fsync off; a role and a database are made for the tests.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port

ROLE = "corral"
DATABASE = "corral_e2e"


def find_pg_bin() -> Path | None:
    """The folder of the newest PostgreSQL server binaries installed, if any."""

    def version(path: str) -> tuple[int, ...]:
        match = re.search(r"/postgresql/([\d.]+)/bin/", path)
        return tuple(int(p) for p in match.group(1).split(".")) if match else (0,)

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        bindir = Path(initdb).resolve().parent  # a symlink on PATH: the folder with the other programs
        if all((bindir / p).exists() for p in ("pg_ctl", "createuser", "createdb")):
            return bindir
    return None


class PgServer:
    """One PostgreSQL cluster in a temporary folder; stop() and start() for outage tests."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_postgres = os.getuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="corral-pg-", dir="/tmp"))  # short: unix socket paths
        self.data = self.root / "data"
        self.sockdir = self.root / "sock"
        self.logfile = self.root / "server.log"
        self.sockdir.mkdir()
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            for p in (self.root, self.sockdir):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self.port = 0
        self.url = ""

    def _run(self, program: str, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / program), *args]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}\n{self.server_log()}")
        return proc

    def server_log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.logfile), "-w", "-t", "30", "-o", options)

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "30")

    def running(self) -> bool:
        return self._run("pg_ctl", "status", "-D", str(self.data), check=False).returncode == 0

    def setup(self) -> None:
        self.init()
        for attempt in range(3):  # the free port may be taken between our probe and the server's bind
            self.port = free_port()
            try:
                self.start()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        conn = ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        self._run("createuser", *conn, ROLE)
        self._run("createdb", *conn, "-O", ROLE, DATABASE)
        self.url = f"postgresql://{ROLE}@127.0.0.1:{self.port}/{DATABASE}"

    def cleanup(self) -> None:
        try:
            if self.data.exists() and self.running():
                self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bindir = find_pg_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (looked for /usr/lib/postgresql/*/bin/initdb and initdb on PATH): install Debian's 'postgresql' package")
    if os.getuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root, and PostgreSQL refuses root: needs 'runuser' (util-linux) to run it as 'postgres'")
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and PostgreSQL refuses root: needs a 'postgres' user (Debian's 'postgresql' package makes it)")
    server = PgServer(bindir)
    try:
        server.setup()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def postgres_url(pg_server: PgServer) -> str:
    """``postgresql://USER@127.0.0.1:PORT/DB`` of the throwaway cluster."""
    return pg_server.url
