"""describe masks URL passwords; an app under another uid gets a clean environment (real daemon)."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import Corral, ecosystem, proc_environ, write


def test_describe_masks_secret_names_and_url_passwords(corral: Corral) -> None:
    app = {"name": "w", "script": "/bin/sh", "args": ["-c", "sleep 600"], "interpreter": "none",
           "env": {"DB_PASS": "hunter2", "CACHE": "redis://:pw@cache:6379/0", "PORT": "8000"}}  # fmt: skip
    write(corral.cwd / "ecosystem.toml", ecosystem(app))
    corral.run("start", "ecosystem.toml")
    env = json.loads(corral.run("describe", "w", "--json").stdout)[0]["env"]
    assert env == {"CACHE": "redis://:***@cache:6379/0", "DB_PASS": "<hidden>", "PORT": "8000"}
    assert "hunter2" not in corral.run("describe", "w").stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run an app as another uid")
def test_app_under_another_uid_does_not_inherit_the_cli_environment(corral: Corral) -> None:
    corral.env["ROOT_ONLY_TOKEN"] = "s3cret"
    corral.env["LANG"] = "C.UTF-8"
    app = {"name": "u", "script": "/bin/sh", "args": ["-c", "sleep 600"], "interpreter": "none", "uid": "nobody", "cwd": "/", "env": {"OWN": "1"}}
    write(corral.cwd / "ecosystem.toml", ecosystem(app))
    corral.run("start", "ecosystem.toml")
    env = proc_environ(corral.proc("u")["pid"])
    assert "ROOT_ONLY_TOKEN" not in env and env["OWN"] == "1" and env["LANG"] == "C.UTF-8"
    assert env["USER"] == "nobody" and env["HOME"] != os.environ.get("HOME")
    assert env["CORRAL_APP_NAME"] == "u"
