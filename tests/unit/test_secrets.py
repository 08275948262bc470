"""Secret-looking environment: names hidden, URL passwords masked, a clean base for other uids."""

from __future__ import annotations

import os
import pwd

import pytest

from corral.core.appkind import (
    HIDDEN,
    PASS_THROUGH,
    clean_env,
    is_secret,
    mask_env,
    mask_url_userinfo,
)


@pytest.mark.parametrize(
    "name",
    ["DB_PASS", "DB_PASSWD", "PASSWORD", "apiKey", "API_KEYS", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "SECRET_KEY_BASE",
     "SESSION_COOKIE", "JWT_SALT", "SENTRY_DSN", "AUTH_HEADER", "AUTHORIZATION", "MY_CREDS", "GCP_CREDENTIALS",
     "PRIVATE_KEY", "TLS_CERT", "DATABASE_URL", "MY_DATABASE_URL", "REDIS_URL", "db-pass", "smtp.password", "ADMIN_PWD"],
)  # fmt: skip
def test_secret_names(name: str) -> None:
    assert is_secret(name)


@pytest.mark.parametrize("name", ["PWD", "OLDPWD", "PATH", "HOME", "PORT", "NODE_ENV", "KEYBOARD", "PASSENGER_APP_ENV", "WEB_CONCURRENCY", "HOST", "LANG"])
def test_ordinary_names(name: str) -> None:
    assert not is_secret(name)


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
        ("postgres://app:s3cr%40t@db:5432/app?sslmode=require", "postgres://app:***@db:5432/app?sslmode=require"),
        ("https://ghp_TOKEN@github.com/org/repo", "https://***@github.com/org/repo"),
        ("amqp://u:p@a,amqp://v:q@b", "amqp://u:***@a,amqp://v:***@b"),
        ("http://host/path@not-userinfo", "http://host/path@not-userinfo"),
        ("user@example.com", "user@example.com"),
        ("plain", "plain"),
    ],
)
def test_url_userinfo_masked(value: str, masked: str) -> None:
    assert mask_url_userinfo(value) == masked


def test_mask_env() -> None:
    env = {"DB_PASS": "x", "CACHE": "redis://:pw@cache:6379", "PORT": "8000"}
    assert mask_env(env) == {"DB_PASS": HIDDEN, "CACHE": "redis://:***@cache:6379", "PORT": "8000"}


def test_clean_env_keeps_only_documented_keys_and_the_users_identity() -> None:
    inherited = {
        "PATH": "/opt/bin:/usr/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC", "TERM": "xterm",
        "AWS_SECRET_ACCESS_KEY": "root's", "SSH_AUTH_SOCK": "/tmp/ssh", "SUDO_USER": "admin", "HOME": "/root",
        "USER": "root", "PYTHONPATH": "/root/lib", "CORRAL_HOME": "/root/.corral",
    }  # fmt: skip
    nobody = pwd.getpwuid(65534)
    env = clean_env(inherited, 65534)
    assert env == {
        "PATH": "/opt/bin:/usr/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC", "TERM": "xterm",
        "HOME": nobody.pw_dir, "USER": nobody.pw_name, "LOGNAME": nobody.pw_name, "SHELL": nobody.pw_shell,
    }  # fmt: skip
    assert clean_env({}, nobody.pw_name)["PATH"] and clean_env({}, "65534")["USER"] == nobody.pw_name
    assert set(clean_env(dict(os.environ), 65534)) <= set(PASS_THROUGH) | {"HOME", "USER", "LOGNAME", "SHELL"} | {k for k in os.environ if k.startswith("LC_")}
