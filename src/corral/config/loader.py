"""Loading ecosystem files (Corral's TOML, YAML, JSON and PM2's JavaScript) into apps.

The result of loading is a list of *normalised* app dicts: every alias
resolved to its canonical key, every value parsed by its :class:`Key`,
``env_<name>`` merged into ``env`` for the chosen environment, and paths
made absolute.  Those dicts are what the CLI sends to the daemon and what
the dump file stores.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.config.keys import ALIASES, KEY_BY_NAME, KEYS, NODE_ONLY_KEYS
from corral.errors import ConfigError

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


@dataclass
class LoadResult:
    apps: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    file: str | None = None


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


def read_config_file(path: Path) -> Any:
    """Parse a file by its extension into plain data."""
    label = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("file not found", file=label)
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", file=label)
    suffix = path.suffix.lower()
    if suffix == ".toml":
        import tomllib

        try:
            return tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"invalid TOML: {e}", file=label)
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"invalid YAML: {e}", file=label)
    if suffix == ".json":
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"invalid JSON: {e}", file=label)
    if suffix in (".js", ".cjs", ".mjs"):
        from corral.config.jsobject import load_js_file

        return load_js_file(path)
    raise ConfigError(
        f"unknown file type {suffix!r}: expected .toml, .yaml, .yml, .json, .js, .cjs or .mjs",
        file=label,
    )


def extract_apps(data: Any, label: str) -> tuple[list[Any], list[str]]:
    """Find the app definitions in any of the file shapes met in real projects."""
    notices: list[str] = []
    if isinstance(data, list):
        return data, notices
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected an object with 'apps' or a list of apps, got {type(data).__name__}",
            file=label,
        )
    if "deploy" in data:
        notices.append(f"{label}: the 'deploy' block is ignored (Corral does not deploy)")
    if "apps" in data:
        apps = data["apps"]
        if isinstance(apps, dict):
            # `apps` given as a single object, or in TOML as [apps.NAME] tables.
            if "script" in apps or "cmd" in apps or "exec" in apps or "name" in apps:
                return [apps], notices
            out = []
            for name, body in apps.items():
                if not isinstance(body, dict):
                    raise ConfigError(f"app {name!r} must be a table", file=label)
                out.append({"name": name, **body})
            return out, notices
        if not isinstance(apps, list):
            raise ConfigError("'apps' must be a list of apps", file=label)
        return apps, notices
    if any(k in data for k in ("script", "cmd", "exec")):
        return [data], notices
    raise ConfigError("no 'apps' found (and not a single app with a 'script')", file=label)


def suggest_key(key: str) -> str | None:
    candidates = list(KEY_BY_NAME) + list(ALIASES)
    match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.7)
    if not match:
        return None
    return ALIASES.get(match[0], match[0])


def canonicalize(
    raw: Mapping[str, Any], *, label: str | None, app: str | None
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], list[str], list[str]]:
    """Map aliases to canonical keys; split out env_<name> tables; collect warnings."""
    out: dict[str, Any] = {}
    envs: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    ignored: list[str] = []
    where = f"{label + ': ' if label else ''}app '{app}'" if app else (label or "app")
    for key, value in raw.items():
        if not isinstance(key, str):
            raise ConfigError(f"key {key!r} is not a string", file=label, app=app)
        if key.startswith(_ENV_PREFIX) and len(key) > len(_ENV_PREFIX):
            if not isinstance(value, dict):
                raise ConfigError("expected a table of NAME = value", file=label, app=app, key=key)
            envs[key[len(_ENV_PREFIX) :]] = value
            continue
        canon = key if key in KEY_BY_NAME else ALIASES.get(key)
        if canon is None:
            if key in NODE_ONLY_KEYS:
                ignored.append(f"{where}: key '{key}' is ignored: {NODE_ONLY_KEYS[key]}")
                continue
            hint = suggest_key(key)
            msg = f"{where}: unknown key '{key}'"
            if hint:
                msg += f": did you mean '{hint}'?"
            warnings.append(msg + " (ignored)")
            continue
        if canon in out and key != canon:
            warnings.append(f"{where}: '{key}' repeats '{canon}'; the later one wins")
        out[canon] = value
    return out, envs, warnings, ignored


def default_interpreter(script: str, env: Mapping[str, str]) -> str | None:
    """PM2's choice by extension, done for Python: the active virtualenv first."""
    ext = os.path.splitext(script)[1].lower()
    if ext == ".py":
        venv = env.get("VIRTUAL_ENV")
        if venv:
            candidate = os.path.join(venv, "bin", "python")
            if os.access(candidate, os.X_OK):
                return candidate
        return shutil.which("python3", path=env.get("PATH")) or "python3"
    if ext in (".js", ".cjs", ".mjs"):
        return shutil.which("node", path=env.get("PATH")) or "node"
    if ext == ".sh":
        return shutil.which("bash", path=env.get("PATH")) or "bash"
    if ext == ".rb":
        return shutil.which("ruby", path=env.get("PATH")) or "ruby"
    return None


def resolve_command(app: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Resolve script and interpreter to what will be executed."""
    script: str = app["script"]
    cwd: str = app["cwd"]
    interpreter = app.get("interpreter")
    interp_args: list[str] = app.get("interpreter_args") or []
    module_mode = bool(interp_args) and interp_args[-1] == "-m"
    resolved_script = script
    if not module_mode:
        candidate = script if os.path.isabs(script) else os.path.join(cwd, script)
        if os.path.exists(candidate):
            resolved_script = os.path.normpath(candidate)
        elif os.sep not in script:
            on_path = shutil.which(script, path=env.get("PATH"))
            if on_path is None:
                raise ConfigError(
                    f"script {script!r} is neither a file (in {cwd}) nor a program on PATH",
                    app=app.get("name"),
                    key="script",
                )
            resolved_script = on_path
            if interpreter is None:
                interpreter = "none"
        else:
            raise ConfigError(f"script file {candidate} does not exist", app=app.get("name"), key="script")
    if interpreter is None:
        interpreter = default_interpreter(resolved_script, env) or "none"
    elif interpreter != "none" and os.sep not in interpreter:
        interpreter = shutil.which(interpreter, path=env.get("PATH")) or interpreter
    return {"script": resolved_script, "interpreter": interpreter}


def build_argv(app: Mapping[str, Any]) -> list[str]:
    interpreter = app.get("interpreter") or "none"
    argv: list[str] = []
    if interpreter != "none":
        argv.append(interpreter)
        argv.extend(app.get("interpreter_args") or [])
    argv.append(app["script"])
    argv.extend(app.get("args") or [])
    return argv


def normalize_app(
    raw: Mapping[str, Any],
    *,
    label: str | None = None,
    base_dir: Path | None = None,
    env_name: str | None = None,
    client_env: Mapping[str, str] | None = None,
    resolve: bool = True,
) -> tuple[dict[str, Any], list[str], list[str]]:
    """Validate and normalise one app definition.

    Returns ``(app, warnings, ignored)``; raises ConfigError naming file, app and key.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"an app must be an object, got {type(raw).__name__}", file=label)
    app_label = raw.get("name") if isinstance(raw.get("name"), str) else None
    canon, envs, warnings, ignored = canonicalize(raw, label=label, app=app_label)

    out: dict[str, Any] = {}
    for key in KEYS:
        if key.name in canon:
            try:
                out[key.name] = key.parse(canon[key.name])
            except ValueError as e:
                raise ConfigError(str(e), file=label, app=app_label, key=key.name)
        else:
            default = key.default
            out[key.name] = list(default) if isinstance(default, list) else (
                dict(default) if isinstance(default, dict) else default
            )

    if not out.get("script"):
        raise ConfigError("'script' is required (the file or program to run)", file=label, app=app_label, key="script")
    if out["name"] is None:
        stem = os.path.basename(out["script"])
        for suffix in (".py", ".js", ".cjs", ".mjs", ".sh"):
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
        try:
            out["name"] = KEY_BY_NAME["name"].parse(stem or "app")
        except ValueError as e:
            raise ConfigError(f"cannot derive a name from the script: {e}", file=label, key="name")
    name = out["name"]

    # env_<name> tables: validated all, merged for the chosen one.
    parsed_envs: dict[str, dict[str, str]] = {}
    for env_key, table in envs.items():
        try:
            parsed_envs[env_key] = KEY_BY_NAME["env"].parse(table)
        except ValueError as e:
            raise ConfigError(str(e), file=label, app=name, key=f"env_{env_key}")
    if env_name and env_name in parsed_envs:
        out["env"] = {**out["env"], **parsed_envs[env_name]}
    out["env_names"] = sorted(parsed_envs)
    if out["time"] and not out["log_date_format"]:
        out["log_date_format"] = "YYYY-MM-DDTHH:mm:ss.SSSZ"
    if out["port"] is not None and not out["listen"]:
        out["listen"] = [f"0.0.0.0:{out['port']}"]

    if resolve:
        base = base_dir or Path.cwd()
        cwd = out["cwd"]
        out["cwd"] = str((base / cwd).resolve()) if cwd else str(base.resolve())
        if not os.path.isdir(out["cwd"]):
            raise ConfigError(f"folder {out['cwd']} does not exist", file=label, app=name, key="cwd")
        for log_key in ("out_file", "error_file", "log_file", "pid_file"):
            value = out[log_key]
            if value and value != "default":
                out[log_key] = str((base / os.path.expanduser(value)).resolve())
        env_for_lookup = dict(client_env or os.environ)
        env_for_lookup.update(out["env"])
        try:
            out.update(resolve_command(out, env_for_lookup))
        except ConfigError as e:
            raise e.with_context(file=label, app=name)
    else:
        if not out["cwd"]:
            raise ConfigError("'cwd' must be an absolute path here", file=label, app=name, key="cwd")
    return out, warnings, ignored


def load_apps(
    data: Any,
    *,
    label: str,
    base_dir: Path,
    env_name: str | None = None,
    only: Iterable[str] | None = None,
    client_env: Mapping[str, str] | None = None,
) -> LoadResult:
    raw_apps, notices = extract_apps(data, label)
    result = LoadResult(apps=[], notices=notices, file=label)
    seen: set[str] = set()
    for index, raw in enumerate(raw_apps):
        if not isinstance(raw, dict):
            raise ConfigError(f"app #{index + 1} must be an object, got {type(raw).__name__}", file=label)
        app, warnings, ignored = normalize_app(
            raw, label=label, base_dir=base_dir, env_name=env_name, client_env=client_env
        )
        if app["name"] in seen:
            raise ConfigError("two apps have this name", file=label, app=app["name"], key="name")
        seen.add(app["name"])
        result.apps.append(app)
        result.warnings.extend(warnings)
        result.notices.extend(ignored)
    if only:
        wanted = {n.strip() for n in only if n.strip()}
        missing = wanted - seen
        if missing:
            raise ConfigError(f"--only names apps not in the file: {', '.join(sorted(missing))}", file=label)
        result.apps = [a for a in result.apps if a["name"] in wanted]
    if env_name and not any(env_name in a["env_names"] for a in result.apps):
        result.warnings.append(f"{label}: no app defines env_{env_name}; only 'env' applies")
    if not result.apps:
        raise ConfigError("no apps defined", file=label)
    return result


def load_ecosystem(
    path: Path,
    *,
    env_name: str | None = None,
    only: Iterable[str] | None = None,
    client_env: Mapping[str, str] | None = None,
) -> LoadResult:
    path = path.resolve() if path.exists() else path
    data = read_config_file(path)
    return load_apps(
        data,
        label=str(path),
        base_dir=path.parent,
        env_name=env_name,
        only=only,
        client_env=client_env,
    )
