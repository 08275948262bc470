"""``corral start``'s key options, built from the KEYS table.

Each :class:`corral.config.keys.Flag` declared with a key becomes one argparse
option; what the user typed becomes a raw app table (``{key: value}``) that
the config loader parses like a file, so an error names the key and exits 2.
"""

from __future__ import annotations

import argparse
from typing import Any

from corral.config.keys import KEYS, Flag, Key
from corral.core.errors import ConfigError


def dest(key: Key, index: int) -> str:
    return f"key_{key.name}_{index}"


def flag_help(key: Key, flag: Flag) -> str:
    import json

    if flag.kind == "switch":
        text = f"sets {key.name} = {json.dumps(flag.const)}. {flag.help or key.doc}"
    else:
        text = f"{key.name}: {flag.help or key.doc}"
    return text.replace("%", "%%")


def add_key_flags(parser: argparse.ArgumentParser) -> None:
    """One option per declared flag; values stay text until the loader parses them."""
    for key in KEYS:
        for i, flag in enumerate(key.flags):
            kw: dict[str, Any] = {"dest": dest(key, i), "help": flag_help(key, flag)}
            if flag.kind == "switch":
                kw.update(action="store_const", const=flag.const)
            elif flag.kind == "append":
                kw.update(action="append", metavar=key.name.upper())
            elif flag.kind == "variadic":
                kw.update(action="extend", nargs="+", metavar=key.name.upper())
            elif flag.kind == "optional":
                kw.update(action="append", nargs="?", const=flag.const, metavar=key.name.upper())
            elif flag.kind == "value":
                kw.update(metavar=key.name.upper())
            else:  # pragma: no cover - a declaration error
                raise ValueError(f"key {key.name!r}: unknown flag kind {flag.kind!r}")
            parser.add_argument(*flag.names, **kw)


def _split(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if isinstance(v, str):
            out.extend(part for part in v.split(",") if part)
        else:
            out.append(v)
    return out


def flag_value(flag: Flag, given: Any) -> Any:
    """What one option's argparse value means for its key (the loader parses it next)."""
    if flag.kind in ("append", "variadic"):
        return _split(given)
    if flag.kind == "optional":
        paths = [v for v in given if v is not flag.const]
        if not paths:
            return flag.const
        return paths if len(paths) > 1 else paths[0]
    if flag.kind == "value" and flag.convert is not None:
        return flag.convert(given)
    return given


def raw_from_flags(ns: argparse.Namespace) -> dict[str, Any]:
    """``{key: value}`` for every key option given on the command line."""
    raw: dict[str, Any] = {}
    for key in KEYS:
        for i, flag in enumerate(key.flags):
            given = getattr(ns, dest(key, i), None)
            if given is None:
                continue
            raw[key.name] = flag_value(flag, given)
    return raw


def file_overrides(ns: argparse.Namespace) -> dict[str, Any]:
    """The options PM2 also applies to the apps of an ecosystem file, parsed."""
    out: dict[str, Any] = {}
    for key in KEYS:
        for i, flag in enumerate(key.flags):
            given = getattr(ns, dest(key, i), None)
            if flag.on_files and given is not None:
                try:
                    out[key.name] = key.parse(flag_value(flag, given))
                except ValueError as e:
                    raise ConfigError(str(e), file="command line", key=flag.names[-1])
    return out


def glue_dash_values(argv: list[str]) -> list[str]:
    """``--node-args -u`` means the value ``-u``, as in PM2 (commander takes it; argparse would not).

    An option that takes one value, followed by something starting with a dash,
    is glued to it (``--node-args=-u``, ``-k-5``) before argparse sees it.
    """
    takes_value = {n for key in KEYS for f in key.flags if f.kind == "value" for n in f.names}
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if tok in takes_value and nxt is not None and nxt.startswith("-") and nxt != "-":
            out.append(f"{tok}={nxt}" if tok.startswith("--") else tok + nxt)
            i += 2
            continue
        out.append(tok)
        i += 1
    return out
