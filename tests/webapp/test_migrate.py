"""examples/webapp/migrate.py: the one-shot schema migration, run as a real process."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy")

WEBAPP_DIR = Path(__file__).resolve().parents[2] / "examples" / "webapp"


def migrate(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "migrate.py"], cwd=WEBAPP_DIR, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


def test_creates_the_schema_and_is_idempotent(tmp_path: Path) -> None:
    db = tmp_path / "notes.db"
    url = f"sqlite:///{db}"
    for _ in range(2):
        proc = migrate({"DATABASE_URL": url})
        assert proc.returncode == 0, proc.stderr
        assert "schema ready (sqlite)" in proc.stdout
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}
    assert "notes" in tables


def test_failures_exit_non_zero_with_the_reason(tmp_path: Path) -> None:
    bad = migrate({"DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "DB_POOL_SIZE": "zero"})
    assert bad.returncode == 2 and "migrate: DB_POOL_SIZE must be an integer" in bad.stderr and "Traceback" not in bad.stderr
    blocked = tmp_path / "file"
    blocked.write_text("")
    refused = migrate({"DATABASE_URL": f"sqlite:///{blocked}/sub/notes.db"})
    assert refused.returncode == 1 and "cannot create the schema on sqlite" in refused.stderr
