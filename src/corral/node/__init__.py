"""What Corral knows about Node.js apps: which programs are Node (or Bun), and shebangs.

PM2 runs a script under ``node`` when its extension says so or when the file is not
a binary; Corral reads the ``#!`` line instead, so that ``next``, ``npm`` or
``node_modules/.bin/nuxt`` run under ``node`` with the app's ``interpreter_args``
(``node --max-old-space-size=3072 next start``), while a Python or shell script with
a shebang still runs as its shebang says.
"""

from __future__ import annotations

import os
import re
import shlex

_NODE_RE = re.compile(r"^(node|nodejs)(\d+(\.\d+)*)?$")
_BUN_RE = re.compile(r"^bun$")
_PYTHON_RE = re.compile(r"^python(\d+(\.\d+)*)?$")
_MAX_SHEBANG = 512


def program_kind(program: str | None) -> str | None:
    """``node``, ``bun``, ``python`` or None, from a program name or path."""
    if not program:
        return None
    base = os.path.basename(program)
    if _NODE_RE.match(base):
        return "node"
    if _BUN_RE.match(base):
        return "bun"
    if _PYTHON_RE.match(base):
        return "python"
    return None


def read_shebang(path: str) -> list[str] | None:
    """The words of a file's ``#!`` line (``/usr/bin/env`` and ``-S`` removed), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(_MAX_SHEBANG)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    if words and os.path.basename(words[0]) == "env":
        words = words[1:]
        while words and words[0].startswith("-"):
            flag = words.pop(0)
            if flag in ("-S", "--split-string"):
                continue
            if flag in ("-u", "--unset", "-C", "--chdir") and words:
                words.pop(0)
        while words and "=" in words[0] and not words[0].startswith("-"):
            words.pop(0)  # env NAME=value ...
    return words or None


def shebang_interpreter(path: str) -> tuple[str, list[str]] | None:
    """(program, its flags) when the shebang names node, bun or python; else None."""
    words = read_shebang(path)
    if not words or program_kind(words[0]) is None:
        return None
    return words[0], words[1:]
