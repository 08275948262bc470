"""Small facts about an app from its command line and environment, shared by the
daemon, the ecosystem tools and the exporters."""

from __future__ import annotations

import os

# Environment variable names that look like they hold a secret: hidden by `describe`
# (unless --env), and exported to Kubernetes as Secret references, never inline.
SECRET_WORDS = ("SECRET", "PASSWORD", "PASSWD", "TOKEN", "KEY", "CREDENTIAL", "PRIVATE", "DATABASE_URL", "DSN")


def is_secret(name: str) -> bool:
    """Does an environment variable's name look like it holds a secret?"""
    upper = name.upper()
    return any(word in upper for word in SECRET_WORDS)


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
