"""``env_file``: dotenv files (``KEY=value`` lines), read by the loader.

The syntax is the common subset of python-dotenv, docker compose and Node's
``--env-file``: blank lines and ``#`` comments; an optional ``export`` prefix;
values unquoted (trailing `` # comment`` removed, spaces trimmed), in single quotes
(taken as written) or in double quotes (``\\n``, ``\\t``, ``\\"``, ``\\\\`` escapes;
may span lines).  No ``${VAR}`` expansion: a value is what the file says.
"""

from __future__ import annotations

import re

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


class DotenvError(ValueError):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line


def parse_dotenv(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    lines = text.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(lines):
        number = i + 1
        raw = lines[i].lstrip("\ufeff")
        i += 1
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export ") or stripped.startswith("export\t"):
            stripped = stripped[6:].lstrip()
        name, sep, rest = stripped.partition("=")
        name = name.strip()
        if not sep:
            raise DotenvError(number, f"expected NAME=value, got {stripped[:40]!r}")
        if not _NAME.match(name):
            raise DotenvError(number, f"{name!r} is not a variable name")
        rest = rest.lstrip()
        if rest.startswith('"'):
            body = rest[1:]
            value_chars: list[str] = []
            while True:
                j = 0
                closed = False
                while j < len(body):
                    ch = body[j]
                    if ch == "\\" and j + 1 < len(body):
                        nxt = body[j + 1]
                        value_chars.append(_ESCAPES.get(nxt, "\\" + nxt))
                        j += 2
                        continue
                    if ch == '"':
                        closed = True
                        break
                    value_chars.append(ch)
                    j += 1
                if closed:
                    tail = body[j + 1 :].strip()
                    if tail and not tail.startswith("#"):
                        raise DotenvError(number, f"unexpected text after the closing quote of {name}")
                    break
                if i >= len(lines):
                    raise DotenvError(number, f"the double quote of {name} is never closed")
                value_chars.append("\n")
                body = lines[i]
                i += 1
            out[name] = "".join(value_chars)
        elif rest.startswith("'"):
            end = rest.find("'", 1)
            if end < 0:
                raise DotenvError(number, f"the single quote of {name} is never closed")
            tail = rest[end + 1 :].strip()
            if tail and not tail.startswith("#"):
                raise DotenvError(number, f"unexpected text after the closing quote of {name}")
            out[name] = rest[1:end]
        else:
            value = re.split(r"\s#", rest, maxsplit=1)[0]
            out[name] = value.strip()
    return out
