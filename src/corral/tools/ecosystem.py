"""``corral ecosystem check | convert | init``: tooling for ecosystem files.

* ``check`` loads and validates a file without starting anything (and without
  a daemon) and prints the normalised apps, the keys that were ignored and why,
  and the warnings;
* ``convert`` writes the same apps in another format (Corral's TOML by default),
  e.g. a PM2 ``ecosystem.config.js`` to ``ecosystem.toml``;
* ``init`` writes a commented starter file, or one app per line of a Procfile.

:func:`add_parser` adds the ``ecosystem`` command to the CLI's subparsers; this
module also runs on its own: ``python -m corral.tools.ecosystem check FILE``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import sys
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.core.appkind import looks_like_python
from corral.core.appspec import AppSpec, to_wire
from corral.core.errors import ConfigError, CorralError, UsageError, report

if TYPE_CHECKING:
    from corral.config.loader import AppResult, LoadResult

# The CLI imports this module to add its parser: the config machinery (and
# anything heavier) is imported inside the functions that need it, so that
# `corral ls` does not pay for it.

FORMATS = ("toml", "yaml", "json")
_LOG_KEYS = ("out_file", "error_file", "log_file")
_PATH_KEYS = ("cwd", "out_file", "error_file", "log_file", "pid_file")
_OFF_VALUES = {"NULL", "/DEV/NULL", "NONE", ""}


# ---------------------------------------------------------------- loading


def _resolve_file(file: str | None) -> Path:
    from corral.config.loader import find_ecosystem

    if file:
        path = Path(file).expanduser()
        return path.resolve() if path.exists() else path.absolute()
    found = find_ecosystem(Path.cwd())
    if found is None:
        raise UsageError(
            "no ecosystem file here (ecosystem.toml, ecosystem.config.js, ...): name a file"
        )
    return found.resolve()


def file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix in (".js", ".cjs", ".mjs"):
        return "js"
    return suffix.lstrip(".")


class Loaded:
    """A loaded file: its path, the raw data and the load result."""

    def __init__(self, path: Path, data: Any, result: LoadResult) -> None:
        self.path = path
        self.data = data
        self.result = result


def load(
    path: Path,
    *,
    env_name: str | None = None,
    only: Iterable[str] | None = None,
    client_env: Mapping[str, str] | None = None,
    here: bool = False,
    no_node: bool = False,
) -> Loaded:
    """Load like ``corral start`` does, keeping the raw data too.

    ``here=False``: the file may be meant for another machine, so its paths that do
    not exist here are warnings ending in "not on this machine".
    """
    from corral.config.loader import load_apps, read_config_file

    data = read_config_file(path, no_node=no_node)
    result = load_apps(
        data,
        label=str(path),
        base_dir=path.parent,
        env_name=env_name,
        only=only,
        client_env=os.environ if client_env is None else client_env,
        here=here,
    )
    return Loaded(path, data, result)


# ---------------------------------------------------------------- check


def app_warnings(app: AppSpec, label: str | None) -> list[str]:
    """What `check` warns about beyond what loading already does."""
    from corral.config.loader import build_argv, where_app

    where = where_app(label, app.name)
    out: list[str] = []
    from corral.node import program_kind

    if app.exec_mode == "cluster" and not app.listen and program_kind(app.interpreter) != "node":
        out.append(
            f"{where}: exec_mode is cluster but no listen socket is set (listen or port): "
            "there is nothing to share, so the instances run as in fork mode"
        )
    argv = build_argv(app)
    if looks_like_python(argv) and "PYTHONUNBUFFERED" in app.env:
        value = app.env["PYTHONUNBUFFERED"]
        unbuffered_flag = "-u" in app.interpreter_args
        if value == "" and not unbuffered_flag:
            out.append(
                f"{where}: PYTHONUNBUFFERED is set empty, so Python buffers its output: log "
                "lines arrive late, in blocks, and the last ones are lost in a crash (remove it: "
                "Corral sets PYTHONUNBUFFERED=1 for Python apps)"
            )
        elif value.strip().lower() in {"0", "false", "no", "off"}:
            out.append(
                f"{where}: PYTHONUNBUFFERED={value!r} still means unbuffered to Python (any "
                "non-empty value does); to let Python buffer its output, set it to an empty string"
            )
    return out


def default_log_path(app: AppSpec, key: str, home_root: Path) -> str:
    name = app.name
    file = {"out_file": f"{name}-out.log", "error_file": f"{name}-error.log", "log_file": f"{name}.log"}
    return str(home_root / "logs" / file[key])


def check_app(detail: AppResult, *, cpus: int, home_root: Path) -> dict[str, Any]:
    """One app as `check` reports it (the JSON shape documented in docs/config.md)."""
    from corral.config.keys import KEYS, resolve_instances
    from corral.config.loader import build_argv

    app = detail.app
    plain = to_wire(app)  # the report is JSON
    out: dict[str, Any] = {"name": app.name}
    for key in KEYS:
        if key.name == "name":
            continue
        value = plain[key.name]
        if key.name in _LOG_KEYS and value == "default":
            value = default_log_path(app, key.name, home_root)
        out[key.name] = value
    out["instances"] = resolve_instances(app.instances, cpus)
    out["instances_config"] = app.instances
    out["command"] = build_argv(app)
    out["env_names"] = list(app.env_names)
    written = detail.canonical.written
    out["set"] = [k.name for k in KEYS if k.name in written]
    out["aliases"] = dict(detail.canonical.aliases_used)
    out["ignored"] = dict(detail.canonical.ignored_keys)
    out["unknown"] = dict(detail.canonical.unknown_keys)
    return out


def check_report(
    loaded: Loaded, *, env_name: str | None, cpus: int, home_root: Path
) -> dict[str, Any]:
    from corral.config.loader import IGNORED_TOP_LEVEL

    result = loaded.result
    warnings = list(result.warnings)
    for detail in result.details:
        warnings.extend(app_warnings(detail.app, result.file))
    top_ignored: dict[str, str] = {}
    if isinstance(loaded.data, dict):
        top_ignored = {k: why for k, why in IGNORED_TOP_LEVEL.items() if k in loaded.data}
    return {
        "file": str(loaded.path),
        "format": file_format(loaded.path),
        "env": env_name,
        "valid": True,
        "cpus": cpus,
        "apps": [check_app(d, cpus=cpus, home_root=home_root) for d in result.details],
        "ignored": top_ignored,
        "warnings": warnings,
        "notices": list(result.notices),
    }


def _fmt_value(key: str, value: Any) -> str:
    from corral.config.keys import KEY_BY_NAME

    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    k = KEY_BY_NAME.get(key)
    if k is not None and isinstance(value, int) and k.type_doc == "duration":
        return f"{value} ms"
    if k is not None and isinstance(value, int) and k.type_doc == "size":
        return f"{value} bytes"
    if isinstance(value, str):
        return value
    return json.dumps(value)


# Shown by `check` even at their default: what will run, where, how many, and where logs go.
_ALWAYS_SHOWN = ("name", "script", "interpreter", "cwd", "instances", "exec_mode", "env", "out_file", "error_file", "log_file")


def render_check(report: dict[str, Any], *, show_all: bool = False) -> str:
    from corral.config.keys import KEYS

    lines: list[str] = []
    n = len(report["apps"])
    env = f" with --env {report['env']}" if report["env"] else ""
    lines.append(f"{report['file']}: valid, {n} app{'s' if n != 1 else ''}{env}")
    width = max(len(k.name) for k in KEYS) + 2
    for app in report["apps"]:
        lines.append("")
        lines.append(f"[{app['name']}]")
        set_keys = set(app["set"])

        def row(label: str, text: str, default: bool = False) -> None:
            suffix = "   (default)" if default else ""
            lines.append(f"  {label.ljust(width)}{text}{suffix}")

        hidden = 0
        for key in KEYS:
            value = app[key.name]
            at_default = key.name not in set_keys and (value == key.default or value in ([], {}, None))
            if at_default and not show_all and key.name not in _ALWAYS_SHOWN:
                hidden += 1
                continue
            if key.name == "instances":
                config = app["instances_config"]
                if config == "max":
                    how = f"max: one per CPU, {report['cpus']} CPUs"
                elif isinstance(config, int) and config < 0:
                    how = f"{config}: CPUs minus {-config}, {report['cpus']} CPUs"
                else:
                    how = ""
                row("instances", f"{value}" + (f" ({how})" if how else ""), "instances" not in set_keys)
                continue
            if key.name == "env":
                items = sorted(value.items())
                if not items:
                    row("env", "-", "env" not in set_keys)
                for i, (var, val) in enumerate(items):
                    row("env" if i == 0 else "", f"{var}={val}")
                continue
            row(key.name, _fmt_value(key.name, value), at_default and key.name != "name")
        row("command", " ".join(shlex.quote(a) for a in app["command"]))
        if hidden:
            row("", f"({hidden} other keys at their defaults: --all shows them)")
        if app["env_names"]:
            row("env tables", ", ".join(f"env_{e}" for e in app["env_names"]))
        for alias, canon in app["aliases"].items():
            row("alias", f"{alias} -> {canon}")
        for key, why in app["ignored"].items():
            row("ignored", f"{key}: {why}")
        for key, hint in app["unknown"].items():
            row("unknown", key + (f" (did you mean {hint}?)" if hint else ""))
    for key, why in report["ignored"].items():
        lines.append("")
        lines.append(f"ignored: the top-level '{key}' block ({why})")
    if report["warnings"]:
        lines.append("")
        lines.append("warnings:")
        lines.extend(f"  - {w}" for w in report["warnings"])
    if report["notices"]:
        lines.append("")
        lines.append("notices:")
        lines.extend(f"  - {n}" for n in report["notices"])
    return "\n".join(lines) + "\n"


def _error_doc(path: Path, e: ConfigError) -> dict[str, Any]:
    return {
        "file": str(path),
        "valid": False,
        "error": {
            "file": e.file,
            "app": e.app,
            "key": e.key,
            "message": e.message,
            "text": e.render(),
        },
    }


def cmd_check(ns: argparse.Namespace) -> int:
    path = _resolve_file(ns.file)
    only = [n for n in ns.only.split(",")] if ns.only else None
    env = dict(os.environ)
    try:
        loaded = load(path, env_name=ns.env, only=only, client_env=env, no_node=ns.no_node)
    except ConfigError as e:
        if ns.json:
            sys.stdout.write(json.dumps(_error_doc(path, e), indent=2) + "\n")
            sys.stderr.write(f"corral: error: {e.render()}\n")
            return e.exit_code
        raise
    from corral.system.paths import Home

    report = check_report(
        loaded, env_name=ns.env, cpus=os.cpu_count() or 1, home_root=Home.from_env(env).root
    )
    if ns.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        sys.stdout.write(render_check(report, show_all=ns.all))
    return strict_exit(loaded, ns.strict)


NOT_HERE = "not on this machine"


def strict_exit(loaded: Loaded, strict: bool) -> int:
    """0; with --strict, 2 when a path of the file does not exist on this machine."""
    missing = [w for w in loaded.result.warnings if w.endswith(NOT_HERE)]
    if strict and missing:
        sys.stderr.write(
            f"corral: error: --strict: {len(missing)} path{'s' if len(missing) != 1 else ''} "
            f"{'are' if len(missing) != 1 else 'is'} {NOT_HERE}\n"
        )
        return 2
    return 0


# ---------------------------------------------------------------- writing TOML and YAML

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else toml_string(key)


def toml_string(s: str) -> str:
    out = json.dumps(s, ensure_ascii=False)
    return out.replace("\x7f", "\\u007f")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"cannot write {value!r} in TOML")


def _comment_lines(lines: Iterable[str], indent: str = "") -> list[str]:
    out: list[str] = []
    for line in lines:
        for part in line.split("\n"):
            wrapped = textwrap.wrap(part, width=96 - len(indent), break_on_hyphens=False) or [""]
            out.extend(f"{indent}# {w}".rstrip() for w in wrapped)
    return out


class OutApp:
    """One app to write: canonical keys in order, and comments by key path."""

    def __init__(
        self,
        values: dict[str, Any],
        comments: dict[tuple[str, ...], list[str]] | None = None,
        header: list[str] | None = None,
    ) -> None:
        self.values = values
        self.comments: dict[tuple[str, ...], list[str]] = comments or {}
        self.header: list[str] = header or []


def write_toml(header: list[str], apps: list[OutApp]) -> str:
    lines = _comment_lines(header)
    for app in apps:
        if lines:
            lines.append("")
        lines.extend(_comment_lines(app.header))
        lines.append("[[apps]]")
        tables = []
        for key, value in app.values.items():
            if isinstance(value, dict):
                tables.append((key, value))
                continue
            lines.extend(_comment_lines(app.comments.get((key,), [])))
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
        for key, table in tables:
            lines.append("")
            lines.extend(_comment_lines(app.comments.get((key,), [])))
            lines.append(f"[apps.{toml_key(key)}]")
            for var, value in table.items():
                lines.extend(_comment_lines(app.comments.get((key, var), [])))
                lines.append(f"{toml_key(var)} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def yaml_value(value: Any) -> str:
    import yaml

    text: str = yaml.safe_dump(value, default_flow_style=True, width=2**30, allow_unicode=True, sort_keys=False)
    text = text.strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")].strip()
    elif text == "...":
        text = ""
    return text


def write_yaml(header: list[str], apps: list[OutApp]) -> str:
    lines = _comment_lines(header)
    lines.append("apps:")
    for i, app in enumerate(apps):
        if i:
            lines.append("")
        lines.extend(_comment_lines(app.header, "  "))
        first = True
        for key, value in app.values.items():
            lines.extend(_comment_lines(app.comments.get((key,), []), "    "))
            lead = "  - " if first else "    "
            first = False
            if isinstance(value, dict) and value:
                lines.append(f"{lead}{yaml_value(key)}:")
                for var, v in value.items():
                    lines.extend(_comment_lines(app.comments.get((key, var), []), "      "))
                    lines.append(f"      {yaml_value(var)}: {yaml_value(v)}")
            else:
                lines.append(f"{lead}{yaml_value(key)}: {yaml_value(value)}")
    return "\n".join(lines) + "\n"


def write_json(apps: list[OutApp]) -> str:
    return json.dumps({"apps": [a.values for a in apps]}, indent=2, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------- convert


def _clean(value: Any) -> Any:
    """Drop nulls inside tables and lists (TOML has none)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value if v is not None]
    return value


def _env_table(table: Any) -> dict[str, Any]:
    if not table:
        return {}
    out: dict[str, Any] = {}
    for var, value in table.items():
        out[str(var)] = "" if value is None else value
    return out


def _absolutize(value: Any, src_dir: Path) -> Any:
    if not isinstance(value, str) or value.strip().upper() in _OFF_VALUES:
        return value
    expanded = os.path.expanduser(value)
    if os.path.isabs(expanded) or value.startswith("~"):
        return value
    return os.path.normpath(src_dir / value)


def js_node_values(path: Path) -> tuple[list[tuple[int, str]], Any | None] | None:
    """For a JS file that needed Node: the constructs Node evaluated, and the data without them.

    The literal parser is run again with each construct Node had to evaluate
    replaced by ``null``; comparing that with Node's result tells which values
    Node computed.  Returns None when the file did not need Node, and
    ``(constructs, None)`` when the values cannot be told apart.
    """
    try:
        from corral.config.jsobject import NeedsNode, parse_js_literal
    except ImportError:
        return None
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError:
        return None
    constructs: list[tuple[int, str]] = []
    source = text
    for _ in range(200):
        try:
            literal = parse_js_literal(source, filename=str(path), dirname=str(path.parent))
        except NeedsNode as e:
            constructs.append((e.line, e.construct))
            lines = source.split("\n")
            line = lines[e.line - 1] if 0 < e.line <= len(lines) else ""
            if e.construct.endswith("...") or e.construct not in line:
                return constructs, None
            lines[e.line - 1] = line.replace(e.construct, "null", 1)
            source = "\n".join(lines)
            continue
        except Exception:
            # Not readable without Node at all (or not after the substitutions).
            return constructs, None
        if not constructs:
            return None
        return constructs, literal
    return constructs, None


def _node_paths(
    literal_data: Any, node_data: Any, label: str
) -> list[set[tuple[str, ...]]] | None:
    """Per app, the raw keys (and env variables) whose value Node computed."""
    from corral.config.loader import extract_apps

    try:
        lit_apps, _, _ = extract_apps(literal_data, label)
        node_apps, _, _ = extract_apps(node_data, label)
    except ConfigError:
        return None
    if len(lit_apps) != len(node_apps):
        return None
    out: list[set[tuple[str, ...]]] = []
    for lit, ev in zip(lit_apps, node_apps, strict=True):
        if not isinstance(lit, dict) or not isinstance(ev, dict):
            return None
        paths: set[tuple[str, ...]] = set()
        for key, value in ev.items():
            other = lit.get(key)
            if other == value:
                continue
            if isinstance(value, dict) and isinstance(other, dict):
                for var, v in value.items():
                    if other.get(var) != v:
                        paths.add((key, var))
            else:
                paths.add((key,))
        out.append(paths)
    return out


def _find_construct(constructs: list[tuple[int, str]], lines: list[str], name: str) -> str | None:
    """The construct written as the value of `name` (``name: <construct>``), if one is."""
    key = re.compile(r"""(^|[\s{,'"])""" + re.escape(name) + r"""['"]?\s*:\s*""")
    for line_no, construct in constructs:
        if not 0 < line_no <= len(lines):
            continue
        line = " ".join(lines[line_no - 1].split())
        for m in key.finditer(line):
            value = _NEXT_PROPERTY.split(line[m.end() :], maxsplit=1)[0]
            if construct in value:
                return f"`{construct}` (line {line_no})"
    return None


_NEXT_PROPERTY = re.compile(r"""[,{]\s*['"]?[A-Za-z_$][\w$]*['"]?\s*:(?!:)""")


class Conversion:
    """Converted text; `notes` says what its comments say (JSON has none)."""

    def __init__(self, text: str, notes: list[str], apps: list[OutApp]) -> None:
        self.text = text
        self.notes = notes
        self.apps = apps
        # (app, variable) whose secret-looking value Node computed: a placeholder was written.
        self.placeholders: set[tuple[str, str]] = set()


SECRET_PLACEHOLDER = "<secret computed by node when converted: set it here>"


def convert(loaded: Loaded, *, to: str, env_name: str | None, out_dir: Path) -> Conversion:
    """The apps of `loaded` written in format `to`, to live in `out_dir`."""
    from corral.config.keys import KEYS
    from corral.config.loader import IGNORED_TOP_LEVEL

    path = loaded.path
    src_dir = path.parent
    result = loaded.result
    label = str(path)
    move = out_dir.resolve() != src_dir.resolve()

    header = [f"Converted by `corral ecosystem convert` from {path.name}."]
    if env_name:
        header.append(
            f"The environment is the one of `--env {env_name}`: env_{env_name} is merged into"
            " env and the other env_* tables are left out."
        )
    if move:
        header.append(f"Relative paths are made absolute (they were relative to {src_dir}).")
    node_paths: list[set[tuple[str, ...]]] | None = None
    constructs: list[tuple[int, str]] = []
    source_lines: list[str] = []
    if file_format(path) == "js":
        found = js_node_values(path)
        if found is not None:
            constructs, literal = found
            source_lines = path.read_text(encoding="utf-8-sig").split("\n")
            if literal is not None:
                node_paths = _node_paths(literal, loaded.data, label)
            what = ", ".join(f"`{c}` (line {n})" for n, c in constructs[:6])
            more = f" and {len(constructs) - 6} more" if len(constructs) > 6 else ""
            marked = " (each one is marked)" if node_paths is not None else ""
            needed = f"needed Node.js to evaluate {what}{more}" if what else "was evaluated by Node.js"
            header.append(
                f"{path.name} {needed}: the values below are what Node.js computed when the file"
                f" was converted{marked}."
            )
    for key, why in IGNORED_TOP_LEVEL.items():
        if isinstance(loaded.data, dict) and key in loaded.data:
            header.append(f"Dropped: the top-level '{key}' block ({why}).")
    if isinstance(loaded.data, dict) and "apps" in loaded.data:
        extra = [k for k in loaded.data if k != "apps" and k not in IGNORED_TOP_LEVEL]
        if extra:
            header.append(f"Dropped: the top-level keys {', '.join(repr(k) for k in extra)}.")

    notes = list(header)
    out_apps: list[OutApp] = []
    placeholders: set[tuple[str, str]] = set()
    for index, detail in enumerate(result.details):
        app = detail.app
        # convert writes the user's own keys and values back (canon.values: the file as
        # written, aliases resolved), not the loaded spec: a dict here is the point.
        canon = detail.canonical
        evaluated = node_paths[index] if node_paths is not None else set()
        out = OutApp(values={})
        drops = [f"'{key}' ({why})" for key, why in canon.ignored_keys.items()]
        for key, hint in canon.unknown_keys.items():
            drops.append(f"'{key}' (unknown" + (f"; did you mean '{hint}'?)" if hint else ")"))
        if env_name:
            drops.extend(
                f"'env_{e}' (not --env {env_name})" for e in app.env_names if e != env_name
            )
        if drops:
            out.header.append(f"Dropped from '{app.name}': {', '.join(drops)}.")
            notes.append(f"app '{app.name}': dropped {', '.join(drops)}")

        def mark(
            at: tuple[str, ...],
            raw_path: tuple[str, ...],
            out: OutApp = out,
            evaluated: set[tuple[str, ...]] = evaluated,
            name: str = app.name,
        ) -> None:
            if raw_path not in evaluated and raw_path[:1] not in evaluated:
                return
            where = _find_construct(constructs, source_lines, raw_path[-1])
            text = "evaluated by Node.js" + (f" from {where}" if where else "") + " when converted"
            out.comments.setdefault(at, []).append(text)
            notes.append(f"app '{name}': {'.'.join(at)} was {text}")

        out.values["name"] = app.name
        if "name" in canon.written:
            mark(("name",), (canon.written["name"],))
        for spec in KEYS:
            k = spec.name
            if k == "cwd" and move and k not in canon.values:
                out.values["cwd"] = str(src_dir)
                continue
            if k in ("name", "env") or k not in canon.values:
                continue
            value = canon.values[k]
            if value is None:
                if k not in _LOG_KEYS or spec.parse(None) == spec.default:
                    continue
                value = "/dev/null"
            value = _clean(value)
            if move and k in _PATH_KEYS:
                value = _absolutize(value, src_dir)
            elif move and k == "env_file":
                value = [_absolutize(f, src_dir) for f in value] if isinstance(value, list) else _absolutize(value, src_dir)
            out.values[k] = value
            mark((k,), (canon.written[k],))
        if canon.env_file is not None and "env_file" not in out.values:
            files = _clean(canon.env_file)
            if move:
                files = [_absolutize(f, src_dir) for f in files] if isinstance(files, list) else _absolutize(files, src_dir)
            out.values["env_file"] = files
        env_written = canon.written.get("env", "env")
        env = _env_table(canon.values.get("env"))
        if env_name:
            chosen = _env_table(canon.envs.get(env_name))
            merged = {**env, **chosen}
            if merged:
                out.values["env"] = merged
            for var in merged:
                src = f"env_{env_name}" if var in chosen else env_written
                mark(("env", var), (src, var))
        else:
            if env:
                out.values["env"] = env
            for var in env:
                mark(("env", var), (env_written, var))
            for e, table in canon.envs.items():
                t = _env_table(table)
                out.values[f"env_{e}"] = t
                for var in t:
                    mark((f"env_{e}", var), (f"env_{e}", var))
        placeholders |= _redact_node_secrets(out, evaluated, canon, env_name, app.name, notes)
        out_apps.append(out)

    if to == "toml":
        text = write_toml(header, out_apps)
    elif to == "yaml":
        text = write_yaml(header, out_apps)
    elif to == "json":
        text = write_json(out_apps)
    else:
        raise UsageError(f"unknown format {to!r}: expected toml, yaml or json")
    conv = Conversion(text, notes, out_apps)
    conv.placeholders = placeholders
    return conv


def _redact_node_secrets(
    out: OutApp,
    evaluated: set[tuple[str, ...]],
    canon: Any,
    env_name: str | None,
    name: str,
    notes: list[str],
) -> set[tuple[str, str]]:
    """Replace env values with secret-looking names that Node computed by a placeholder.

    A value computed when converting (``process.env.DB_PASSWORD``, a file read...) is
    the converting machine's secret: it must not land in a plain file.
    """
    from corral.core.appkind import is_secret

    if not evaluated:
        return set()
    done: set[tuple[str, str]] = set()
    env_written = canon.written.get("env", "env")
    for table_key, table in list(out.values.items()):
        if not (table_key == "env" or table_key.startswith("env_")) or not isinstance(table, dict):
            continue
        for var, value in list(table.items()):
            if not is_secret(var) or value in ("", None):
                continue
            if table_key == "env":
                sources = [(env_written, var)]
                if env_name:
                    sources.append((f"env_{env_name}", var))
            else:
                sources = [(table_key, var)]
            if not any(src in evaluated or src[:1] in evaluated for src in sources):
                continue
            table[var] = SECRET_PLACEHOLDER
            text = "secret-looking value computed by Node.js: not written, set it here"
            out.comments.setdefault((table_key, var), []).append(text)
            notes.append(f"app '{name}': {table_key}.{var}: {text}")
            done.add((name, var))
    return done


def parse_text(text: str, fmt: str, label: str) -> Any:
    """Parse what convert or init wrote, as the loader would read the file."""
    try:
        if fmt == "toml":
            import tomllib

            return tomllib.loads(text)
        if fmt == "yaml":
            import yaml

            return yaml.safe_load(text)
        return json.loads(text)
    except Exception as e:  # a bug here, not the user's: say so plainly
        raise CorralError(f"internal error: the {fmt} written for {label} does not parse: {e}")


def verify_round_trip(
    conv: Conversion,
    fmt: str,
    loaded: Loaded,
    out_dir: Path,
    client_env: Mapping[str, str],
) -> None:
    """The converted text must load to the same normalised apps as the original."""
    from corral.config.loader import load_apps

    label = str(loaded.path)
    again = load_apps(
        parse_text(conv.text, fmt, label),
        label=label,
        base_dir=out_dir,
        client_env=client_env,
        here=False,
    )
    for before_spec, after_spec in zip(loaded.result.apps, again.apps, strict=False):
        before, after = to_wire(before_spec), to_wire(after_spec)
        for key in before:
            b, a = before[key], after.get(key)
            if key == "env" and isinstance(a, dict):
                hidden = {v for n, v in conv.placeholders if n == before["name"]}
                b = {k: v for k, v in b.items() if k not in hidden}
                a = {k: v for k, v in a.items() if k not in hidden}
            if key != "env_names" and b != a:
                raise CorralError(
                    f"internal error: converted, app '{before['name']}' key '{key}' would change"
                    f" from {before[key]!r} to {after.get(key)!r}; nothing was written"
                )
    if len(again.apps) != len(loaded.result.apps):
        raise CorralError("internal error: the converted file has a different number of apps")


def _format_for(path: Path) -> str | None:
    fmt = file_format(path)
    return fmt if fmt in FORMATS else None


def cmd_convert(ns: argparse.Namespace) -> int:
    path = _resolve_file(ns.file)
    out_path = None if ns.output in (None, "-") else Path(ns.output).expanduser().absolute()
    to = ns.to or (out_path and _format_for(out_path)) or "toml"
    if out_path is not None:
        suffix_format = _format_for(out_path)
        if suffix_format != to:
            raise UsageError(
                f"-o {ns.output}: a {to.upper()} file should end in .{'yaml' if to == 'yaml' else to}"
            )
        if out_path.exists() and out_path.resolve() == path.resolve():
            raise UsageError(f"-o {ns.output} is the file being converted: choose another name")
        if out_path.exists() and not ns.force:
            raise UsageError(f"{out_path} exists: use --force to replace it")
    env = dict(os.environ)
    loaded = load(path, env_name=ns.env, client_env=env, no_node=ns.no_node)
    out_dir = out_path.parent if out_path is not None else path.parent
    conv = convert(loaded, to=to, env_name=ns.env, out_dir=out_dir)
    verify_round_trip(conv, to, loaded, out_dir, env)
    if out_path is None:
        sys.stdout.write(conv.text)
    else:
        try:
            out_path.write_text(conv.text, encoding="utf-8")
        except OSError as e:
            raise CorralError(f"cannot write {out_path}: {e.strerror}")
    for w in loaded.result.warnings:
        sys.stderr.write(f"corral: warning: {w}\n")
    if to == "json":
        for note in conv.notes:
            sys.stderr.write(f"corral: note: {note}\n")
    if out_path is not None:
        n = len(conv.apps)
        sys.stderr.write(f"[corral] wrote {out_path} ({n} app{'s' if n != 1 else ''}, {to})\n")
    return strict_exit(loaded, ns.strict)


# ---------------------------------------------------------------- init

_INIT_HEADER = """\
# ecosystem.toml: the apps Corral runs for this project (like PM2's ecosystem.config.js).
#
#   corral start                       start every app below
#   corral start --env production      ... with each app's env_production merged over env
#   corral start --only worker         just one of them
#   corral ecosystem check             validate this file without starting anything
#
# Every key, with PM2's names for it, is described in Corral's docs/config.md.
"""

PYTHON_TEMPLATE = _INIT_HEADER + """\

[[apps]]
name = "web"
# `python -m uvicorn app:app`: when interpreter_args ends in -m, script is a module.
# The python is the active virtualenv's ($VIRTUAL_ENV) when there is one, else python3.
script = "uvicorn"
interpreter_args = ["-m"]
# {fd} is the listening socket the daemon binds once and shares with every instance.
args = ["app:app", "--fd", "{fd}"]
# Cluster mode: one instance per CPU ("max"; or a number, or -1 for all CPUs but one),
# all serving the same socket, restarted one at a time by `corral reload web`.
exec_mode = "cluster"
instances = "max"
listen = "127.0.0.1:8000"
# Restart an instance whose memory passes 512 MB; on stop, give requests 10 s to finish.
max_memory_restart = "512M"
kill_timeout = "10s"

[apps.env]
APP_ENV = "development"

[apps.env_development]
LOG_LEVEL = "debug"

[apps.env_production]
APP_ENV = "production"
LOG_LEVEL = "info"

[[apps]]
name = "worker"
# A .py file runs with the virtualenv's python too; its output is unbuffered.
script = "worker.py"
# When it keeps crashing, wait 100 ms before the first restart, then 1.5 times longer each time.
exp_backoff_restart_delay = 100
# Logs go to ~/.corral/logs/worker-out.log and worker-error.log unless set here:
# out_file = "logs/worker.out.log"

[apps.env]
APP_ENV = "development"

[apps.env_development]
LOG_LEVEL = "debug"

[apps.env_production]
APP_ENV = "production"
LOG_LEVEL = "info"
"""

NODE_TEMPLATE = _INIT_HEADER + """\

[[apps]]
name = "web"
script = "server.js"
# Cluster mode: one instance per CPU, all serving the socket the daemon binds once.
# In server.js, serve it with server.listen({ fd: Number(process.env.CORRAL_FD_HTTP) }).
exec_mode = "cluster"
instances = "max"
listen = "127.0.0.1:3000"
max_memory_restart = "512M"

[apps.env]
NODE_ENV = "development"

[apps.env_development]
DEBUG = "app:*"

[apps.env_production]
NODE_ENV = "production"

[[apps]]
name = "worker"
script = "worker.js"
# When it keeps crashing, wait 100 ms before the first restart, then 1.5 times longer each time.
exp_backoff_restart_delay = 100

[apps.env]
NODE_ENV = "development"

[apps.env_production]
NODE_ENV = "production"
"""

_SHELL_CONTROL = re.compile(r"&&|\|\||[|;&<>`]|\$\(")
_PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+)\s*:\s*(.*)$")


def procfile_apps(text: str, label: str) -> list[OutApp]:
    """One app per `name: command` line of a Procfile (Heroku's, foreman's, honcho's)."""
    from corral.config.keys import KEY_BY_NAME

    apps: list[OutApp] = []
    seen: set[str] = set()
    port = 5000
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _PROCFILE_LINE.match(stripped)
        if not m or not m.group(2).strip():
            raise ConfigError(f"line {number}: expected 'name: command', got {stripped!r}", file=label)
        name, command = m.group(1), m.group(2).strip()
        try:
            name = KEY_BY_NAME["name"].parse(name)
        except ValueError as e:
            raise ConfigError(f"line {number}: {e}", file=label, app=name, key="name")
        if name in seen:
            raise ConfigError(f"line {number}: a second process named '{name}'", file=label, app=name)
        seen.add(name)
        out = OutApp(values={"name": name})
        out.header.append(f"Procfile line {number}: {command}")
        if _SHELL_CONTROL.search(command):
            out.values["script"] = "sh"
            out.values["args"] = ["-c", command]
        elif "$" in command:
            # exec: the program replaces the shell, so stop signals reach it.
            out.values["script"] = "sh"
            out.values["args"] = ["-c", f"exec {command}"]
        else:
            try:
                words = shlex.split(command)
            except ValueError as e:
                raise ConfigError(f"line {number}: cannot split the command: {e}", file=label, app=name)
            out.values["script"] = words[0]
            if words[1:]:
                out.values["args"] = words[1:]
        if name == "release":
            out.values["autorestart"] = False
            out.comments[("autorestart",)] = ["Heroku's release phase runs once: not restarted when it exits"]
        if re.search(r"\$\{?PORT\b", command):
            out.values["env"] = {"PORT": str(port)}
            out.comments[("env", "PORT")] = ["Heroku sets PORT; foreman numbers them 5000, 5100..."]
            port += 100
        apps.append(out)
    if not apps:
        raise ConfigError("no 'name: command' lines", file=label)
    return apps


def cmd_init(ns: argparse.Namespace) -> int:
    if ns.procfile:
        proc_path = Path(ns.procfile).expanduser().absolute()
        try:
            proc_text = proc_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError("file not found", file=str(proc_path))
        except OSError as e:
            raise ConfigError(f"cannot read: {e.strerror}", file=str(proc_path))
        apps = procfile_apps(proc_text, str(proc_path))
        header = [
            line.removeprefix("# ") if line.startswith("# ") else line.lstrip("#")
            for line in _INIT_HEADER.rstrip("\n").split("\n")
        ]
        header[0] = f"ecosystem.toml: the processes of {proc_path.name}, one app per line."
        text = write_toml(header, apps)
    elif ns.node:
        text = NODE_TEMPLATE
    else:
        text = PYTHON_TEMPLATE
    if ns.output == "-":
        sys.stdout.write(text)
        return 0
    out_path = Path(ns.output).expanduser().absolute()
    if file_format(out_path) != "toml":
        raise UsageError(f"-o {ns.output}: init writes TOML; name the file *.toml")
    if out_path.exists() and not ns.force:
        raise UsageError(f"{out_path} exists: use --force to replace it")
    try:
        out_path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise CorralError(f"cannot write {out_path}: {e.strerror}")
    sys.stderr.write(f"[corral] wrote {out_path}\n")
    try:
        load(out_path)
    except ConfigError as e:
        sys.stderr.write(f"corral: note: {e.render()}\n")
        sys.stderr.write(f"corral: note: fix that, then check with: corral ecosystem check {ns.output}\n")
    return 0


# ---------------------------------------------------------------- the command line


def _machine_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 2 when a path in the file is not on this machine (otherwise a warning)",
    )
    parser.add_argument(
        "--no-node",
        action="store_true",
        help="never run node: a JS file that needs it is an error (also CORRAL_NO_NODE=1)",
    )


def add_parser(subparsers: Any) -> None:
    """Add `ecosystem check | convert | init` to an argparse subparsers object."""
    eco = subparsers.add_parser(
        "ecosystem",
        help="check, convert or create ecosystem files",
        description="Check, convert or create ecosystem files, without a daemon.",
    )
    sub = eco.add_subparsers(dest="ecosystem_cmd", metavar="SUBCOMMAND", required=True)

    check = sub.add_parser(
        "check",
        help="validate a file and print the normalised apps (nothing is started)",
        description="Load and validate an ecosystem file without starting anything, and print"
        " the normalised apps. Exit code 0 when valid, 2 when not.",
    )
    check.add_argument("file", nargs="?", help="ecosystem file (default: the one in this folder)")
    check.add_argument("--env", metavar="NAME", help="merge env_NAME over env, as start --env does")
    check.add_argument("--only", metavar="A,B", help="only these apps")
    check.add_argument("--json", action="store_true", help="print one JSON document")
    check.add_argument("--all", action="store_true", help="show keys left at their defaults too")
    _machine_flags(check)
    check.set_defaults(func=cmd_check)

    conv = sub.add_parser(
        "convert",
        help="write the same apps in another format (TOML by default)",
        description="Write the apps of an ecosystem file (PM2's JS, JSON, YAML or TOML) in"
        " another format: Corral's TOML by default. Prints to stdout without -o.",
    )
    conv.add_argument("file", nargs="?", help="ecosystem file (default: the one in this folder)")
    conv.add_argument("--to", choices=FORMATS, help="output format (default: from -o, else toml)")
    conv.add_argument("--env", metavar="NAME", help="merge env_NAME into env and drop the other env_* tables")
    conv.add_argument("-o", "--output", metavar="OUT", help="write to OUT (default: stdout)")
    conv.add_argument("--force", action="store_true", help="replace OUT if it exists")
    _machine_flags(conv)
    conv.set_defaults(func=cmd_convert)

    init = sub.add_parser(
        "init",
        help="write a commented starter ecosystem.toml",
        description="Write a commented starter file: a web app in cluster mode and a worker,"
        " with development and production envs; or one app per line of a Procfile.",
    )
    kind = init.add_mutually_exclusive_group()
    kind.add_argument("--python", action="store_true", help="a Python web app and worker (default)")
    kind.add_argument("--node", action="store_true", help="a Node web app and worker")
    kind.add_argument("--procfile", metavar="PROCFILE", help="one app per 'name: command' line")
    init.add_argument("-o", "--output", metavar="OUT", default="ecosystem.toml", help="file to write (default: ecosystem.toml; - for stdout)")
    init.add_argument("--force", action="store_true", help="replace OUT if it exists")
    init.set_defaults(func=cmd_init)


def main(argv: list[str] | None = None) -> int:
    """`python -m corral.tools.ecosystem [ecosystem] check|convert|init ...`"""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] != ["ecosystem"] and not (args[:1] and args[0] in ("-h", "--help")):
        args = ["ecosystem", *args]
    parser = argparse.ArgumentParser(prog="corral")
    add_parser(parser.add_subparsers(dest="cmd", metavar="COMMAND"))
    ns = parser.parse_args(args)
    try:
        return int(ns.func(ns))
    except CorralError as e:
        return report(e)
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
