"""Loading ecosystem files (Corral's TOML, YAML, JSON and PM2's JavaScript) into apps.

The result of loading is a list of typed :class:`~corral.core.appspec.AppSpec`:
every alias resolved to its canonical key, every value parsed by its :class:`Key`,
``env_<name>`` merged into ``env`` for the chosen environment, and paths made
absolute.  The working dict is built from the ``KEYS`` table and turned into the
spec once, at the end of :func:`normalize_app_detail`; the CLI sends the specs
as plain data (:meth:`LoadResult.wire`) and the dump file stores the same.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from corral.config.keys import ALIASES, KEY_BY_NAME, KEYS, NODE_ONLY_KEYS
from corral.core.appspec import AppSpec, to_wire
from corral.core.errors import ConfigError
from corral.core.launch import build_argv as build_argv

# Names `corral start` looks for, in this order, like `pm2 start` does.
DEFAULT_FILENAMES: tuple[str, ...] = (
    "ecosystem.toml",
    "ecosystem.config.js",
    "ecosystem.config.cjs",
    "ecosystem.config.mjs",
    "ecosystem.yaml",
    "ecosystem.yml",
    "ecosystem.json",
    "process.json",
    "pm2.json",
    "process.yml",
    "process.yaml",
)

CONFIG_SUFFIXES = (".toml", ".yaml", ".yml", ".json", ".js", ".cjs", ".mjs")

# Keys that are not app keys but are accepted on an app (handled specially).
_ENV_PREFIX = "env_"
ENV_FILE_KEY = "env_file"


class NotOnThisMachine(ConfigError):
    """A path the app needs does not exist here: an error for `start`, a warning
    ("not on this machine") for `check`, `convert` and `export`."""


@dataclass
class LoadResult:
    apps: list[AppSpec]
    warnings: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    file: str | None = None
    # Per app, in the order of `apps`: what each key was written as, ignored keys...
    details: list[AppResult] = field(default_factory=list)

    def wire(self) -> list[dict[str, Any]]:
        """The apps as a request carries them (``start``, ``reload FILE``)."""
        return [to_wire(a) for a in self.apps]


def find_ecosystem(folder: Path) -> Path | None:
    for name in DEFAULT_FILENAMES:
        p = folder / name
        if p.is_file():
            return p
    return None


def looks_like_config(path: str) -> bool:
    p = Path(path)
    name = p.name
    if name in DEFAULT_FILENAMES:
        return True
    if name.endswith((".config.js", ".config.cjs", ".config.mjs")):
        return True
    return p.suffix in (".toml", ".yaml", ".yml", ".json")


def read_config_file(path: Path, *, no_node: bool = False) -> Any:
    """Parse a file by its extension into plain data.

    A JavaScript file that only Node.js can evaluate is run by node, with a note on
    stderr; ``no_node`` (``--no-node``) or ``CORRAL_NO_NODE=1`` refuse that instead.
    """
    label = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("file not found", file=label)
    except IsADirectoryError:
        raise ConfigError("is a folder, not an ecosystem file", file=label)
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", file=label)
    suffix = path.suffix.lower()
    if suffix in (".js", ".cjs", ".mjs"):
        from corral.config.jsobject import NO_NODE_ENV, load_js_file, node_refused

        refused_by = "--no-node" if no_node else f"{NO_NODE_ENV}" if node_refused() else None
        return load_js_file(path, refused_by=refused_by)
    if suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise ConfigError(
            f"unknown file type {suffix!r}: expected .toml, .yaml, .yml, .json, .js, .cjs or .mjs",
            file=label,
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"not valid UTF-8 (byte {e.start})", file=label)
    if not text.strip():
        raise ConfigError("the file is empty: no apps defined", file=label)
    if suffix == ".toml":
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"invalid TOML: {e}", file=label)
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"invalid YAML: {_yaml_error(e)}", file=label)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        json_error = e
    # PM2 evaluates JSON files as JavaScript, so comments and trailing commas
    # work there: accept them too, but report the JSON error if that fails.
    try:
        from corral.config.jsobject import parse_js_literal

        return parse_js_literal(
            "module.exports = " + text + "\n;", filename=label, dirname=str(path.parent)
        )
    except Exception:
        raise ConfigError(f"invalid JSON: {json_error}", file=label)


def _yaml_error(e: Exception) -> str:
    """A YAML error on one line: the problem and where it is."""
    problem = getattr(e, "problem", None)
    mark = getattr(e, "problem_mark", None)
    if problem and mark is not None:
        context = getattr(e, "context", None)
        text = f"{context}: {problem}" if context else str(problem)
        return f"{text} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(e).split())


def type_name(value: Any) -> str:
    """How a value's type reads in a message: 'a string', 'a list'..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


_SCRIPT_KEYS = ("script", *(a for a, k in ALIASES.items() if k == "script"))

# Top-level keys besides `apps` that are accepted and ignored, and why.
IGNORED_TOP_LEVEL: dict[str, str] = {"deploy": "Corral does not deploy"}


def _is_single_app(table: Mapping[str, Any]) -> bool:
    return any(isinstance(table.get(k), str) for k in (*_SCRIPT_KEYS, "name"))


def extract_apps(data: Any, label: str) -> tuple[list[Any], list[str], list[str]]:
    """Find the app definitions in any of the file shapes met in real projects.

    Shapes: ``{apps: [...]}``, ``{apps: {...one app...}}``, ``[apps.NAME]`` tables
    (TOML), a top-level list of apps, or one bare app.  Returns
    ``(apps, notices, warnings)``.
    """
    notices: list[str] = []
    warnings: list[str] = []
    if data is None:
        raise ConfigError("the file defines no apps (it is empty or exports nothing)", file=label)
    if isinstance(data, list):
        return data, notices, warnings
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a table with 'apps' or a list of apps, got {type_name(data)}",
            file=label,
        )
    for key, why in IGNORED_TOP_LEVEL.items():
        if key in data:
            notices.append(f"{label}: the '{key}' block is ignored ({why})")
    if "apps" not in data and isinstance(data.get("pm2"), list | dict):
        # PM2 also reads its apps from a top-level "pm2" key (API._startJson).
        data = {"apps": data["pm2"], **{k: v for k, v in data.items() if k != "pm2"}}
    if "apps" in data:
        for key in data:
            if key != "apps" and key not in IGNORED_TOP_LEVEL:
                warnings.append(f"{label}: top-level key '{key}' is ignored (apps go in 'apps')")
        apps = data["apps"]
        if isinstance(apps, dict):
            if _is_single_app(apps):
                return [apps], notices, warnings
            # TOML's [apps.NAME] tables: the table name is the app's name.
            out = []
            for name, body in apps.items():
                if not isinstance(body, dict):
                    raise ConfigError(
                        f"app '{name}' must be a table, got {type_name(body)}", file=label
                    )
                out.append({"name": name, **body})
            return out, notices, warnings
        if not isinstance(apps, list):
            raise ConfigError(f"'apps' must be a list of apps, got {type_name(apps)}", file=label)
        return apps, notices, warnings
    if any(k in data for k in _SCRIPT_KEYS):
        return [{k: v for k, v in data.items() if k not in IGNORED_TOP_LEVEL}], notices, warnings
    raise ConfigError("no 'apps' found (and not a single app with a 'script')", file=label)


def suggest_key(key: str) -> str | None:
    candidates = list(KEY_BY_NAME) + list(ALIASES)
    match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.7)
    if not match:
        return None
    return ALIASES.get(match[0], match[0])


@dataclass
class Canonical:
    """One app's keys with aliases resolved, before values are parsed."""

    values: dict[str, Any] = field(default_factory=dict)
    # env_<name> tables by name.
    envs: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    # Key as written -> why it is ignored (Node-only keys).
    ignored_keys: dict[str, str] = field(default_factory=dict)
    # Key as written -> suggested key, or None.
    unknown_keys: dict[str, str | None] = field(default_factory=dict)
    # Alias as written -> canonical key.
    aliases_used: dict[str, str] = field(default_factory=dict)
    # Canonical key -> the name (as written) whose value is kept.
    written: dict[str, str] = field(default_factory=dict)
    # Corral's own `env_file` key (not an env table named "file"), as written.
    env_file: Any = None


def where_app(label: str | None, app: str | None) -> str:
    if app:
        return f"{label}: app '{app}'" if label else f"app '{app}'"
    return label or "app"


def canonicalize(raw: Mapping[str, Any], *, label: str | None, app: str | None) -> Canonical:
    """Map aliases to canonical keys; split out env_<name> tables; collect warnings.

    When a key is given under several names, the canonical name wins, then the
    first alias written (as in PM2); the others are reported.
    """
    c = Canonical()
    written = c.written
    where = where_app(label, app)
    for key, value in raw.items():
        if not isinstance(key, str):
            raise ConfigError(f"key {key!r} is not a string", file=label, app=app)
        if key == ENV_FILE_KEY and key not in KEY_BY_NAME:
            c.env_file = value
            continue
        if key.startswith(_ENV_PREFIX) and len(key) > len(_ENV_PREFIX) and key not in ALIASES and key not in KEY_BY_NAME:
            if value is not None and not isinstance(value, dict):
                raise ConfigError(
                    f"expected a table of NAME = value, got {type_name(value)}",
                    file=label,
                    app=app,
                    key=key,
                )
            c.envs[key[len(_ENV_PREFIX) :]] = value or {}
            continue
        canon = key if key in KEY_BY_NAME else ALIASES.get(key)
        if canon is None:
            if key in NODE_ONLY_KEYS:
                c.ignored_keys[key] = NODE_ONLY_KEYS[key]
                c.ignored.append(f"{where}: key '{key}' is ignored: {NODE_ONLY_KEYS[key]}")
                continue
            hint = suggest_key(key)
            c.unknown_keys[key] = hint
            msg = f"{where}: unknown key '{key}'"
            if hint:
                msg += f": did you mean '{hint}'?"
            c.warnings.append(msg + " (ignored)")
            continue
        if key != canon:
            c.aliases_used[key] = canon
        if canon in written:
            kept = written[canon]
            if key == canon:
                c.values[canon] = value
                written[canon] = key
                kept, dropped = key, kept
            else:
                dropped = key
            c.warnings.append(
                f"{where}: '{dropped}' and '{kept}' both set '{canon}'; the value of '{kept}' is used"
            )
            continue
        written[canon] = key
        c.values[canon] = value
    return c


# PM2's interpreters by extension (lib/API/interpreter.json), Python's done right.
_INTERPRETERS: dict[str, str] = {
    ".js": "node",
    ".cjs": "node",
    ".mjs": "node",
    ".sh": "bash",
    ".rb": "ruby",
    ".php": "php",
    ".pl": "perl",
}


def python_interpreter(env: Mapping[str, str]) -> str:
    """The active virtualenv's python ($VIRTUAL_ENV) if any; else, when Corral itself
    runs from a virtualenv (``.venv/bin/corral`` without activating it), that one's
    python; else python3 on PATH."""
    venv = env.get("VIRTUAL_ENV")
    if venv:
        candidate = os.path.join(venv, "bin", "python")
        if os.access(candidate, os.X_OK):
            return candidate
    if sys.prefix != sys.base_prefix:
        candidate = os.path.join(sys.prefix, "bin", "python")
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("python3", path=env.get("PATH")) or "python3"


def default_interpreter(script: str, env: Mapping[str, str]) -> str | None:
    """PM2's choice by extension, done for Python: the active virtualenv first."""
    ext = os.path.splitext(script)[1].lower()
    if ext == ".py":
        return python_interpreter(env)
    program = _INTERPRETERS.get(ext)
    if program is None:
        return None
    return shutil.which(program, path=env.get("PATH")) or program


def _find_program(program: str, cwd: str, env: Mapping[str, str], *, why: str) -> str:
    """An interpreter as an absolute path: a path (relative to cwd) or a name on PATH."""
    program = os.path.expanduser(program)
    if os.sep in program:
        path = os.path.normpath(program if os.path.isabs(program) else os.path.join(cwd, program))
        if not os.path.exists(path):
            raise NotOnThisMachine(f"{why} {path} does not exist or is not executable", key="interpreter")
        if not os.path.isfile(path) or not os.access(path, os.X_OK):
            raise ConfigError(f"{why} {path} does not exist or is not executable", key="interpreter")
        return path
    found = shutil.which(program, path=env.get("PATH"))
    if found is None:
        raise NotOnThisMachine(f"{why} '{program}' is not on PATH", key="interpreter")
    return found


def interpreter_for(
    script: str, interpreter: str | None, interp_args: list[str]
) -> tuple[str | None, list[str], str | None]:
    """PM2's choice of interpreter for a resolved script file, done by its ``#!`` line.

    Returns ``(interpreter, interpreter_args, why)``: the interpreter as a program
    name (None: run the script directly), the arguments to give it, and when the
    shebang decided, a short note saying so.  Rules:

    * an explicit interpreter is kept (``none`` too: see :func:`lost_interpreter_args`);
    * by extension as PM2 (``.js``/``.cjs``/``.mjs`` -> node, ``.py`` -> python...);
    * a ``#!`` naming node or bun -> that program, so ``interpreter_args`` apply and
      the app can run in Node's cluster mode (``node --max-old-space-size=3072 next start``);
    * a ``#!`` naming python, only when ``interpreter_args`` are given (so they are not
      lost); otherwise the script runs directly, as its shebang says.
    """
    from corral.node import program_kind, shebang_interpreter

    if interpreter is not None:
        return interpreter, interp_args, None
    ext = os.path.splitext(script)[1].lower()
    if ext == ".py" or ext in _INTERPRETERS:
        return None, interp_args, None  # default_interpreter() picks it by extension
    found = shebang_interpreter(script)
    if found is None:
        return "none", interp_args, None
    program, flags = found
    kind = program_kind(program)
    if kind in ("node", "bun") or interp_args:
        return program, [*flags, *interp_args], f"its #! line names {os.path.basename(program)}"
    return "none", interp_args, None


def lost_interpreter_args(script: str, interp_args: list[str], explicit: bool) -> str:
    """The message for interpreter_args that interpreter 'none' would drop."""
    how = "interpreter is 'none'" if explicit else "it runs directly (no interpreter)"
    return (
        f"interpreter_args {' '.join(interp_args)!r} would be lost: {script} {how}; "
        "set 'interpreter' (node, python3, bash...) or remove interpreter_args/node_args"
    )


def resolve_command(app: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Resolve script and interpreter to what will be executed (absolute paths)."""
    script: str = os.path.expanduser(app["script"])
    cwd: str = app["cwd"]
    interpreter = app.get("interpreter")
    interp_args: list[str] = list(app.get("interpreter_args") or [])
    module_mode = bool(interp_args) and interp_args[-1] == "-m"
    explicit = interpreter is not None
    if module_mode:
        # `python -m package.module`: the script is a module name, not a file.
        if interpreter == "none":
            raise ConfigError(
                "'-m' runs a module with an interpreter: it cannot be used with interpreter 'none'",
                key="interpreter_args",
            )
        resolved_script = script
        if interpreter is None:
            interpreter = python_interpreter(env)
    else:
        candidate = script if os.path.isabs(script) else os.path.join(cwd, script)
        if os.path.isdir(candidate):
            raise ConfigError(
                f"{os.path.normpath(candidate)} is a folder, not a script or program", key="script"
            )
        if os.path.exists(candidate):
            resolved_script = os.path.normpath(candidate)
        elif os.sep not in script:
            on_path = shutil.which(script, path=env.get("PATH"))
            if on_path is None:
                if os.path.splitext(script)[1].lower() in (".py", *_INTERPRETERS):
                    raise ConfigError(
                        f"script file {os.path.normpath(candidate)} does not exist", key="script"
                    )
                raise NotOnThisMachine(
                    f"{script!r} is neither a file (in {cwd}) nor a program on PATH", key="script"
                )
            resolved_script = on_path
        else:
            error = NotOnThisMachine if os.path.isabs(script) else ConfigError
            raise error(f"script file {os.path.normpath(candidate)} does not exist", key="script")
        interpreter, interp_args, _why = interpreter_for(resolved_script, interpreter, interp_args)
    if interpreter is None:
        interpreter = default_interpreter(resolved_script, env) or "none"
    if interpreter != "none":
        ext = os.path.splitext(resolved_script)[1].lower()
        why = "interpreter" if explicit else f"the interpreter for {ext or 'this'} files,"
        if not explicit and not ext:
            why = "the interpreter named by its #! line,"
        interpreter = _find_program(interpreter, cwd, env, why=why)
    else:
        if interp_args:
            raise ConfigError(
                lost_interpreter_args(resolved_script, interp_args, explicit), key="interpreter_args"
            )
        if not os.access(resolved_script, os.X_OK):
            raise ConfigError(
                f"{resolved_script} is not executable: make it so (chmod +x) or set 'interpreter'",
                key="script",
            )
    return {"script": resolved_script, "interpreter": interpreter, "interpreter_args": interp_args}


_SCRIPT_SUFFIXES = (".py", ".js", ".cjs", ".mjs", ".sh")


def name_from_script(script: str) -> str:
    """PM2's default name: the script's file name without its extension."""
    stem = os.path.basename(script.rstrip("/"))
    for suffix in _SCRIPT_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            stem = stem[: -len(suffix)]
    return stem or "app"


def _copy_default(default: Any) -> Any:
    if isinstance(default, list):
        return list(default)
    if isinstance(default, dict):
        return dict(default)
    return default


@dataclass
class AppResult:
    """One normalised app and what was noticed on the way."""

    app: AppSpec
    warnings: list[str]
    ignored: list[str]
    canonical: Canonical
    # env_<name> tables, parsed (every value a string).
    envs: dict[str, dict[str, str]] = field(default_factory=dict)


def _js_json(value: Any) -> str:
    """``JSON.stringify(value)`` for the plain data a config holds."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _pm2_env_table(table: Any) -> Any:
    """PM2 stringifies object and array values of env with JSON.stringify."""
    if not isinstance(table, dict):
        return table
    return {k: _js_json(v) if isinstance(v, dict | list) else v for k, v in table.items()}


# PM2's own splitting of a string of arguments (lib/tools/Config.js, Config._valid):
# KEY="v" and KEY='v' keep their quotes, a whole "..." or '...' word loses them, no escapes.
_PM2_ARG = re.compile(r"""[^\s"'=]+="[^"]*"|[^\s"'=]+='[^']*'|"([^"]*)"|'([^']*)'|\S+""")


def pm2_split_args(text: str) -> list[str]:
    """Arguments as PM2 splits a string of them (``--name="a b"`` keeps its quotes)."""
    out = []
    for m in _PM2_ARG.finditer(text):
        word = m.group(0)
        if len(word) >= 2 and word[0] == word[-1] and word[0] in "\"'":
            word = word[1:-1]
        if word.strip():
            out.append(word)
    return out


def is_pm2_format(label: str | None) -> bool:
    """Files PM2 reads too (JS, JSON, YAML): read with PM2's rules where they differ."""
    return bool(label) and str(label).lower().endswith(
        (".js", ".cjs", ".mjs", ".json", ".yml", ".yaml")
    )


def _pm2_values(canon: Canonical, where: str) -> None:
    """PM2's readings of values Corral's own keys would refuse or read otherwise."""
    for key in ("args", "interpreter_args"):
        if isinstance(canon.values.get(key), str):
            canon.values[key] = pm2_split_args(canon.values[key])
    log_type = canon.values.get("log_type")
    if isinstance(log_type, str) and log_type.strip().lower() not in {"json", "raw", "text", "plain"}:
        # PM2 takes any string and writes JSON only for "json".
        canon.warnings.append(f"{where}: log_type {log_type!r} is not 'json': plain text logs")
        canon.values["log_type"] = "text"


def _script_with_spaces(canon: Canonical, base: Path | None, where: str) -> None:
    """PM2 runs a script with spaces (``npm start``) through ``bash -c``, replacing args.

    A file whose path has a space (relative to ``cwd`` or the file's folder) is kept.
    """
    script = canon.values.get("script")
    if not isinstance(script, str) or " " not in script.strip():
        return
    if base is not None:
        cwd = canon.values.get("cwd")
        folder = base / os.path.expanduser(cwd) if isinstance(cwd, str) and cwd else base
        if (folder / os.path.expanduser(script)).exists():
            return
    if canon.values.get("args"):
        canon.warnings.append(
            f"{where}: script {script!r} has spaces, so it runs as `bash -c {script!r}` as in PM2; "
            "'args' is ignored (put the arguments in the script)"
        )
    if canon.values.get("name") in (None, False, ""):
        # PM2 names it first (Common.renderApplicationName): the basename, cut at its last dot.
        stem = os.path.basename(script.strip())
        dot = stem.rfind(".")
        canon.values["name"] = stem[:dot] if dot > 0 else stem
    canon.values["script"] = "bash"
    canon.values["args"] = ["-c", script.strip()]
    canon.written.setdefault("args", canon.written.get("script", "script"))
    canon.values.pop("interpreter", None)


def _env_files(
    value: Any, *, base: Path, label: str | None, app: str, here: bool, warnings: list[str]
) -> dict[str, str]:
    """Variables of `env_file` (one path or a list), later files over earlier ones."""
    from corral.config.dotenv import DotenvError, parse_dotenv

    if value is None or value is False or value == "":
        return {}
    paths = value if isinstance(value, list) else [value]
    out: dict[str, str] = {}
    for item in paths:
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(
                f"expected a file path or a list of paths, got {item!r}",
                file=label,
                app=app,
                key=ENV_FILE_KEY,
            )
        path = Path(os.path.normpath(base / os.path.expanduser(item)))
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            message = f"env file {path} does not exist"
            if not here:
                warnings.append(f"{where_app(label, app)}: key '{ENV_FILE_KEY}': {message}: not on this machine")
                continue
            raise NotOnThisMachine(message, file=label, app=app, key=ENV_FILE_KEY)
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) else "not valid UTF-8"
            raise ConfigError(f"cannot read env file {path}: {reason}", file=label, app=app, key=ENV_FILE_KEY)
        try:
            out.update(parse_dotenv(text))
        except DotenvError as e:
            raise ConfigError(f"env file {path}: {e}", file=label, app=app, key=ENV_FILE_KEY)
    return out


def normalize_app_detail(
    raw: Mapping[str, Any],
    *,
    label: str | None = None,
    base_dir: Path | None = None,
    env_name: str | None = None,
    client_env: Mapping[str, str] | None = None,
    resolve: bool = True,
    here: bool = True,
    deploy_env: Mapping[str, Any] | None = None,
) -> AppResult:
    """Validate and normalise one app definition; raises ConfigError naming file, app and key.

    ``here=False`` (check, convert, export: the file may be meant for another
    machine): paths that do not exist here become warnings ending in
    "not on this machine" instead of errors, and are kept as written (made absolute).
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"an app must be a table, got {type_name(raw)}", file=label)
    app_label: str | None = None
    if isinstance(raw.get("name"), str):
        app_label = raw["name"]
    else:
        for k in _SCRIPT_KEYS:
            if isinstance(raw.get(k), str):
                app_label = name_from_script(raw[k])
                break
    canon = canonicalize(raw, label=label, app=app_label)
    base = (base_dir or Path.cwd()).resolve() if resolve else None
    _script_with_spaces(canon, base, where_app(label, app_label))
    if is_pm2_format(label):
        _pm2_values(canon, where_app(label, app_label))
    if "env" in canon.values:
        canon.values["env"] = _pm2_env_table(canon.values["env"])

    out: dict[str, Any] = {}
    for key in KEYS:
        if key.name in canon.values:
            value = canon.values[key.name]
            try:
                out[key.name] = key.parse(value)
            except ValueError as e:
                if value is None or value is False:
                    # PM2 reads null as "not set" and false as "off": where the key
                    # takes neither, its default applies.
                    out[key.name] = _copy_default(key.default)
                    continue
                raise ConfigError(str(e), file=label, app=app_label, key=canon.written[key.name])
        else:
            out[key.name] = _copy_default(key.default)

    if not out.get("script"):
        raise ConfigError(
            "is required: the file or program to run",
            file=label,
            app=app_label,
            key="script",
        )
    if out["name"] is None:
        try:
            out["name"] = KEY_BY_NAME["name"].parse(name_from_script(out["script"]))
        except ValueError as e:
            raise ConfigError(f"cannot name the app after its script: {e}", file=label, key="name")
    name = out["name"]

    # env_<name> tables: every one validated, the chosen one merged over env.
    parsed_envs: dict[str, dict[str, str]] = {}
    for env_key, table in canon.envs.items():
        try:
            parsed_envs[env_key] = KEY_BY_NAME["env"].parse(_pm2_env_table(table))
        except ValueError as e:
            raise ConfigError(str(e), file=label, app=name, key=f"env_{env_key}")
    if deploy_env:
        try:
            below = KEY_BY_NAME["env"].parse(_pm2_env_table(dict(deploy_env)))
        except ValueError as e:
            raise ConfigError(str(e), file=label, app=name, key=f"deploy.{env_name}.env")
        out["env"] = {**below, **out["env"]}
    if canon.env_file is None and ENV_FILE_KEY in canon.values:
        canon.env_file = canon.values[ENV_FILE_KEY]  # once declared in KEYS (config/keys.py)
    if canon.env_file is not None and base is not None:
        from_files = _env_files(
            canon.env_file, base=base, label=label, app=name, here=here, warnings=canon.warnings
        )
        out["env"] = {**from_files, **out["env"]}
        if ENV_FILE_KEY in out:  # as loaded: absolute paths (the values are in env already)
            files = canon.env_file if isinstance(canon.env_file, list) else [canon.env_file]
            out[ENV_FILE_KEY] = [os.path.normpath(base / os.path.expanduser(f)) for f in files if isinstance(f, str) and f.strip()]
    if env_name and env_name in parsed_envs:
        out["env"] = {**out["env"], **parsed_envs[env_name]}
    out["env_names"] = sorted(parsed_envs)
    if out["disable_logs"]:
        out["out_file"] = out["error_file"] = out["log_file"] = None
    if out["time"] and not out["log_date_format"]:
        out["log_date_format"] = "YYYY-MM-DDTHH:mm:ss.SSSZ"

    if resolve:
        assert base is not None
        _resolve_paths(out, canon, base=base, label=label, client_env=client_env, here=here)

    elif not out["cwd"]:
        raise ConfigError("'cwd' must be an absolute path here", file=label, app=name, key="cwd")
    _pm2_exec_mode(out, canon)
    if out["port"] is not None:
        # PM2 injects PORT; in cluster mode the port is also the shared socket.
        out["env"].setdefault("PORT", str(out["port"]))
        if out["exec_mode"] == "cluster" and not out["listen"]:
            out["listen"] = [f"0.0.0.0:{out['port']}"]
    # The one conversion from the working dict (every value parsed above) to the spec.
    try:
        spec = msgspec.convert(out, AppSpec)
    except msgspec.ValidationError as e:  # a parser and its field disagree: a bug, said plainly
        path = str(e).rpartition("`$.")[2].rstrip("`").split(".")[0].split("[")[0] or None
        raise ConfigError(f"internal error: the loaded value does not fit the app spec ({e})", file=label, app=name, key=path)
    return AppResult(spec, canon.warnings, canon.ignored, canon, parsed_envs)


def _pm2_exec_mode(out: dict[str, Any], canon: Canonical) -> None:
    """PM2's default: an app with `instances` set that runs under node (or bun) is in
    cluster mode unless `exec_mode` says otherwise."""
    from corral.node import program_kind

    if "exec_mode" in canon.values or "instances" not in canon.values:
        return
    if canon.values.get("instances") in (None, False):
        return
    interpreter = out.get("interpreter")
    if interpreter is None:
        ext = os.path.splitext(out["script"])[1].lower()
        interpreter = _INTERPRETERS.get(ext)
    if program_kind(interpreter) in ("node", "bun"):
        out["exec_mode"] = "cluster"


def _resolve_paths(
    out: dict[str, Any],
    canon: Canonical,
    *,
    base: Path,
    label: str | None,
    client_env: Mapping[str, str] | None,
    here: bool,
) -> None:
    """Make cwd, log paths, script and interpreter absolute; check they exist here."""
    name = out["name"]
    cwd = out["cwd"]
    out["cwd"] = os.path.normpath(base / os.path.expanduser(cwd)) if cwd else str(base)
    for log_key in ("out_file", "error_file", "log_file", "pid_file"):
        value = out[log_key]
        if value and value != "default":
            out[log_key] = os.path.normpath(base / os.path.expanduser(value))
    cwd_key = canon.written.get("cwd", "cwd")
    if not os.path.isdir(out["cwd"]):
        message = f"folder {out['cwd']} does not exist"
        if here or not os.path.isabs(os.path.expanduser(cwd or ".")):
            raise NotOnThisMachine(message, file=label, app=name, key=cwd_key)
        canon.warnings.append(f"{where_app(label, name)}: key '{cwd_key}': {message}: not on this machine")
        script = os.path.expanduser(out["script"])
        if os.sep in script and not os.path.isabs(script):
            out["script"] = os.path.normpath(os.path.join(out["cwd"], script))
        return
    env_for_lookup = dict(os.environ if client_env is None else client_env)
    env_for_lookup.update(out["env"])
    try:
        out.update(resolve_command(out, env_for_lookup))
    except NotOnThisMachine as e:
        written_key = canon.written.get(e.key or "", e.key)
        if here:
            raise NotOnThisMachine(e.message, file=label, app=name, key=written_key)
        canon.warnings.append(f"{where_app(label, name)}: key '{written_key}': {e.message}: not on this machine")
        script = os.path.expanduser(out["script"])
        if os.sep in script and not os.path.isabs(script):
            out["script"] = os.path.normpath(os.path.join(out["cwd"], script))
    except ConfigError as e:
        written_key = canon.written.get(e.key or "", e.key)
        raise ConfigError(e.message, file=label, app=name, key=written_key)


def normalize_app(
    raw: Mapping[str, Any],
    *,
    label: str | None = None,
    base_dir: Path | None = None,
    env_name: str | None = None,
    client_env: Mapping[str, str] | None = None,
    resolve: bool = True,
    here: bool = True,
) -> tuple[AppSpec, list[str], list[str]]:
    """Validate and normalise one app definition.

    Returns ``(app, warnings, ignored)``; raises ConfigError naming file, app and key.
    """
    r = normalize_app_detail(
        raw,
        label=label,
        base_dir=base_dir,
        env_name=env_name,
        client_env=client_env,
        resolve=resolve,
        here=here,
    )
    return r.app, r.warnings, r.ignored


def _deploy_env(data: Any, env_name: str | None) -> dict[str, Any] | None:
    """PM2 merges ``deploy.<env>.env`` under every app's env with ``--env <env>``."""
    if not env_name or not isinstance(data, dict) or not isinstance(data.get("deploy"), dict):
        return None
    target = data["deploy"].get(env_name)
    if isinstance(target, dict) and isinstance(target.get("env"), dict):
        return dict(target["env"])
    return None


def load_apps(
    data: Any,
    *,
    label: str,
    base_dir: Path,
    env_name: str | None = None,
    only: Iterable[str] | None = None,
    client_env: Mapping[str, str] | None = None,
    here: bool = True,
) -> LoadResult:
    raw_apps, notices, warnings = extract_apps(data, label)
    result = LoadResult(apps=[], notices=notices, warnings=warnings, file=label)
    deploy_env = _deploy_env(data, env_name)
    first_index: dict[str, int] = {}
    details: list[AppResult] = []
    for index, raw in enumerate(raw_apps):
        if not isinstance(raw, dict):
            raise ConfigError(f"app #{index + 1} must be a table, got {type_name(raw)}", file=label)
        detail = normalize_app_detail(
            raw,
            label=label,
            base_dir=base_dir,
            env_name=env_name,
            client_env=client_env,
            here=here,
            deploy_env=deploy_env,
        )
        name = detail.app.name
        if name in first_index:
            raise ConfigError(
                f"apps #{first_index[name] + 1} and #{index + 1} have the same name",
                file=label,
                app=name,
                key="name",
            )
        first_index[name] = index
        details.append(detail)
    if not details:
        raise ConfigError("no apps defined", file=label)
    # depends_on across the file's apps: unknown names, cycles, impossible conditions
    from corral.core.deps import validate as validate_dependencies
    from corral.core.deps import with_dependencies

    graph = validate_dependencies([d.app for d in details], file=label)
    if only is not None:
        wanted = [n.strip() for n in only if n.strip()]
        missing = [n for n in wanted if n not in first_index]
        if missing:
            raise ConfigError(
                f"--only names {'an app' if len(missing) == 1 else 'apps'} not in the file: "
                f"{', '.join(missing)} (the file has: {', '.join(first_index)})",
                file=label,
            )
        if wanted:
            wanted = with_dependencies(graph, wanted)  # what they depend on comes along
            details = [d for d in details if d.app.name in wanted]
    for detail in details:
        result.apps.append(detail.app)
        result.warnings.extend(detail.warnings)
        result.notices.extend(detail.ignored)
    result.details = details
    if env_name and not any(env_name in a.env_names for a in result.apps):
        result.warnings.append(f"{label}: no app defines env_{env_name}; only 'env' applies")
    return result


def load_ecosystem(
    path: Path,
    *,
    env_name: str | None = None,
    only: Iterable[str] | None = None,
    client_env: Mapping[str, str] | None = None,
    here: bool = True,
    no_node: bool = False,
) -> LoadResult:
    path = path.resolve() if path.exists() else path.absolute()
    data = read_config_file(path, no_node=no_node)
    return load_apps(
        data,
        label=str(path),
        base_dir=path.parent,
        env_name=env_name,
        only=only,
        client_env=client_env,
        here=here,
    )
