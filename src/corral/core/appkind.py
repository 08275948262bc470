"""Small facts about an app from its command line and environment, shared by the
daemon, the ecosystem tools and the exporters."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

# Environment variable names that look like they hold a secret: hidden by `describe`
# (unless --env), and exported to Kubernetes as Secret references, never inline.
# A name matches when one of its parts (split at `_`, `-`, `.` and camelCase) is, or ends
# with, one of SECRET_WORDS (DB_PASS, apiKey, GITHUB_TOKEN, SESSION_COOKIE), or starts with
# one of SECRET_PREFIXES (PASSWORD, AUTHORIZATION, CREDENTIALS).
SECRET_WORDS = ("SECRET", "PASS", "PWD", "TOKEN", "KEY", "KEYS", "AUTH", "CRED", "CREDS", "COOKIE", "SALT", "PRIVATE", "DSN", "CERT")
SECRET_PREFIXES = ("PASSW", "PASSPHRASE", "SECRET", "TOKEN", "CREDENTIAL", "PRIVATE", "COOKIE", "AUTH", "APIKEY", "SIGNATURE")
SECRET_NAMES = ("DATABASE_URL", "REDIS_URL", "AMQP_URL", "BROKER_URL", "MONGO_URL", "MONGODB_URI", "SENTRY_DSN")
NOT_SECRET = frozenset({"PWD", "OLDPWD", "KEYMAP", "XAUTHORITY_UNUSED"})  # the shell's working folder is not a password
_NAME_PARTS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s?#]*)@")
HIDDEN = "<hidden>"


def is_secret(name: str) -> bool:
    """Does an environment variable's name look like it holds a secret?"""
    upper = name.upper()
    if upper in NOT_SECRET:
        return False
    if upper in SECRET_NAMES or "DATABASE_URL" in upper or upper.endswith(("_URL", "_URI")) and upper.startswith(("DATABASE", "DB")):
        return True
    for part in _NAME_PARTS.findall(name):
        word = part.upper()
        if word.endswith(SECRET_WORDS) or word.startswith(SECRET_PREFIXES):
            return True
    return False


def mask_url_userinfo(value: str) -> str:
    """Hide the password (or token user) of every URL in a value:
    ``redis://:pw@host`` -> ``redis://:***@host``, ``postgres://u:pw@h/db`` -> ``postgres://u:***@h/db``,
    ``https://TOKEN@github.com`` -> ``https://***@github.com``."""

    def hide(m: re.Match[str]) -> str:
        user, sep, _password = m.group("userinfo").partition(":")
        return f"{m.group('scheme')}{user}:***@" if sep else f"{m.group('scheme')}***@"

    return _URL_USERINFO.sub(hide, value)


def mask_value(name: str, value: str) -> str:
    """What `describe` shows for one variable: hidden by name, else URL passwords masked."""
    if is_secret(name):
        return HIDDEN
    return mask_url_userinfo(value)


def mask_env(env: dict[str, str]) -> dict[str, str]:
    return {k: mask_value(k, v) for k, v in env.items()}


# ------------------------------------------------------------ apps under another uid

# The only variables an app switched to another uid inherits from the environment the
# daemon was started from (besides its own `env` and Corral's): locale, time zone,
# terminal, the command search path and the virtualenv Corral picked.  Everything
# else (tokens in a root shell, SSH_AUTH_SOCK, SUDO_*) stays with the operator.
PASS_THROUGH = ("PATH", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR", "VIRTUAL_ENV", "PYTHONUNBUFFERED", "PYTHONIOENCODING")
PASS_THROUGH_PREFIXES = ("LC_",)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def clean_env(inherited: Mapping[str, str], uid: int | str, gid: int | str | None = None) -> dict[str, str]:
    """The base environment of an app running as another user: the documented
    pass-through keys from ``inherited``, and HOME, USER, LOGNAME and SHELL of that
    user (from the password database).  The caller adds the app's own ``env``."""
    import pwd

    out = {k: v for k, v in inherited.items() if k in PASS_THROUGH or k.startswith(PASS_THROUGH_PREFIXES)}
    out.setdefault("PATH", DEFAULT_PATH)
    try:
        entry = pwd.getpwuid(int(uid)) if isinstance(uid, int) or str(uid).isdigit() else pwd.getpwnam(str(uid))
    except KeyError:
        entry = None
    if entry is not None:
        out["HOME"] = entry.pw_dir
        out["USER"] = out["LOGNAME"] = entry.pw_name
        out["SHELL"] = entry.pw_shell or "/bin/sh"
    return out


def looks_like_python(argv: list[str]) -> bool:
    """A Python interpreter, a ``.py`` script, or a program with a python shebang."""
    first = os.path.basename(argv[0])
    if first.startswith(("python", "pypy")) or argv[0].endswith(".py"):
        return True
    try:
        with open(argv[0], "rb") as f:
            head = f.read(128)
    except OSError:
        return False
    return head.startswith(b"#!") and b"python" in head.split(b"\n", 1)[0]
