"""check / convert / export of a file written for another machine; node announced and refusable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from corral.tools.ecosystem import SECRET_PLACEHOLDER, main
from tests.conftest import write

NODE = shutil.which("node")

SERVER_FILE = """\
module.exports = {
  apps: [{
    name: 'api',
    cwd: '/home/ubuntu/api',
    script: 'dist/main.js',
    instances: 2,
    env: { NODE_ENV: 'production' },
  }, {
    name: 'site',
    script: '/var/www/site/venv/bin/gunicorn',
    args: 'app:app',
  }],
};
"""


def test_check_warns_for_paths_of_another_machine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    eco = write(tmp_path / "ecosystem.config.js", SERVER_FILE)
    assert main(["check", str(eco)]) == 0
    out = capsys.readouterr().out
    assert "folder /home/ubuntu/api does not exist: not on this machine" in out
    assert "/var/www/site/venv/bin/gunicorn does not exist: not on this machine" in out
    assert main(["check", "--strict", str(eco)]) == 2
    assert "--strict: 2 paths are not on this machine" in capsys.readouterr().err
    assert main(["check", "--json", str(eco)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [a["name"] for a in report["apps"]] == ["api", "site"]
    assert report["apps"][0]["script"] == "/home/ubuntu/api/dist/main.js"
    assert report["apps"][0]["exec_mode"] == "cluster"  # PM2's default for a .js with instances


def test_convert_and_export_of_another_machine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    eco = write(tmp_path / "ecosystem.config.js", SERVER_FILE)
    assert main(["convert", str(eco)]) == 0
    captured = capsys.readouterr()
    assert 'cwd = "/home/ubuntu/api"' in captured.out
    assert "not on this machine" in captured.err
    assert main(["convert", "--strict", str(eco)]) == 2
    from corral.tools.export import load as export_load

    loaded = export_load(str(eco), None, None)
    assert [a.name for a in loaded.apps] == ["api", "site"]
    assert any(w.endswith("not on this machine") for w in loaded.warnings)


def test_start_still_refuses_them(tmp_path: Path) -> None:
    from corral.config.loader import NotOnThisMachine, load_ecosystem

    eco = write(tmp_path / "ecosystem.config.js", SERVER_FILE)
    with pytest.raises(NotOnThisMachine) as e:
        load_ecosystem(eco)
    assert str(e.value) == f"{eco}: app 'api': key 'cwd': folder /home/ubuntu/api does not exist"


NEEDS_NODE = """\
const secret = process.env.TEST_DB_PASSWORD || 'from-node-' + (40 + 2);
module.exports = {
  apps: [{
    name: 'web',
    script: 'app.py',
    env: { DB_PASSWORD: secret, MODE: 'm-' + (1 + 1), PLAIN_TOKEN: 'literal' },
  }],
};
"""


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_node_is_announced_and_refusable(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "app.py", "")
    eco = write(tmp_path / "ecosystem.config.js", NEEDS_NODE)
    monkeypatch.delenv("CORRAL_NO_NODE", raising=False)
    assert main(["check", str(eco)]) == 0
    err = capsys.readouterr().err
    assert f"corral: note: {eco} is evaluated with node (line 1: 'process.env" in err
    assert main(["check", "--no-node", str(eco)]) == 2
    err = capsys.readouterr().err
    assert "needs Node.js to evaluate; node is not run because of --no-node" in err
    monkeypatch.setenv("CORRAL_NO_NODE", "1")
    assert main(["check", str(eco)]) == 2
    assert "node is not run because of CORRAL_NO_NODE" in capsys.readouterr().err


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_convert_writes_placeholders_for_secrets_node_computed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "app.py", "")
    eco = write(tmp_path / "ecosystem.config.js", NEEDS_NODE)
    monkeypatch.setenv("TEST_DB_PASSWORD", "hunter2-real-secret")
    monkeypatch.delenv("CORRAL_NO_NODE", raising=False)
    out = tmp_path / "out.toml"
    assert main(["convert", str(eco), "-o", str(out)]) == 0
    text = out.read_text()
    assert "hunter2-real-secret" not in text
    assert f'DB_PASSWORD = "{SECRET_PLACEHOLDER}"' in text
    assert 'MODE = "m-2"' in text  # not secret-looking: the computed value is kept, marked
    assert 'PLAIN_TOKEN = "literal"' in text  # written literally in the file: kept
    assert main(["convert", str(eco), "--to", "json"]) == 0
    captured = capsys.readouterr()
    assert "hunter2-real-secret" not in captured.out
    assert "env.DB_PASSWORD: secret-looking value computed by Node.js" in captured.err


def test_convert_keeps_env_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "app.py", "")
    write(tmp_path / ".env", "FROM_FILE=1\n")
    eco = write(tmp_path / "ecosystem.json", '{"apps": [{"name": "a", "script": "app.py", "env_file": ".env", "env": {"X": "1"}}]}')
    assert main(["convert", str(eco)]) == 0
    assert 'env_file = ".env"' in capsys.readouterr().out
    out = tmp_path / "elsewhere" / "eco.toml"
    out.parent.mkdir()
    assert main(["convert", str(eco), "-o", str(out)]) == 0
    assert f'env_file = "{tmp_path}/.env"' in out.read_text()
